"""Train the small embedded DA-CLIP models: a DA-CLIP, an IR-SDE UNet and a direct restorer.

Three stages, run in this order (``daclip train STAGE ...``, or :func:`train`):

``daclip``
    A tiny DA-CLIP from scratch (text tower, image tower and controller). Each sample is a
    random crop of a clean training image (random size, scale, flip/rotation and colours), a
    random degradation type with random parameters (:mod:`daclip_plugin.degradations`),
    and the CLIP preprocessing of inference (:func:`~daclip_plugin.daclip_model.preprocess`
    on the uint8 crops). Loss: cross-entropy of the controller's degradation features against
    the text features of the ten degradation names (learned logit scale), plus a cosine loss
    pulling the content features of the degraded crop (with control) to the stop-gradient
    features of the clean crop (plain image tower), plus a symmetric InfoNCE term between
    the two across the batch so that content features do not collapse.
``irsde``
    The conditional UNet with the official IR-SDE objective (max_sigma 50, T 100, cosine,
    eps 0.005): ``t`` uniform in 1..T, ``x_t`` drawn from the forward process around
    ``(gt, mu=lq)``, the UNet predicts the noise, and the L1 distance between the mean of
    the reverse-SDE step it implies and the optimal reverse step (``posterior_mean``) is
    minimised. Conditioned on the frozen DA-CLIP's contexts of the low-quality image.
``direct``
    The same UNet architecture and contexts, trained as a one-call restorer with an L1 loss
    on the restored image (convention in :mod:`daclip_plugin.direct`).

The UNet stages degrade a *context crop* (the same random sizes as the DA-CLIP stage),
compute the DA-CLIP contexts from all of it (as inference does from the whole image) and
train on a random ``patch`` x ``patch`` window of it; the official code computes them
from the training patch itself.

Every sample is a pure function of ``(seed, stage, sample index)``, drawn in DataLoader
workers: the data stream does not depend on the number of workers and resumes exactly.
A stage stops after ``steps`` steps or ``max_minutes`` of training (counted across resumes,
like ``steps``), whichever comes first; the learning rate follows a linear warm-up and a
cosine decay over that horizon. ``init`` starts a stage from saved weights instead of
from scratch (:func:`initialise_from`; fine-tuning, recorded in the provenance). It
checkpoints every ``checkpoint_every`` steps (and at the end) to ``<out>/<stage>_state.pt``
(``resume=True`` continues from it), appends loss lines to ``<out>/train_log.jsonl``,
writes the model in the official layout with
:func:`checkpoints.save_daclip` / :func:`checkpoints.save_unet` (float16 by default: the
three files fit in 25 MB), evaluates it on held-out images and records everything in
``<out>/provenance.json``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from . import checkpoints, degradations
from .daclip_model import CLIP_VIEWS, DEGRADATIONS, TILES_PER_SIDE, DaCLIP, DegradationClassifier, clip_views, preprocess, tokenize
from .direct import direct_restore, load_daclip_quietly
from .errors import CheckpointError, DaclipError
from .pipeline import OFFICIAL_SDE
from .sde import IRSDESchedule, sample_posterior
from .unet import ConditionalUNet

STAGES = ("daclip", "irsde", "direct")

#: The embedded DA-CLIP: 64-wide heads in both towers (what the checkpoint loader assumes
#: without a sidecar), 112 px input, 49 patches of 16 px; 5.2 M parameters, 10.5 MB in fp16.
TINY_CLIP_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 112, "layers": 4, "width": 128, "patch_size": 16, "head_width": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 3},
}
#: The embedded UNets (``context_dim`` is set to the DA-CLIP's ``embed_dim``): 3.0 M
#: parameters, 6.0 MB in fp16.
TINY_UNET_CFG = {
    "in_nc": 3,
    "out_nc": 3,
    "nf": 32,
    "ch_mult": [1, 2, 2, 3],
    "context_dim": 64,
    "use_degra_context": True,
    "use_image_context": True,
    "scale": 1,
}

FILE_NAMES = {"daclip": "daclip_tiny.pt", "irsde": "irsde_tiny.pth", "direct": "direct_tiny.pth"}
LOG_NAME = "train_log.jsonl"
PROVENANCE_NAME = "provenance.json"
_STAGE_CODES = {"daclip": 1, "irsde": 2, "direct": 3, "eval": 99}

#: Defaults per preset and stage. ``cpu``: minutes on two cores; ``gpu``: one H100.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {
        "daclip": {"steps": 200, "batch": 16, "lr": 1e-3, "workers": 0, "eval_per_class": 10},
        "irsde": {"steps": 200, "batch": 8, "patch": 48, "lr": 5e-4, "workers": 0, "eval_per_class": 1, "eval_size": 64},
        "direct": {"steps": 200, "batch": 8, "patch": 48, "lr": 5e-4, "workers": 0, "eval_per_class": 2, "eval_size": 64},
    },
    "gpu": {
        "daclip": {"max_minutes": 2.0, "batch": 128, "lr": 1e-3, "workers": 14, "eval_per_class": 40},
        "irsde": {"max_minutes": 2.0, "batch": 32, "patch": 96, "lr": 5e-4, "workers": 14, "eval_per_class": 4, "eval_size": 128},
        "direct": {"max_minutes": 2.25, "batch": 32, "patch": 96, "lr": 5e-4, "workers": 14, "eval_per_class": 4, "eval_size": 128},
    },
}


@dataclass
class TrainConfig:
    """Everything one stage needs. ``None`` fields take the preset's value for the stage."""

    stage: str
    out: Path
    preset: str = "cpu"
    steps: Optional[int] = None
    max_minutes: Optional[float] = None
    batch: Optional[int] = None
    patch: Optional[int] = None
    lr: Optional[float] = None
    workers: Optional[int] = None
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    daclip: Optional[Path] = None
    init: Optional[Path] = None
    crop_min: Optional[int] = None
    crop_max: Optional[int] = None
    scale_min: float = 0.5
    warmup: int = 100
    weight_decay: Optional[float] = None
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    log_every: int = 25
    print_seconds: float = 15.0
    eval_per_class: Optional[int] = None
    eval_size: Optional[int] = None
    save_dtype: str = "float16"
    amp: bool = True
    clip_view: str = "resize"
    loss: str = "l1"
    degradation_weights: Optional[dict] = None
    clip_cfg: dict = field(default_factory=lambda: copy.deepcopy(TINY_CLIP_CFG))
    unet_cfg: dict = field(default_factory=lambda: copy.deepcopy(TINY_UNET_CFG))
    command: Optional[list] = None
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise DaclipError(f"unknown training stage {self.stage!r}; choose one of {', '.join(STAGES)}")
        if self.preset not in PRESETS:
            raise DaclipError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        self.out = Path(self.out)
        for key, value in PRESETS[self.preset][self.stage].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.patch is None:
            self.patch = 48
        if self.eval_size is None:
            self.eval_size = 128
        if self.weight_decay is None:
            self.weight_decay = 0.05 if self.stage == "daclip" else 0.0
        if self.eval_per_class is None:
            self.eval_per_class = 0
        if self.steps is not None and self.steps < 0:
            raise DaclipError("--steps must be >= 0")
        # the UNet stages learn the DA-CLIP input size when they load the DA-CLIP
        self.resolve_crops(int(self.clip_cfg["vision_cfg"]["image_size"]) if self.stage == "daclip" else None)
        if self.clip_view not in CLIP_VIEWS:
            raise DaclipError(f"unknown DA-CLIP view {self.clip_view!r}; choose one of {', '.join(CLIP_VIEWS)}")
        if self.loss not in DIRECT_LOSSES:
            raise DaclipError(f"unknown direct-restorer loss {self.loss!r}; choose one of {', '.join(DIRECT_LOSSES)}")
        if self.loss != "l1" and self.stage != "direct":
            raise DaclipError(f"--loss {self.loss} is for the direct stage; the {self.stage} stage has its own objective")
        self.degradation_weights = sampling_weights(self.degradation_weights)
        if self.save_dtype not in ("float16", "float32"):
            raise DaclipError("save_dtype must be float16 or float32")

    def resolve_crops(self, clip_size: Optional[int]) -> None:
        """Fill unset crop sizes from the DA-CLIP input size, if known (``clip_size ..
        clip_size + 64``: the CLIP resize then changes a crop little; a larger ``crop_max``
        also shows the models the stronger downscaling of larger images), and check the
        sizes set so far."""
        if clip_size is not None:
            if self.crop_min is None:
                self.crop_min = min(int(clip_size), self.crop_max or int(clip_size))
            if self.crop_max is None:
                self.crop_max = self.crop_min + 64
        low, high = self.crop_min, self.crop_max
        if (low is not None and low < 1) or (high is not None and high < (low or 1)):
            raise DaclipError(f"need 1 <= crop_min <= crop_max, got {low}, {high}")
        if self.stage != "daclip" and low is not None and self.patch > low:
            raise DaclipError(f"the patch ({self.patch}) must not exceed the smallest context crop ({self.crop_min})")

    def file(self, stage: Optional[str] = None) -> Path:
        return self.out / FILE_NAMES[stage or self.stage]

    def state_file(self) -> Path:
        return self.out / f"{self.stage}_state.pt"

    def daclip_file(self) -> Path:
        return Path(self.daclip) if self.daclip is not None else self.file("daclip")

    def to_json(self) -> dict:
        data = asdict(self)
        data["out"] = str(self.out)
        data["daclip"] = None if self.daclip is None else str(self.daclip)
        data["init"] = None if self.init is None else str(self.init)
        return data


# ---------------------------------------------------------------------------------- data


def sampling_weights(weights: Optional[Mapping[str, float]]) -> Optional[dict[str, float]]:
    """All ten degradations' sampling weights from ``{name: weight}`` (unnamed ones weigh 1;
    0 leaves a degradation out), or None for uniform sampling."""
    if weights is None:
        return None
    unknown = sorted(set(weights) - set(DEGRADATIONS))
    if unknown:
        raise DaclipError(f"unknown degradation(s) {', '.join(unknown)}; choose from {', '.join(DEGRADATIONS)}")
    full = {name: float(weights.get(name, 1.0)) for name in DEGRADATIONS}
    if not all(math.isfinite(w) and w >= 0 for w in full.values()) or sum(full.values()) <= 0:
        raise DaclipError(f"degradation weights must be finite, >= 0 and not all 0, got {dict(weights)}")
    return full


def parse_weights(text: str) -> dict[str, float]:
    """``"raindrop=4,jpeg-compressed=2"`` -> ``{"raindrop": 4.0, "jpeg-compressed": 2.0}``."""
    weights = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        name, _, value = part.partition("=")
        try:  # no "=" leaves an empty value, which float() refuses too
            weights[name.strip()] = float(value)
        except ValueError:
            raise DaclipError(f"expected NAME=WEIGHT, got {part!r}") from None
    return weights


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize of a float RGB image to ``size`` x ``size``, clipped to [0, 1]."""
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]), "F").resize((size, size), Image.Resampling.BICUBIC))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, -1), 0.0, 1.0).astype(np.float32)


def _chw(image: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def random_crop(images: Sequence[np.ndarray], rng: np.random.Generator, crop_min: int, crop_max: int, scale_min: float) -> np.ndarray:
    """A random square crop of side ``crop_min..crop_max``, zoomed out by a random factor in
    ``[scale_min, 1]`` (the region taken is ``side / factor`` wide, bounded by the image, and
    resized to ``side``), with a random flip / 90-degree rotation."""
    image = images[int(rng.integers(len(images)))]
    h, w = image.shape[:2]
    side = int(rng.integers(crop_min, crop_max + 1))
    scale = float(rng.uniform(scale_min, 1.0))
    region = min(int(round(side / scale)), h, w)
    y, x = int(rng.integers(0, h - region + 1)), int(rng.integers(0, w - region + 1))
    crop = image[y : y + region, x : x + region]
    if region != side:
        crop = _resize(crop, side)
    crop = np.rot90(crop, int(rng.integers(4)))
    if rng.integers(2):
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop, dtype=np.float32)


def jitter_colours(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A clean crop with random colours, so that the few training photographs show the
    degradations on many more kinds of content: grey with probability 0.2, otherwise the
    channels shuffled; then a random gamma (0.7..1.4), contrast (0.7..1.2) and channel gains
    (0.8..1.2), clipped to [0, 1]."""
    grey = rng.random() < 0.2
    order = rng.permutation(3)
    gamma, contrast = rng.uniform(0.7, 1.4), rng.uniform(0.7, 1.2)
    gains = rng.uniform(0.8, 1.2, 3).astype(np.float32)
    image = image.mean(axis=2, keepdims=True).repeat(3, axis=2) if grey else image[..., order]
    image = np.clip(image, 0.0, 1.0) ** np.float32(gamma)
    mean = image.mean()
    image = (image - mean) * np.float32(contrast) + mean
    return np.ascontiguousarray(np.clip(image * gains, 0.0, 1.0), dtype=np.float32)


class DegradationSamples(torch.utils.data.Dataset):
    """Synthetic training samples; sample ``k`` depends only on ``(seed, stage, k)``.

    The clean crop is a :func:`random_crop` with :func:`jitter_colours`. Each item is a dict
    of tensors: ``label`` (degradation index in :data:`DEGRADATIONS`),
    ``lq_clip`` (the CLIP input of the degraded crop, ``(3, R, R)``), for the ``daclip``
    stage also ``gt_clip`` (that of the clean crop), for the UNet stages ``lq``/``gt``
    (a ``patch`` window, ``(3, P, P)`` in [0, 1]), and for ``irsde`` also ``t`` (1..T)
    and ``noise`` (standard normal, ``(3, P, P)``).

    With ``clip_view="tiles"`` (see :func:`~daclip_plugin.daclip_model.clip_views`) the
    ``daclip`` stage sees one random unresized ``R`` px tile of each crop (at a multiple of 8
    px, like the tiles of inference), and the UNet stages get all the crop's tiles as
    ``lq_clip`` ``(N, 3, R, R)``, zero-padded to ``N = TILES_PER_SIDE**2``, with their count
    ``lq_clip_n``.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        *,
        stage: str,
        seed: int,
        clip_size: int,
        crop_min: int,
        crop_max: int,
        scale_min: float = 0.5,
        patch: Optional[int] = None,
        T: int = OFFICIAL_SDE["T"],
        clip_view: str = "resize",
        weights: Optional[Mapping[str, float]] = None,
    ):
        self.images = [np.asarray(image, dtype=np.float32) for image in images]
        self.stage, self.seed, self.clip_size = stage, int(seed), int(clip_size)
        self.crop_min, self.crop_max, self.scale_min = int(crop_min), int(crop_max), float(scale_min)
        self.patch, self.T, self.clip_view = patch, int(T), clip_view
        full = sampling_weights(weights)
        self.p = None if full is None else np.array([full[name] for name in DEGRADATIONS]) / sum(full.values())

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([self.seed, _STAGE_CODES[self.stage], int(index)])
        label = int(rng.integers(len(DEGRADATIONS)) if self.p is None else rng.choice(len(DEGRADATIONS), p=self.p))
        clean = jitter_colours(random_crop(self.images, rng, self.crop_min, self.crop_max, self.scale_min), rng)
        lq = degradations.degrade(clean, DEGRADATIONS[label], rng)
        item = {"label": torch.tensor(label)}
        if self.stage == "daclip":
            if self.clip_view == "tiles" and clean.shape[0] > self.clip_size:
                y, x = (int(rng.integers(0, (clean.shape[0] - self.clip_size) // 8 + 1)) * 8 for _ in range(2))
                window = (slice(y, y + self.clip_size), slice(x, x + self.clip_size))
                lq, clean = lq[window], clean[window]
            item["lq_clip"] = preprocess(_to_uint8(lq), self.clip_size)[0]
            item["gt_clip"] = preprocess(_to_uint8(clean), self.clip_size)[0]
            return item
        views = clip_views(_to_uint8(lq), self.clip_size, self.clip_view)
        if self.clip_view == "tiles":
            item["lq_clip_n"] = torch.tensor(views.shape[0])
            views = torch.cat([views, views.new_zeros((TILES_PER_SIDE**2 - views.shape[0], *views.shape[1:]))])
            item["lq_clip"] = views
        else:
            item["lq_clip"] = views[0]
        side, patch = clean.shape[0], self.patch
        y, x = int(rng.integers(0, side - patch + 1)), int(rng.integers(0, side - patch + 1))
        item["gt"] = _chw(clean[y : y + patch, x : x + patch])
        item["lq"] = _chw(lq[y : y + patch, x : x + patch])
        if self.stage == "irsde":
            item["t"] = torch.tensor(int(rng.integers(1, self.T + 1)))
            item["noise"] = torch.from_numpy(rng.standard_normal((3, patch, patch), dtype=np.float32))
        return item


class _IndexStream(torch.utils.data.Sampler):
    """Sample indices ``start, start + 1, ...`` without end."""

    def __init__(self, start: int):
        self.start = start

    def __iter__(self) -> Iterator[int]:
        index = self.start
        while True:
            yield index
            index += 1


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)


def batches(dataset: DegradationSamples, batch: int, start_step: int, workers: int, pin: bool = False):
    """Batches of ``dataset`` for steps ``start_step, start_step + 1, ...`` (step ``s`` holds
    samples ``s * batch .. (s + 1) * batch - 1``)."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        sampler=_IndexStream(start_step * batch),
        num_workers=workers,
        pin_memory=pin,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )


#: Synthetic dead-leaves images added to the photographs, and their size: they give the few
#: bundled photographs' degradations many more kinds of content to appear on.
SYNTHETIC_IMAGES = 48
SYNTHETIC_SIZE = 256


@functools.lru_cache(maxsize=2)
def _dead_leaves_images(seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng([seed, 7919])
    images = tuple(degradations.dead_leaves(SYNTHETIC_SIZE, rng) for _ in range(SYNTHETIC_IMAGES))
    for image in images:
        image.flags.writeable = False
    return images


def train_images(seed: int = 0) -> tuple[list[np.ndarray], dict]:
    """The clean training images (photographs and dead-leaves images) and their description."""
    images = degradations.clean_images("train")
    synthetic = list(_dead_leaves_images(seed))
    try:
        import skimage

        version = skimage.__version__
    except Exception:  # pragma: no cover - skimage is needed by clean_images anyway
        version = None
    info = {
        "source": "skimage.data (degradations.clean_images('train')) and degradations.dead_leaves",
        "scikit_image": version,
        "images": {name: list(image.shape) for name, image in images.items()},
        "dead_leaves": {"count": SYNTHETIC_IMAGES, "size": SYNTHETIC_SIZE, "seed": [seed, 7919]},
    }
    return list(images.values()) + synthetic, info


# ---------------------------------------------------------------------------------- losses


def daclip_losses(model: DaCLIP, batch: Mapping[str, Tensor], text_tokens: Tensor) -> dict[str, Tensor]:
    """The DA-CLIP stage's loss terms and the batch's degradation accuracy."""
    text = model.encode_text(text_tokens, normalize=True)
    content, degra = model.encode_image(batch["lq_clip"], control=True)
    clean = model.encode_image(batch["gt_clip"])
    label = batch["label"]
    logits = model.logit_scale.exp().clamp(max=100) * F.normalize(degra, dim=-1) @ text.T
    ce = F.cross_entropy(logits, label)
    content, clean = F.normalize(content, dim=-1), F.normalize(clean, dim=-1)
    cosine = (1 - (content * clean.detach()).sum(-1)).mean()
    sim = model.clip.logit_scale.exp().clamp(max=100) * content @ clean.T
    target = torch.arange(sim.shape[0], device=sim.device)
    nce = 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))
    accuracy = (logits.argmax(-1) == label).float().mean()
    return {"loss": ce + cosine + nce, "ce": ce, "cos": cosine, "nce": nce, "acc": accuracy}


class SDETable:
    """The IR-SDE coefficients by timestep as tensors, for batches with one ``t`` per sample."""

    def __init__(self, schedule: IRSDESchedule, device="cpu"):
        ts = range(1, schedule.T + 1)
        coefficients = [schedule.posterior_coefficients(t) for t in ts]
        pad = [0.0]
        as_tensor = lambda values: torch.tensor(values, dtype=torch.float32, device=device)  # noqa: E731
        self.schedule = schedule
        self.a = as_tensor(pad + [a for a, _ in coefficients])
        self.b = as_tensor(pad + [b for _, b in coefficients])
        self.decay = torch.exp(-schedule.thetas_cumsum * schedule.dt).to(device)
        self.sigma_bar = schedule.sigma_bars.to(device)
        self.theta = schedule.thetas.to(device)
        self.sigma2 = (schedule.sigmas**2).to(device)
        self.dt = schedule.dt

    def _at(self, values: Tensor, t: Tensor) -> Tensor:
        return values[t][:, None, None, None]

    def forward_state(self, gt: Tensor, mu: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = mu + (gt - mu) exp(-thetas_cumsum[t] dt) + sigma_bar[t] noise``."""
        return mu + (gt - mu) * self._at(self.decay, t) + self._at(self.sigma_bar, t) * noise

    def reverse_mean(self, x: Tensor, noise_pred: Tensor, mu: Tensor, t: Tensor) -> Tensor:
        """Mean of the reverse-SDE step from ``x_t`` given the predicted noise (no dispersion)."""
        score = -noise_pred / self._at(self.sigma_bar, t)
        drift = (self._at(self.theta, t) * (mu - x) - self._at(self.sigma2, t) * score) * self.dt
        return x - drift

    def optimum(self, x: Tensor, gt: Tensor, mu: Tensor, t: Tensor) -> Tensor:
        """The optimal reverse step: mean of ``x_{t-1}`` given ``x_t`` and ``x_0 = gt``."""
        return self._at(self.a, t) * (x - mu) + self._at(self.b, t) * (gt - mu) + mu


def irsde_loss(unet: ConditionalUNet, table: SDETable, batch: Mapping[str, Tensor], contexts, autocast) -> dict[str, Tensor]:
    """The official IR-SDE matching loss: L1(reverse-SDE step mean, optimal reverse step)."""
    gt, mu, t = batch["gt"], batch["lq"], batch["t"]
    x = table.forward_state(gt, mu, t, batch["noise"])
    with autocast():
        noise_pred = unet(x, mu, t, text_context=contexts[1], image_context=contexts[0])
    loss = F.l1_loss(table.reverse_mean(x, noise_pred.float(), mu, t), table.optimum(x, gt, mu, t))
    return {"loss": loss}


DIRECT_LOSSES = {
    "l1": "L1(restored, gt)",
    "log-l1": "mean over patches of log(L1(restored, gt) + 0.01)",
}
"""Direct-restorer losses and their formulas: ``log-l1`` weighs each patch by the inverse of
its current error, as in an average of PSNRs, so subtle degradations count as much as strong ones."""


def direct_loss(unet: ConditionalUNet, batch: Mapping[str, Tensor], contexts, autocast, kind: str = "l1") -> dict[str, Tensor]:
    """The direct restorer's loss (see :data:`DIRECT_LOSSES`) against the clean patch."""
    with autocast():
        restored = direct_restore(unet, batch["lq"], contexts[1], contexts[0])
    per_patch = (restored.float() - batch["gt"]).abs().mean(dim=(1, 2, 3))
    terms = {"l1": per_patch.mean(), "l1_in": F.l1_loss(batch["lq"], batch["gt"])}
    terms["loss"] = terms["l1"] if kind == "l1" else torch.log(per_patch + 0.01).mean()
    return terms


# ------------------------------------------------------------------------------ utilities


def _select_device(name: str) -> torch.device:
    from .devices import select_device

    device = select_device(name)
    if device.type == "mps":  # not tested for training
        return torch.device("cpu")
    return device


def _lr_factor(step: int, progress: float, warmup: int, final: float = 0.01) -> float:
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    cosine = final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return warm * cosine


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay, seen = [], [], set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if param.ndim >= 2 and "embedding" not in name and weight_decay > 0:
            decay.append(param)
        else:
            no_decay.append(param)
    groups = [{"params": no_decay, "weight_decay": 0.0}]
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    return groups


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _to_device(batch: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def save_model(model: nn.Module, path: Path, dtype: str = "float16") -> None:
    """Write a DA-CLIP or UNet in the official layout, cast to ``dtype`` (a copy; aliases kept)."""
    copy_ = copy.deepcopy(model).to("cpu", getattr(torch, dtype))
    if isinstance(copy_, DaCLIP):
        checkpoints.save_daclip(copy_, path)
    else:
        checkpoints.save_unet(copy_, path)


class _Log:
    """JSON-lines log of losses and events, plus throttled progress lines on stdout."""

    def __init__(self, path: Path, stage: str, quiet: bool, print_seconds: float):
        self.path, self.stage, self.quiet, self.print_seconds = path, stage, quiet, print_seconds
        self._last_print = -math.inf

    def write(self, record: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"stage": self.stage, **record}) + "\n")

    def say(self, message: str, force: bool = True) -> None:
        now = time.monotonic()
        if self.quiet or (not force and now - self._last_print < self.print_seconds):
            return
        self._last_print = now
        print(f"[{self.stage}] {message}", flush=True)


# -------------------------------------------------------------------------------- models


def build_daclip(clip_cfg: dict) -> DaCLIP:
    return DaCLIP(copy.deepcopy(clip_cfg))


def build_unet(unet_cfg: dict, context_dim: int) -> ConditionalUNet:
    cfg = {**unet_cfg, "context_dim": context_dim}
    return ConditionalUNet(**cfg)


def _context_dim(model: DaCLIP) -> int:
    return int(model.clip.text_projection.shape[1])


# ---------------------------------------------------------------------------------- eval


def eval_pairs(per_class: int, size: int, seed: int, crop_min: Optional[int] = None, crop_max: Optional[int] = None):
    """Held-out pairs ``(gt, lq, label)`` from ``clean_images("eval")``, ``per_class`` per type.

    Crops are ``size`` px square, or of random size in ``crop_min..crop_max`` when given.
    """
    images = list(degradations.clean_images("eval").values())
    pairs = []
    for label, name in enumerate(DEGRADATIONS):
        for k in range(per_class):
            rng = np.random.default_rng([seed, _STAGE_CODES["eval"], label, k])
            low, high = (crop_min, crop_max) if crop_min is not None else (size, size)
            clean = random_crop(images, rng, low, high, 1.0)
            pairs.append((clean, degradations.degrade(clean, name, rng), label))
    return pairs


@torch.no_grad()
def evaluate_daclip(model: DaCLIP, pairs, clip_view: str = "resize") -> dict:
    """Degradation classification accuracy (the zero-shot classifier of inference) on ``pairs``."""
    model.eval()
    classifier = DegradationClassifier(model, DEGRADATIONS, view=clip_view)
    predictions = [int(classifier.probabilities(_to_uint8(lq)).argmax()) for _, lq, _ in pairs]
    labels = [label for _, _, label in pairs]
    per_class = {
        name: float(np.mean([p == i for p, l in zip(predictions, labels) if l == i])) for i, name in enumerate(DEGRADATIONS)
    }
    accuracy = float(np.mean([p == l for p, l in zip(predictions, labels)]))
    return {"accuracy": accuracy, "per_class": per_class, "n": len(pairs), "images": list(degradations.EVAL_IMAGES)}


@torch.no_grad()
def _contexts(daclip: DaCLIP, lq_clip: Tensor, counts: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """The UNet contexts of a batch of DA-CLIP inputs, ``(B, 3, R, R)``; for tiles,
    ``(B, N, 3, R, R)`` with ``counts`` (``B``) real tiles each, the mean over an item's tiles."""
    if counts is None:
        content, degra = daclip.encode_image(lq_clip, control=True)
        return content.float(), degra.float()
    counts = counts.to(lq_clip.device)
    real = torch.arange(lq_clip.shape[1], device=lq_clip.device)[None] < counts[:, None]
    owner = torch.arange(lq_clip.shape[0], device=lq_clip.device)[:, None].expand_as(real)[real]
    features = daclip.encode_image(lq_clip[real], control=True)
    scale = 1.0 / counts.float()[:, None]
    return tuple(
        torch.zeros(lq_clip.shape[0], f.shape[1], device=f.device).index_add_(0, owner, f.float()) * scale for f in features
    )


@torch.no_grad()
def evaluate_restorer(
    stage: str, daclip: DaCLIP, unet: ConditionalUNet, pairs, device, seed: int = 0, batch: int = 64, clip_view: str = "resize"
) -> dict:
    """PSNR of the input and of the restored image against the clean one, per degradation."""
    unet.eval()
    schedule = IRSDESchedule.from_config(OFFICIAL_SDE)
    classifier = DegradationClassifier(daclip, DEGRADATIONS, view=clip_view).to(device)
    results = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        lq = torch.stack([_chw(lq) for _, lq, _ in chunk]).to(device)
        estimates = [classifier.estimate(_to_uint8(lq)) for _, lq, _ in chunk]
        content = torch.cat([e.image_context for e in estimates]).float()
        degra = torch.cat([e.degra_context for e in estimates]).float()
        if stage == "direct":
            out = direct_restore(unet, lq, degra, content)
        else:
            generator = torch.Generator(device=device).manual_seed(seed + start)
            out = sample_posterior(
                lambda x, t: unet(x, lq, t, text_context=degra, image_context=content), lq, schedule, generator=generator
            )
        out = out.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        results += [(label, psnr(lq_, gt), psnr(o, gt)) for (gt, lq_, label), o in zip(chunk, out)]
    per_class = {}
    for i, name in enumerate(DEGRADATIONS):
        rows = [(a, b) for label, a, b in results if label == i]
        if rows:
            per_class[name] = {"psnr_in": float(np.mean([a for a, _ in rows])), "psnr_out": float(np.mean([b for _, b in rows]))}
    return {
        "psnr_in": float(np.mean([a for _, a, _ in results])) if results else None,
        "psnr_out": float(np.mean([b for _, _, b in results])) if results else None,
        "per_class": per_class,
        "n": len(results),
        "images": list(degradations.EVAL_IMAGES),
        "sampler": None if stage == "direct" else f"posterior, T={schedule.T}",
    }


def evaluate_saved_unet(
    stage: str, path: Path, daclip: DaCLIP, per_class: int, size: int, seed: int, device, clip_view: str
) -> dict:
    """:func:`evaluate_restorer` of the UNet saved at ``path`` (loaded back as inference
    does) on ``per_class`` held-out crops per degradation from seed ``seed + 1``."""
    pairs = eval_pairs(per_class, size, seed + 1)
    unet = checkpoints.load_unet(path, device=device).float()
    return evaluate_restorer(stage, daclip, unet, pairs, device, seed=seed, clip_view=clip_view)


# -------------------------------------------------------------------------------- training


def _resample_patch_kernel(weight: Tensor, size: int) -> Tensor:
    """A patch-embedding kernel for ``size`` px patches from one for ``k`` px patches.

    Its low-pass part sees a ``size / k`` times larger image as the given kernel sees the
    image shrunk by that factor (box average); its high-pass part (zero mean over every
    ``size / k`` square cell) is random, at the scale of a fresh initialisation: a zero
    high-pass part would get no gradient from zero-mean detail such as noise, so the new
    kernel could never learn to see what the old resolution hid.
    """
    old = weight.shape[-1]
    if size % old:
        raise DaclipError(f"cannot resample a {old} px patch embedding to {size} px patches")
    factor = size // old
    low = weight.repeat_interleave(factor, 2).repeat_interleave(factor, 3) / factor**2
    fresh = torch.empty_like(low)
    nn.init.kaiming_uniform_(fresh, a=math.sqrt(5))  # nn.Conv2d's default
    cells = F.avg_pool2d(fresh, factor).repeat_interleave(factor, 2).repeat_interleave(factor, 3)
    return low + (fresh - cells)


def initialise_from(model: nn.Module, path: Path) -> dict:
    """Load the weights of a saved model of the same stage into ``model`` (fine-tuning).

    Every tensor must fit, except a DA-CLIP's patch embeddings, which are resampled to the
    model's patch size (:func:`_resample_patch_kernel`): a 112 px, 16 px-patch DA-CLIP then
    starts a 224 px, 32 px-patch one. Returns what provenance records of the start.
    """
    path = Path(path)
    if not path.is_file():
        raise DaclipError(f"--init: {path} not found")
    try:
        saved = load_daclip_quietly(path) if isinstance(model, DaCLIP) else checkpoints.load_unet(path)
    except DaclipError as error:
        raise DaclipError(f"--init: {path} does not hold the same kind of model: {error}") from error
    source, target = saved.float().state_dict(), model.state_dict()
    if set(source) != set(target):
        raise DaclipError(f"--init: {path} does not hold the same kind of model (its tensors have other names)")
    loaded = {}
    for key, value in target.items():
        tensor = source[key]
        if tensor.shape != value.shape and key.endswith("conv1.weight") and tensor.shape[:2] == value.shape[:2]:
            tensor = _resample_patch_kernel(tensor, value.shape[-1])
        if tensor.shape != value.shape:
            raise DaclipError(f"--init: {key} is {tuple(tensor.shape)} in {path}, the model needs {tuple(value.shape)}")
        loaded[key] = tensor
    model.load_state_dict(loaded)
    return weights_record(path)


def weights_record(path: Path) -> dict:
    """What provenance records of a saved model used as a start: its name, SHA-256 and, when
    a ``provenance.json`` beside it describes it, that entry."""
    path = Path(path)
    info: dict[str, Any] = {"file": path.name, "sha256": sha256_file(path)}
    record = path.with_name(PROVENANCE_NAME)
    if record.is_file():
        try:
            stages = json.loads(record.read_text()).get("stages", {})
        except ValueError:
            stages = {}
        info["provenance"] = next((entry for entry in stages.values() if entry.get("file") == path.name), None)
    return info


def _autocast_factory(device: torch.device, enabled: bool) -> Callable:
    if device.type == "cuda" and enabled:
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return lambda: torch.autocast(device.type, enabled=False)


def write_provenance(out: Path, stage: str, entry: dict) -> None:
    """Add or replace ``stage``'s entry in ``out/provenance.json`` (written atomically)."""
    path = out / PROVENANCE_NAME
    data: dict = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    data.setdefault("format", 1)
    data.setdefault("stages", {})[stage] = entry
    data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    data["files"] = {s: FILE_NAMES[s] for s in data["stages"]}
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1))
    os.replace(partial, path)


def _environment(device: torch.device) -> dict:
    import open_clip

    info = {
        "device": str(device),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info


def train(config: TrainConfig) -> dict:
    """Run one stage; returns its provenance entry (also written to ``provenance.json``)."""
    wall_start = time.monotonic()
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    device = _select_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed training shapes; matmuls stay strict fp32 (no TF32)
    log = _Log(out / LOG_NAME, config.stage, config.quiet, config.print_seconds)
    stage = config.stage

    state = None
    if config.resume and config.state_file().is_file():
        try:
            state = checkpoints.safe_load(config.state_file())
        except Exception as exc:  # not a state this code wrote: never unpickled beyond plain data
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise CheckpointError(f"cannot resume from {config.state_file()}: {type(exc).__name__}: {first_line}") from exc
        if not isinstance(state, dict) or not {"stage", "seed", "step"} <= set(state):
            raise CheckpointError(f"cannot resume from {config.state_file()}: it is not a training state")
        if state.get("stage") != stage:
            raise DaclipError(f"{config.state_file()} holds stage {state.get('stage')!r}, not {stage!r}")
    elif config.resume:
        log.say(f"no saved state at {config.state_file()}: starting from scratch")
    seed = int(state["seed"]) if state else config.seed
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)

    daclip_model: Optional[DaCLIP] = None
    if stage == "daclip":
        clip_cfg = state["model_cfg"] if state else config.clip_cfg
        model = build_daclip(clip_cfg).to(device)
        model_cfg, clip_size = clip_cfg, model.image_size
    else:
        daclip_path = config.daclip_file()
        if not daclip_path.is_file():
            raise DaclipError(f"the {stage} stage needs a trained DA-CLIP: {daclip_path} not found (train stage daclip first or pass --daclip)")
        daclip_model = load_daclip_quietly(daclip_path, device=device).float().eval()
        daclip_model.requires_grad_(False)
        model_cfg = state["model_cfg"] if state else {**config.unet_cfg, "context_dim": _context_dim(daclip_model)}
        if model_cfg["context_dim"] != _context_dim(daclip_model):
            raise DaclipError(f"the UNet's context_dim {model_cfg['context_dim']} does not fit the DA-CLIP's {_context_dim(daclip_model)}")
        model = ConditionalUNet(**model_cfg).to(device)
        clip_size = daclip_model.image_size
    config.resolve_crops(clip_size)
    init = state.get("init") if state else None  # what the run started from, kept across resumes
    if config.init is not None and not state:
        init = initialise_from(model, config.init)
        log.say(f"initialised from {config.init}")
    model.train()

    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.99 if stage != "daclip" else 0.98)
    )
    step, train_seconds, resumed_from = 0, 0.0, None
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, train_seconds, resumed_from = int(state["step"]), float(state["train_seconds"]), int(state["step"])
    loss_tail: list[float] = list(state.get("loss_tail", [])) if state else []

    images, image_info = train_images(seed)
    dataset = DegradationSamples(
        images, stage=stage, seed=seed, clip_size=clip_size, crop_min=config.crop_min, crop_max=config.crop_max,
        scale_min=config.scale_min, patch=config.patch, clip_view=config.clip_view, weights=config.degradation_weights,
    )
    text_tokens = tokenize(DEGRADATIONS).to(device) if stage == "daclip" else None
    table = SDETable(IRSDESchedule.from_config(OFFICIAL_SDE), device) if stage == "irsde" else None
    autocast = _autocast_factory(device, config.amp)
    max_seconds = None if config.max_minutes is None else config.max_minutes * 60
    n_params = sum(p.numel() for p in model.parameters())

    def progress() -> float:
        fractions = []
        if config.steps is not None:
            fractions.append(step / max(config.steps, 1))
        if max_seconds is not None:
            fractions.append(train_seconds / max(max_seconds, 1e-9))
        return max(fractions) if fractions else 0.0

    def done() -> bool:
        return (config.steps is not None and step >= config.steps) or (max_seconds is not None and train_seconds >= max_seconds)

    def save_state() -> None:
        payload = {
            "stage": stage, "seed": seed, "step": step, "train_seconds": train_seconds, "model_cfg": model_cfg,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "loss_tail": loss_tail[-200:],
            "init": init,
        }
        partial = config.state_file().with_name(config.state_file().name + ".partial")
        torch.save(payload, partial)
        os.replace(partial, config.state_file())

    log.write({"event": "start", "step": step, "resumed_from": resumed_from, "device": str(device), "params": n_params,
               "batch": config.batch, "patch": config.patch if stage != "daclip" else None, "seed": seed})
    log.say(f"{'resuming at' if state else 'starting at'} step {step} on {device}: {n_params / 1e6:.2f} M parameters, "
            f"batch {config.batch}" + (f", patch {config.patch}" if stage != "daclip" else "")
            + (f", up to {config.steps} steps" if config.steps is not None else "")
            + (f", up to {config.max_minutes:g} min" if max_seconds is not None else ""))

    window: dict[str, float] = {}
    window_count = 0
    loader = None
    interrupted = False
    if not done():
        loader = batches(dataset, config.batch, step, config.workers, pin=device.type == "cuda")
        iterator = iter(loader)
        segment_start = time.monotonic()
        base_seconds = train_seconds
        try:
            while not done():
                batch = _to_device(next(iterator), device)
                factor = _lr_factor(step, progress(), config.warmup)
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * factor
                if stage == "daclip":
                    terms = daclip_losses(model, batch, text_tokens)
                else:
                    contexts = _contexts(daclip_model, batch["lq_clip"], batch.get("lq_clip_n"))
                    terms = (irsde_loss(model, table, batch, contexts, autocast) if stage == "irsde"
                             else direct_loss(model, batch, contexts, autocast, config.loss))
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                if stage == "daclip":
                    with torch.no_grad():
                        model.logit_scale.clamp_(0, math.log(100))
                        model.clip.logit_scale.clamp_(0, math.log(100))
                step += 1
                for key, value in terms.items():
                    window[key] = window.get(key, 0.0) + value.detach()
                window_count += 1
                train_seconds = base_seconds + time.monotonic() - segment_start
                if step % config.log_every == 0 or done():
                    means = {k: float(v) / window_count for k, v in window.items()}
                    if not all(math.isfinite(v) for v in means.values()):
                        raise DaclipError(f"{stage}: the loss became non-finite at step {step}: {means}")
                    loss_tail.append(means["loss"])
                    log.write({"step": step, **means, "lr": config.lr * factor, "train_s": round(train_seconds, 2),
                               "samples_per_s": round(step * config.batch / max(train_seconds, 1e-9), 1)})
                    log.say(f"step {step}  " + "  ".join(f"{k} {v:.4g}" for k, v in means.items())
                            + f"  lr {config.lr * factor:.2e}  {train_seconds:.0f}s", force=False)
                    window, window_count = {}, 0
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    save_state()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            del iterator, loader
    save_state()
    log.write({"event": "checkpoint", "step": step, "train_s": round(train_seconds, 2)})
    if interrupted:
        log.say(f"interrupted at step {step}; state saved to {config.state_file()} (continue with --resume)")
        raise KeyboardInterrupt

    # -- save the model and evaluate it ---------------------------------------------------
    model.eval()
    path = config.file()
    save_model(model, path, config.save_dtype)
    eval_start = time.monotonic()
    evaluation = None
    if config.eval_per_class:
        if stage == "daclip":
            pairs = eval_pairs(config.eval_per_class, 0, seed + 1, config.crop_min, config.crop_max)
            evaluation = evaluate_daclip(reloaded_daclip(path, device), pairs, config.clip_view)
            log.say(f"held-out accuracy {evaluation['accuracy']:.3f} on {evaluation['n']} crops: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in evaluation["per_class"].items()))
        else:
            evaluation = evaluate_saved_unet(stage, path, daclip_model, config.eval_per_class, config.eval_size, seed, device, config.clip_view)
            log.say(f"held-out PSNR {evaluation['psnr_in']:.2f} dB -> {evaluation['psnr_out']:.2f} dB on {evaluation['n']} crops: "
                    + ", ".join(f"{k} {v['psnr_in']:.1f}->{v['psnr_out']:.1f}" for k, v in evaluation["per_class"].items()))
        evaluation["seconds"] = round(time.monotonic() - eval_start, 2)
        log.write({"event": "eval", "step": step, **evaluation})

    final_loss = float(np.mean(loss_tail[-4:])) if loss_tail else None
    entry = {
        "command": config.command if config.command is not None else list(sys.argv),
        "seed": seed,
        "steps": step,
        "resumed_from": resumed_from,
        "batch": config.batch,
        "patch": config.patch if stage != "daclip" else None,
        "crop": [config.crop_min, config.crop_max],
        "clip_view": config.clip_view,
        **({"loss": config.loss} if stage == "direct" else {}),
        "scale_min": config.scale_min,
        "lr": config.lr,
        "warmup": config.warmup,
        "weight_decay": config.weight_decay,
        "grad_clip": config.grad_clip,
        "optimizer": "AdamW",
        "amp": "bf16 autocast (UNet only)" if (device.type == "cuda" and config.amp and stage != "daclip") else "off (fp32)",
        "train_seconds": round(train_seconds, 2),
        "wall_seconds": round(time.monotonic() - wall_start, 2),
        "samples": step * config.batch,
        "final_loss": final_loss,
        "model_cfg": model_cfg,
        "parameters": n_params,
        "file": path.name,
        "file_bytes": path.stat().st_size,
        "file_dtype": config.save_dtype,
        "file_sha256": sha256_file(path),
        "clean_images": image_info,
        "degradations": list(DEGRADATIONS),
        **({"degradation_weights": config.degradation_weights} if config.degradation_weights else {}),
        "eval": evaluation,
        "config": config.to_json(),
        **_environment(device),
    }
    if init is not None:
        entry["init"] = init
    if stage != "daclip":
        entry["daclip_file"] = config.daclip_file().name
        entry["daclip_sha256"] = sha256_file(config.daclip_file())
    if stage == "irsde":
        entry["sde"] = dict(OFFICIAL_SDE)
        entry["objective"] = "L1(reverse-SDE step mean from the predicted noise, optimal reverse step), t ~ U{1..T}"
    if stage == "direct":
        entry["convention"] = f"restored = lq + unet(xt=lq, cond=lq, time=0, contexts); {DIRECT_LOSSES[config.loss]}"
    write_provenance(out, stage, entry)
    log.write({"event": "end", "step": step, "train_s": round(train_seconds, 2), "wall_s": entry["wall_seconds"], "file": path.name})
    log.say(f"done: {step} steps in {train_seconds:.0f}s, final loss {final_loss}, saved {path} ({entry['file_bytes'] / 1e6:.2f} MB)")
    return entry


def reloaded_daclip(path: Path, device) -> DaCLIP:
    """The saved DA-CLIP as inference sees it (loaded back from the file)."""
    return load_daclip_quietly(path, device=device).float().eval()


def main_from_args(args) -> int:
    """Run ``daclip train`` from its parsed arguments (see ``daclip train --help``)."""
    names = ("steps", "max_minutes", "batch", "patch", "lr", "workers", "device", "seed", "resume",
             "checkpoint_every", "eval_per_class", "eval_size", "preset", "crop_min", "crop_max", "clip_view", "loss")
    options = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if getattr(args, "degradation_weights", None):
        options["degradation_weights"] = parse_weights(args.degradation_weights)
    daclip, init = getattr(args, "daclip", None), getattr(args, "init", None)
    config = TrainConfig(
        args.stage, Path(args.out), daclip=None if daclip is None else Path(daclip), init=None if init is None else Path(init),
        command=["daclip", *sys.argv[1:]] if sys.argv and sys.argv[0].endswith("daclip") else list(sys.argv),
        **options,
    )
    entry = train(config)
    summary = {"stage": args.stage, "file": str(config.file()), "steps": entry["steps"], "final_loss": entry["final_loss"]}
    if entry["eval"]:
        summary["eval"] = {k: v for k, v in entry["eval"].items() if k in ("accuracy", "psnr_in", "psnr_out", "n")}
    print(json.dumps(summary))
    return 0
