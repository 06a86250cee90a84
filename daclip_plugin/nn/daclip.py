"""DA-CLIP: the degradation-aware CLIP of Luo et al., built on ``open_clip``.

The module tree reproduces the official one, so the released checkpoints load strictly:

- ``clip``: the whole open_clip :class:`~open_clip.CLIP` (image and text towers);
- ``visual``: the same module as ``clip.visual`` (the checkpoints store its tensors twice);
- ``visual_control``: the controller, a copy of the image tower whose transformer is wrapped
  in a :class:`ControlTransformer` with one zero-initialised ``Linear(width, width)`` per block;
- ``logit_scale``.

The text tower only encodes prompts. Loaded for inference, a model encodes the degradation
vocabulary once and releases the tower (:meth:`DaCLIP.release_text_tower`, a quarter of
ViT-B-32's weights); other prompts then borrow a freshly loaded copy for the moment they
are encoded.

With ``control=True`` the controller's pooled output is the degradation embedding, and the
output of each controller block, passed through its zero module, is added to the CLIP image
tower: CLIP block ``j`` receives the hidden of controller block ``L - 1 - j`` (the official
code pops them from the end of the list).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import DaclipError, InvalidImageError

_TOKENIZER_NAME = "ViT-B-32"

DEGRADATIONS = (
    "motion-blurry",
    "hazy",
    "jpeg-compressed",
    "low-light",
    "noisy",
    "raindrop",
    "rainy",
    "shadowed",
    "snowy",
    "uncompleted",
)
"""The ten degradations of the released universal model, in the official order (also its prompts)."""


class ControlTransformer(nn.Module):
    """Wraps an open_clip image transformer and returns the zero-module output of each block."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = transformer
        width = transformer.width
        self.zero_modules = nn.ModuleList(nn.Linear(width, width) for _ in range(transformer.layers))
        for linear in self.zero_modules:
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the blocks on batch-first tokens; the hiddens do not feed back into ``x``."""
        hiddens = []
        for block, zero in zip(self.transformer.resblocks, self.zero_modules):
            x = block(x)
            hiddens.append(zero(x))
        return x, hiddens


class DaCLIP(nn.Module):
    """DA-CLIP built from an open_clip CLIP config (``embed_dim``, ``vision_cfg``, ``text_cfg``)."""

    def __init__(self, clip_cfg: dict):
        super().__init__()
        self.clip = open_clip.CLIP(**copy.deepcopy(clip_cfg))
        if not self.clip.visual.transformer.batch_first:
            raise ValueError("DA-CLIP needs a batch-first open_clip image transformer")
        self.visual = self.clip.visual
        self.visual_control = copy.deepcopy(self.clip.visual)
        self.visual_control.transformer = ControlTransformer(self.visual_control.transformer)
        self.logit_scale = nn.Parameter(self.clip.logit_scale.detach().clone())
        self._prompt_features: dict[tuple[str, ...], torch.Tensor] = {}
        self._text_source: Optional[Callable[[], "DaCLIP"]] = None

    @property
    def embed_dim(self) -> int:
        """Width of its image and degradation features (what a UNet's context must take)."""
        return int(self.clip.visual.output_dim)

    @property
    def image_size(self) -> int:
        """Side of the square image the image towers expect."""
        return self.clip.visual.image_size[0]

    def encode_image(self, image: torch.Tensor, control: bool = False, normalize: bool = False):
        """Image features; with ``control`` the pair ``(content_features, degradation_features)``."""
        if not control:
            return self.clip.encode_image(image, normalize=normalize)
        controller = self.visual_control
        tokens, hiddens = controller.transformer(controller._embeds(image))
        degra_features = _project(controller, tokens)

        visual = self.clip.visual
        x = visual._embeds(image)
        for block in visual.transformer.resblocks:
            x = block(x) + hiddens.pop()
        image_features = _project(visual, x)
        if normalize:
            image_features = F.normalize(image_features, dim=-1)
            degra_features = F.normalize(degra_features, dim=-1)
        return image_features, degra_features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Text features of ``tokens`` (from :func:`tokenize`)."""
        if not self.has_text_tower:
            raise DaclipError("this DA-CLIP's text tower was released; encode prompts with prompt_features()")
        return self.clip.encode_text(tokens, normalize=normalize)

    @property
    def can_encode_prompts(self) -> bool:
        """Whether the text tower takes the CLIP tokenizer's tokens (its vocabulary and context are as large)."""
        clip, tokenizer = self.clip, _tokenizer()
        return self.has_text_tower and clip.vocab_size >= tokenizer.vocab_size and clip.context_length >= tokenizer.context_length

    @property
    def has_text_tower(self) -> bool:
        """False once :meth:`release_text_tower` has freed it."""
        return self.clip.transformer is not None

    @torch.no_grad()
    def prompt_features(self, prompts: Sequence[str]) -> torch.Tensor:
        """Normalised text features of ``prompts`` (``P x E``), encoded once and kept."""
        key = tuple(prompts)
        if key not in self._prompt_features:
            source = self if self.has_text_tower else self._text_source() if self._text_source else None
            if source is None:
                raise DaclipError("this DA-CLIP's text tower was released, so it cannot encode new prompts")
            if not source.can_encode_prompts:
                raise DaclipError(
                    f"this DA-CLIP's text tower ({source.clip.vocab_size} tokens, context {source.clip.context_length}) "
                    "cannot take the CLIP tokenizer's prompts "
                    f"({_tokenizer().vocab_size} tokens, context {_tokenizer().context_length})"
                )
            device = source.logit_scale.device
            self._prompt_features[key] = source.encode_text(tokenize(key).to(device), normalize=True).detach()
        return self._prompt_features[key].to(self.logit_scale.device, self.logit_scale.dtype)

    def release_text_tower(self, keep: Sequence[Sequence[str]] = (), source: Optional[Callable[[], "DaCLIP"]] = None):
        """Encode each prompt list of ``keep``, then free the text tower's weights.

        ``source`` returns a complete copy of this model, loaded when other prompts are
        asked for later; without it, they raise :class:`~daclip_plugin.errors.DaclipError`.
        """
        for prompts in keep:
            self.prompt_features(prompts)
        clip = self.clip
        clip.transformer = clip.token_embedding = clip.ln_final = None
        clip.positional_embedding = clip.text_projection = clip.attn_mask = None
        self._text_source = source
        return self

    def rebuild_buffers(self) -> None:
        """Recompute the buffers that checkpoints do not hold (the text tower's causal mask)."""
        if self.clip.attn_mask is not None and self.clip.attn_mask.is_meta:
            size = self.clip.context_length
            self.clip.attn_mask = torch.full((size, size), float("-inf"), device=self.logit_scale.device).triu_(1)


def _project(visual: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Pool the output tokens of an open_clip image tower and project them."""
    pooled, _ = visual._pool(tokens)
    return pooled @ visual.proj if visual.proj is not None else pooled


@functools.lru_cache(maxsize=None)
def _transform(resolution: int):
    return open_clip.transform.image_transform(resolution, is_train=False)


def preprocess(image, resolution: int = 224) -> torch.Tensor:
    """The official CLIP preprocessing of an RGB image, as a ``(1, 3, R, R)`` tensor.

    ``image`` is a PIL image or a uint8 array (HxWx3; HxW, HxWx1 and HxWx4 are converted to
    RGB). The shorter side is resized to ``resolution`` (bicubic), the centre square cropped,
    and the result normalised with the CLIP mean and standard deviation.
    """
    if not isinstance(image, Image.Image):
        image = Image.fromarray(_rgb_array(image))
    return _transform(resolution)(image.convert("RGB")).unsqueeze(0)


def _rgb_array(image) -> np.ndarray:
    """``image`` as a checked uint8 array for PIL (HxW, HxWx3 or HxWx4)."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise InvalidImageError(f"expected a uint8 image, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise InvalidImageError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {array.shape}")
    if array.size == 0:
        raise InvalidImageError(f"empty image of shape {array.shape}")
    return np.ascontiguousarray(array)


#: How an image becomes the DA-CLIP input: ``"resize"``, the official CLIP preprocessing of the
#: whole image, or ``"tiles"``, unresized tiles whose features are averaged (see
#: :func:`clip_views`), for models trained on unresized crops like the embedded one.
CLIP_VIEWS = ("resize", "tiles")
#: At most this many tiles per side in the ``"tiles"`` view.
TILES_PER_SIDE = 3


def _check_view(view: str) -> str:
    if view not in CLIP_VIEWS:
        raise ValueError(f"unknown DA-CLIP view {view!r}; choose one of {', '.join(CLIP_VIEWS)}")
    return view


def tile_origins(length: int, size: int, per_side: int = TILES_PER_SIDE) -> list[int]:
    """Offsets of up to ``per_side`` tiles of ``size`` px spread evenly over ``length`` px
    (``length >= size``), rounded down to multiples of 8 so that tiles keep the JPEG block grid."""
    count = min(per_side, -(-length // size))
    return sorted({int(p) // 8 * 8 for p in np.linspace(0, length - size, count)})


def clip_views(image, resolution: int, view: str = "resize") -> torch.Tensor:
    """The DA-CLIP inputs of one image, ``(n, 3, R, R)``.

    ``"resize"``: one input, :func:`preprocess` of the whole image. ``"tiles"``: ``R`` px
    tiles at the image's own resolution on an even grid of up to :data:`TILES_PER_SIDE`
    per side (see :func:`tile_origins`); an image with a side under ``R`` px is resized instead.
    """
    _check_view(view)
    picture = (image if isinstance(image, Image.Image) else Image.fromarray(_rgb_array(image))).convert("RGB")
    width, height = picture.size
    if view == "resize" or min(height, width) < resolution:
        return preprocess(picture, resolution)
    array = np.asarray(picture)
    tiles = [
        preprocess(array[y : y + resolution, x : x + resolution], resolution)
        for y in tile_origins(height, resolution)
        for x in tile_origins(width, resolution)
    ]
    return torch.cat(tiles)


@functools.lru_cache(maxsize=1)
def _tokenizer():
    return open_clip.get_tokenizer(_TOKENIZER_NAME)


def tokenize(prompts: Sequence[str]) -> torch.Tensor:
    """Tokenise prompts with open_clip's ViT-B-32 tokenizer: a ``(n, 77)`` int64 tensor."""
    if isinstance(prompts, str):
        prompts = [prompts]
    return _tokenizer()(list(prompts))


@dataclass(frozen=True)
class DegradationEstimate:
    """What one DA-CLIP pass gives: the UNet contexts and the prompt probabilities.

    ``image_context`` and ``degra_context`` are the unnormalised content and degradation
    features (``B x E``), as the official restoration code feeds them to the UNet.
    """

    image_context: torch.Tensor
    degra_context: torch.Tensor
    probs: torch.Tensor
    prompts: tuple[str, ...]

    def as_dict(self, index: int = 0) -> dict[str, float]:
        """Probability of each prompt for image ``index`` of the batch."""
        return dict(zip(self.prompts, self.probs[index].tolist()))


class DegradationClassifier(nn.Module):
    """Zero-shot degradation classifier: softmax(100 * cos(degradation features, prompts)).

    The normalised prompt features are computed once and kept as a buffer (moved by ``.to``).
    Inputs are images, seen through ``view`` (see :func:`clip_views`; the features of an
    image's tiles are averaged), or already preprocessed ``(B, 3, R, R)`` tensors.
    """

    def __init__(self, model: DaCLIP, prompts: Sequence[str] = DEGRADATIONS, view: str = "resize"):
        super().__init__()
        self.prompts = (prompts,) if isinstance(prompts, str) else tuple(prompts)
        if not self.prompts:
            raise ValueError("at least one prompt is needed")
        self.model, self.view = model, _check_view(view)
        self.register_buffer("text_features", model.prompt_features(self.prompts), persistent=False)

    def clip_input(self, image) -> torch.Tensor:
        """The model input for ``image``: its :func:`clip_views` unless already a tensor."""
        x = image if torch.is_tensor(image) else clip_views(image, self.model.image_size, self.view)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        return x.to(self.text_features.device, self.text_features.dtype)

    @torch.no_grad()
    def estimate(self, image) -> DegradationEstimate:
        """Contexts for the UNet and prompt probabilities from one DA-CLIP pass. For an image
        seen as tiles, the contexts are the mean of the tiles' features, and the probabilities
        are those of that mean degradation feature: the one that steers the UNet (an average
        of the tiles' near one-hot probabilities would read as tile votes)."""
        image_context, degra_context = self.model.encode_image(self.clip_input(image), control=True)
        if not torch.is_tensor(image):
            image_context, degra_context = image_context.mean(0, keepdim=True), degra_context.mean(0, keepdim=True)
        cosine = F.normalize(degra_context, dim=-1) @ self.text_features.T
        probs = (100 * cosine).softmax(dim=-1)
        return DegradationEstimate(image_context, degra_context, probs, self.prompts)

    def probabilities(self, image) -> torch.Tensor:
        """Prompt probabilities, ``(B, n_prompts)``."""
        return self.estimate(image).probs

    def classify(self, image) -> dict[str, float]:
        """Prompt probabilities of a single image, as ``{prompt: probability}``."""
        return self.estimate(image).as_dict(0)
