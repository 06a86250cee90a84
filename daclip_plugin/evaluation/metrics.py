"""Image quality metrics of float RGB images in [0, 1]: PSNR and SSIM (scikit-image)."""

from __future__ import annotations

import math

import numpy as np


def as_rgb(image: np.ndarray) -> np.ndarray:
    """``image`` as float64 RGB in [0, 1] (see :func:`daclip_plugin.imaging.normalize`)."""
    from ..imaging import normalize

    return normalize(image)[0].astype(np.float64)


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of float RGB ``image`` against ``reference`` (range 1); ``inf`` when equal."""
    from skimage.metrics import peak_signal_noise_ratio

    if np.array_equal(image, reference):
        return math.inf
    return float(peak_signal_noise_ratio(reference, image, data_range=1.0))


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """SSIM of float RGB ``image`` against ``reference`` (range 1, per channel, averaged)."""
    from skimage.metrics import structural_similarity

    side = min(image.shape[:2])
    win_size = None if side >= 7 else max(side - (1 - side % 2), 1)
    if win_size is not None and win_size < 3:
        return 1.0 if np.array_equal(image, reference) else float("nan")
    return float(structural_similarity(reference, image, channel_axis=-1, data_range=1.0, win_size=win_size))
