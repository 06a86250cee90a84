"""Image normalisation: any supported array to float RGB in [0, 1], and back.

Supported inputs: ``(H, W)`` and ``(H, W, 1)`` grayscale, ``(H, W, 3)`` RGB and
``(H, W, 4)`` RGBA, of unsigned or signed integer or floating dtype.
``uint8`` and ``uint16`` map by their full range; floats already within ``[0, 1]`` are
kept; any other data is rescaled by its own minimum and maximum, and mapped back
to the same range afterwards. An explicit ``value_range`` (for example the contrast limits
of a napari layer, or 0..4095 for 12-bit data) replaces that choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


def has_full_range(dtype) -> bool:
    """Whether data of ``dtype`` maps by the dtype's own range (8- and 16-bit unsigned), not by its values."""
    return np.dtype(dtype).newbyteorder("=") in _FULL_RANGE  # big-endian uint16 is uint16 too


def colour_of(data, rgb: bool):
    """The colour of channels-last ``data`` (its alpha left out when ``rgb`` and four channels): what the range reads."""
    return data[..., :3] if rgb and data.shape[-1] == 4 else data


def value_range_of(data: np.ndarray) -> tuple[float, float]:
    """The default intensity range of ``data`` (see the module docstring)."""
    full = _FULL_RANGE.get(data.dtype.newbyteorder("="))
    if full is not None:
        return 0.0, full
    low, high = float(data.min()), float(data.max())
    if data.dtype.kind == "f" and low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    if not high > low:  # a constant image: any span keeps the value; one relative to it stays exact
        return low, low + max(1.0, abs(low) * 2.0**-20)
    return low, high


def _work_dtype(dtype: np.dtype, low: float, high: float) -> type:
    """float32 where it is exact (8- and 16-bit integers, float32 data of a finite span), else float64."""
    if dtype.kind in "ui":
        return np.float32 if dtype.itemsize <= 2 else np.float64
    return np.float32 if dtype.itemsize <= 4 and high - low < 1e38 else np.float64


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
    clipped); by default it is chosen from the data (see the module docstring). An image
    whose float copy does not fit in memory is an :class:`InvalidImageError` saying so.
    """
    try:
        return _normalize(image, value_range)
    except MemoryError as exc:
        shape = np.shape(image)
        needed = 4 * 3 * math.prod(shape[:2]) if len(shape) >= 2 else 0
        raise InvalidImageError(
            f"the image of shape {tuple(shape)} is too large for this machine's memory (its float RGB copy alone "
            f"takes {needed / 2**30:.1f} GiB); restore it in parts, e.g. as a stack of crops"
        ) from exc


def _normalize(image, value_range: Optional[Sequence[float]]) -> tuple[np.ndarray, ImageInfo]:
    data = validate(image)
    layout = _layout(data.shape)
    alpha = data[..., 3].copy() if layout == "rgba" else None
    color = colour_of(data, layout == "rgba")
    low, high = value_range_of(color) if value_range is None else check_value_range(value_range)
    work = _work_dtype(data.dtype, low, high)
    scaled = color.astype(work)  # one full-size copy, then in place: large images stay within bounds
    scaled -= work(low)
    scaled /= work(high - low)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    if layout == "gray":
        scaled = scaled[..., None]
    if scaled.shape[-1] == 1:  # grey to RGB: a new, writable array
        scaled = np.broadcast_to(scaled, data.shape[:2] + (3,))
    rgb = np.ascontiguousarray(scaled, dtype=np.float32)
    return rgb, ImageInfo(data.dtype, layout, low, high, alpha)


def _limits(dtype: np.dtype, work: type) -> tuple[float, float]:
    """The dtype's range, as values of ``work`` that convert back without overflowing."""
    info = np.iinfo(dtype) if dtype.kind in "ui" else np.finfo(dtype)
    low, high = work(info.min), work(info.max)
    if dtype.kind in "ui" and int(high) > info.max:  # 2**63 - 1 rounds up to 2**63 in float64
        high = np.nextafter(high, work(0))
    return low, high


def denormalize(rgb: np.ndarray, info: ImageInfo) -> np.ndarray:
    """Map a float RGB result in ``[0, 1]`` back to the source's layout, range and dtype (byte order too)."""
    work = _work_dtype(info.dtype, info.low, info.high)
    values = np.clip(np.asarray(rgb, dtype=work), 0.0, 1.0)  # a new array: the rest works in place
    if info.layout in ("gray", "gray1"):
        values = values.mean(axis=-1, keepdims=info.layout == "gray1", dtype=work)
    values *= work(info.high - info.low)
    values += work(info.low)
    if info.dtype.kind in "ui":
        np.rint(values, out=values)
    np.clip(values, *_limits(info.dtype, work), out=values)
    result = values.astype(info.dtype)
    if info.layout == "rgba":
        result = np.concatenate([result, info.alpha[..., None]], axis=-1).astype(info.dtype, copy=False)
    return result


def unit_to_uint8(rgb: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] as ``uint8`` (clipped, rounded to the nearest level)."""
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
