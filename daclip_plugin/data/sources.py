"""Clean images: held-out and training photographs of scikit-image, synthetic dead leaves, random crops.

Nothing is downloaded: the photographs ship with scikit-image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .degradations import check_rng, finish, gaussian

#: skimage.data images (bundled, no download) used for training patches.
TRAIN_IMAGES = (
    "astronaut",
    "cat",
    "motorcycle_left",
    "motorcycle_right",
    "immunohistochemistry",
    "brick",
    "grass",
    "moon",
    "coins",
    "page",
    "text",
    "cell",
)
#: Held out for evaluation only; never used for training.
EVAL_IMAGES = ("coffee", "rocket", "camera", "gravel")


def _load(name: str) -> np.ndarray:
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        pixels = left if name.endswith("left") else right
    else:
        pixels = getattr(data, name)()
    rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
    return np.ascontiguousarray(rgb[..., :3], dtype=np.float32) / np.float32(255.0)


def clean_images(split: str = "train") -> dict[str, np.ndarray]:
    """Clean RGB float32 photographs bundled with scikit-image, by name.

    ``split="train"`` gives :data:`TRAIN_IMAGES` (12 images; the stereo motorcycle pair
    stays together), ``"eval"`` the held-out :data:`EVAL_IMAGES` (coffee, rocket, camera,
    gravel), never to be used for training. Grayscale ones are repeated to RGB. Images
    that are synthetic, already degraded (``clock``), need a download, or are mostly
    black (``hubble_deep_field``, ``retina``) are left out.
    """
    splits = {"train": TRAIN_IMAGES, "eval": EVAL_IMAGES}
    if split not in splits:
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    return {name: _load(name) for name in splits[split]}


def random_crops(images, size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random ``size`` x ``size`` crops, each from a uniformly chosen image.

    Images smaller than ``size`` are first enlarged (bicubic) to fit. Returns an
    ``(n, size, size, 3)`` float32 array.
    """
    images = list(images.values()) if isinstance(images, dict) else list(images)
    if not images or size < 1 or n < 0:
        raise ValueError("random_crops needs at least one image, size >= 1 and n >= 0")
    crops = np.empty((n, size, size, 3), dtype=np.float32)
    for k, index in enumerate(rng.integers(0, len(images), n)):
        img = images[index]
        h, w = img.shape[:2]
        if min(h, w) < size:
            factor = size / min(h, w)
            shape = (max(size, round(w * factor)), max(size, round(h * factor)))
            img = np.stack(
                [np.asarray(Image.fromarray(img[..., c]).resize(shape, Image.Resampling.BICUBIC)) for c in range(3)], -1
            ).clip(0, 1)
            h, w = img.shape[:2]
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        crops[k] = img[y : y + size, x : x + size]
    return crops


def dead_leaves(size: int, rng: np.random.Generator, *, leaves: int | None = None) -> np.ndarray:
    """A synthetic clean image: the dead-leaves model of natural-image statistics.

    Opaque discs with power-law radii (density ~ r^-3, from 2% to half of ``size``) fall
    one over another, each with a random muted colour, a linear shading gradient and, sometimes,
    a fine stripe texture; a light Gaussian blur (sigma 0..1 px) stands for the optics.
    Scale-invariant edges and flat regions like photographs', in unlimited variety: used
    beside the few bundled photographs for training. Returns ``(size, size, 3)`` float32.
    """
    check_rng(rng)
    leaves = int(rng.integers(300, 800)) if leaves is None else leaves
    r_min, r_max = max(size / 50, 0.5), size / 2
    # inverse-CDF sampling of p(r) ~ r^-3 on [r_min, r_max]
    u = rng.random(leaves)
    radii = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
    image = np.empty((size, size, 3), np.float32)
    image[:] = rng.random(3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for radius in radii:
        cy, cx = rng.uniform(-radius, size + radius, 2)
        top, bottom = max(int(cy - radius), 0), min(int(cy + radius) + 1, size)
        left, right = max(int(cx - radius), 0), min(int(cx + radius) + 1, size)
        if top >= bottom or left >= right:
            continue
        y, x = yy[top:bottom, left:right], xx[top:bottom, left:right]
        inside = (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
        gradient = rng.normal(0, 0.25 / max(radius, 1.0), 2)
        shade = 1 + gradient[0] * (y - cy) + gradient[1] * (x - cx)
        if rng.random() < 0.3:
            frequency, angle = rng.uniform(0.2, 1.2), rng.uniform(0, np.pi)
            shade = shade + 0.15 * np.sin(frequency * (np.cos(angle) * x + np.sin(angle) * y))
        grey = rng.random()
        colour = np.clip(grey + rng.uniform(0, 0.6) * (rng.random(3) - grey), 0, 1).astype(np.float32)
        image[top:bottom, left:right][inside] = np.clip(colour * shade[inside, None], 0, 1)
    return finish(gaussian(image, rng.uniform(0, 1)), image)
