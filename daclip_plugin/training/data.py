"""Training data: random crops of clean images, degraded on the fly, reproducible by sample index."""

from __future__ import annotations

import functools
import math
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..data import degradations, sources
from ..engine.pipeline import OFFICIAL_SDE
from ..errors import DaclipError
from ..imaging import unit_to_uint8
from ..nn.daclip import DEGRADATIONS, TILES_PER_SIDE, clip_views, preprocess

#: Seeds samples per stage (and the held-out evaluation) apart.
STAGE_CODES = {"daclip": 1, "irsde": 2, "direct": 3, "eval": 99}

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


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize of a float RGB image to ``size`` x ``size``, clipped to [0, 1]."""
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]), "F").resize((size, size), Image.Resampling.BICUBIC))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, -1), 0.0, 1.0).astype(np.float32)


def to_chw(image: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def random_crop(
    images: Sequence[np.ndarray], rng: np.random.Generator, crop_min: int, crop_max: int, scale_min: float
) -> np.ndarray:
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

    With ``clip_view="tiles"`` (see :func:`~daclip_plugin.nn.daclip.clip_views`) the
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
        rng = np.random.default_rng([self.seed, STAGE_CODES[self.stage], int(index)])
        label = int(rng.integers(len(DEGRADATIONS)) if self.p is None else rng.choice(len(DEGRADATIONS), p=self.p))
        clean = jitter_colours(random_crop(self.images, rng, self.crop_min, self.crop_max, self.scale_min), rng)
        lq = degradations.degrade(clean, DEGRADATIONS[label], rng)
        item = {"label": torch.tensor(label)}
        if self.stage == "daclip":
            if self.clip_view == "tiles" and clean.shape[0] > self.clip_size:
                y, x = (int(rng.integers(0, (clean.shape[0] - self.clip_size) // 8 + 1)) * 8 for _ in range(2))
                window = (slice(y, y + self.clip_size), slice(x, x + self.clip_size))
                lq, clean = lq[window], clean[window]
            item["lq_clip"] = preprocess(unit_to_uint8(lq), self.clip_size)[0]
            item["gt_clip"] = preprocess(unit_to_uint8(clean), self.clip_size)[0]
            return item
        views = clip_views(unit_to_uint8(lq), self.clip_size, self.clip_view)
        if self.clip_view == "tiles":
            item["lq_clip_n"] = torch.tensor(views.shape[0])
            views = torch.cat([views, views.new_zeros((TILES_PER_SIDE**2 - views.shape[0], *views.shape[1:]))])
            item["lq_clip"] = views
        else:
            item["lq_clip"] = views[0]
        side, patch = clean.shape[0], self.patch
        y, x = int(rng.integers(0, side - patch + 1)), int(rng.integers(0, side - patch + 1))
        item["gt"] = to_chw(clean[y : y + patch, x : x + patch])
        item["lq"] = to_chw(lq[y : y + patch, x : x + patch])
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
    images = tuple(sources.dead_leaves(SYNTHETIC_SIZE, rng) for _ in range(SYNTHETIC_IMAGES))
    for image in images:
        image.flags.writeable = False
    return images


def train_images(seed: int = 0) -> tuple[list[np.ndarray], dict]:
    """The clean training images (photographs and dead-leaves images) and their description."""
    images = sources.clean_images("train")
    synthetic = list(_dead_leaves_images(seed))
    try:
        import skimage

        version = skimage.__version__
    except Exception:  # pragma: no cover - skimage is needed by clean_images anyway
        version = None
    info = {
        "source": "skimage.data (sources.clean_images('train')) and sources.dead_leaves",
        "scikit_image": version,
        "images": {name: list(image.shape) for name, image in images.items()},
        "dead_leaves": {"count": SYNTHETIC_IMAGES, "size": SYNTHETIC_SIZE, "seed": [seed, 7919]},
    }
    return list(images.values()) + synthetic, info
