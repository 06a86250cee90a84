"""Image normalisation: any supported array to float RGB in [0, 1], and back.

Supported inputs: ``(H, W)`` and ``(H, W, 1)`` grayscale, ``(H, W, 3)`` RGB and
``(H, W, 4)`` RGBA, of unsigned or signed integer or floating dtype.
``uint8`` and ``uint16`` map by their full range; floats already within ``[0, 1]`` are
kept; any other data is rescaled by its own minimum and maximum, and mapped back
to the same range afterwards. An explicit ``value_range`` (for example the contrast limits
of a napari layer, or 0..4095 for 12-bit data) replaces that choice.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Optional, Sequence

import numpy as np

from .errors import InvalidImageError, InvalidOptionError

_FULL_RANGE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
#: The smallest side the DA-CLIP models (and the napari widget) accept: a few pixels hold
#: nothing to recognise or restore.
MIN_SIDE = 8


def check_size(height: int, width: int) -> None:
    """Refuse images with a side under :data:`MIN_SIDE` pixels."""
    if min(height, width) < MIN_SIDE:
        raise InvalidImageError(f"the image is {width} x {height} px; it needs at least {MIN_SIDE} x {MIN_SIDE} px")
_CHANNEL_LAYOUTS = {1: "gray1", 3: "rgb", 4: "rgba"}


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`denormalize` needs to give a result the source's form back."""

    dtype: np.dtype
    layout: str  # "gray", "gray1", "rgb" or "rgba"
    low: float
    high: float
    alpha: Optional[np.ndarray] = None


def _layout(shape: tuple) -> str:
    if len(shape) == 2:
        return "gray"
    if len(shape) == 3 and shape[-1] in _CHANNEL_LAYOUTS:
        return _CHANNEL_LAYOUTS[shape[-1]]
    raise InvalidImageError(
        f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {shape}; "
        "restore stacks slice by slice and put channels last"
    )


def _value_range(data: np.ndarray) -> tuple[float, float]:
    if data.dtype in _FULL_RANGE:
        return 0.0, _FULL_RANGE[data.dtype]
    low, high = float(data.min()), float(data.max())
    if data.dtype.kind == "f" and low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    if high == low:  # a constant image: any range that keeps the value works
        return low, low + 1.0
    return low, high


def validate(image) -> np.ndarray:
    """Return ``image`` as a NumPy array, or raise :class:`InvalidImageError` saying why not."""
    data = np.asarray(image)
    if data.dtype.kind not in "uif":
        raise InvalidImageError(f"unsupported image dtype {data.dtype}: use an integer or float image")
    _layout(data.shape)
    if data.size == 0:
        raise InvalidImageError(f"the image is empty (shape {data.shape})")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise InvalidImageError(f"the image has {bad} NaN or infinite values; replace them first")
    return data


def check_value_range(value_range: Sequence[float]) -> tuple[float, float]:
    """``(low, high)`` as floats, or an error saying what a value range must be."""
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise InvalidOptionError(f"value_range must be two finite numbers (low, high) with low < high; got {value_range!r}")
    return low, high


def normalize(image, value_range: Optional[Sequence[float]] = None) -> tuple[np.ndarray, ImageInfo]:
    """Return a contiguous ``float32`` ``(H, W, 3)`` RGB copy in ``[0, 1]`` and how to undo it.

    ``value_range`` ``(low, high)`` maps ``low`` to 0 and ``high`` to 1 (values outside are
    clipped); by default it is chosen from the data (see the module docstring).
    """
    data = validate(image)
    layout = _layout(data.shape)
    alpha = data[..., 3].copy() if layout == "rgba" else None
    color = data[..., :3] if layout == "rgba" else data
    low, high = _value_range(color) if value_range is None else check_value_range(value_range)
    scaled = (color.astype(np.float64) - low) / (high - low)
    if layout == "gray":
        scaled = scaled[..., None]
    rgb = np.broadcast_to(scaled, data.shape[:2] + (3,))
    rgb = np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32)
    return rgb, ImageInfo(data.dtype, layout, low, high, alpha)


def denormalize(rgb: np.ndarray, info: ImageInfo) -> np.ndarray:
    """Map a float RGB result in ``[0, 1]`` back to the source's layout, range and dtype."""
    values = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    if info.layout in ("gray", "gray1"):
        values = values.mean(axis=-1, keepdims=info.layout == "gray1")
    values = values * (info.high - info.low) + info.low
    if info.dtype.kind in "ui":
        limits = np.iinfo(info.dtype)
        values = np.clip(np.rint(values), limits.min, limits.max)
    result = values.astype(info.dtype)
    if info.layout == "rgba":
        result = np.concatenate([result, info.alpha[..., None].astype(info.dtype)], axis=-1)
    return result
