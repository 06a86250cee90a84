"""DA-CLIP: the degradation-aware CLIP of Luo et al., built on ``open_clip``.

The module tree reproduces the official one, so the released checkpoints load strictly:

- ``clip``: the whole open_clip :class:`~open_clip.CLIP` (image and text towers);
- ``visual``: the same module as ``clip.visual`` (the checkpoints store its tensors twice);
- ``visual_control``: the controller, a copy of the image tower whose transformer is wrapped
  in a :class:`ControlTransformer` with one zero-initialised ``Linear(width, width)`` per block;
- ``logit_scale``.

With ``control=True`` the controller's pooled output is the degradation embedding, and the
output of each controller block, passed through its zero module, is added to the CLIP image
tower: CLIP block ``j`` receives the hidden of controller block ``L - 1 - j`` (the official
code pops them from the end of the list).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .degradations import DEGRADATIONS
from .errors import InvalidImageError

_TOKENIZER_NAME = "ViT-B-32"


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
        return self.clip.encode_text(tokens, normalize=normalize)


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
        array = np.asarray(image)
        if array.dtype != np.uint8:
            raise InvalidImageError(f"expected a uint8 image, got dtype {array.dtype}")
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
            raise InvalidImageError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {array.shape}")
        if array.size == 0:
            raise InvalidImageError(f"empty image of shape {array.shape}")
        image = Image.fromarray(np.ascontiguousarray(array))
    return _transform(resolution)(image.convert("RGB")).unsqueeze(0)


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
    Inputs are images (see :func:`preprocess`) or already preprocessed ``(B, 3, R, R)`` tensors.
    """

    def __init__(self, model: DaCLIP, prompts: Sequence[str] = DEGRADATIONS):
        super().__init__()
        self.prompts = (prompts,) if isinstance(prompts, str) else tuple(prompts)
        if not self.prompts:
            raise ValueError("at least one prompt is needed")
        self.model = model
        device = model.logit_scale.device
        with torch.no_grad():
            text_features = model.encode_text(tokenize(self.prompts).to(device), normalize=True)
        self.register_buffer("text_features", text_features, persistent=False)

    def clip_input(self, image) -> torch.Tensor:
        """The model input for ``image``: preprocessed unless already a tensor."""
        x = image if torch.is_tensor(image) else preprocess(image, self.model.image_size)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        return x.to(self.text_features.device, self.text_features.dtype)

    @torch.no_grad()
    def estimate(self, image) -> DegradationEstimate:
        """Contexts for the UNet and prompt probabilities from one DA-CLIP pass."""
        image_context, degra_context = self.model.encode_image(self.clip_input(image), control=True)
        cosine = F.normalize(degra_context, dim=-1) @ self.text_features.T
        return DegradationEstimate(image_context, degra_context, (100 * cosine).softmax(dim=-1), self.prompts)

    def probabilities(self, image) -> torch.Tensor:
        """Prompt probabilities, ``(B, n_prompts)``."""
        return self.estimate(image).probs

    def classify(self, image) -> dict[str, float]:
        """Prompt probabilities of a single image, as ``{prompt: probability}``."""
        return self.estimate(image).as_dict(0)
