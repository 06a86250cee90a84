"""Reading and writing image files for the command line (Pillow)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DaclipError, InvalidImageError

def _pixels(image: Image.Image) -> np.ndarray:
    if image.mode in ("L", "RGB", "RGBA", "F"):
        return np.asarray(image)
    if image.mode.startswith("I"):  # 16- or 32-bit integer grayscale
        data = np.asarray(image)
        if data.min() < 0 or data.max() > 65535:
            raise InvalidImageError(f"integer pixel values outside 0..65535 (mode {image.mode})")
        return data.astype(np.uint16)
    return np.asarray(image.convert("RGBA" if "A" in image.getbands() else "RGB"))


def read_image(path) -> np.ndarray:
    """An image file as an array: uint8 gray/RGB/RGBA, uint16 or float32 grayscale."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            return _pixels(image)
    except FileNotFoundError:
        raise DaclipError(f"no such image file: {path}") from None
    except InvalidImageError as exc:
        raise InvalidImageError(f"cannot use {path}: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidImageError(f"cannot read {path} as an image: {exc}") from None


def write_image(path, data: np.ndarray) -> Path:
    """Write ``data`` (uint8 gray/RGB/RGBA or uint16 gray) to ``path`` atomically.

    The file appears complete or not at all: it is written beside the target, then renamed.
    """
    path = Path(path)
    data = np.asarray(data)
    tiff = path.suffix.lower() in (".tif", ".tiff")
    if data.dtype == np.uint16 and data.ndim == 3 or data.dtype.kind == "f" and not (tiff and data.ndim == 2):
        data = to_uint8_rgb(data) if data.ndim == 3 and data.shape[-1] == 3 else _to_uint8(data)
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    image = Image.fromarray(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".png")
    os.close(handle)
    try:
        image.save(temporary, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _to_uint8(data: np.ndarray) -> np.ndarray:
    """16-bit values scaled down, floats in [0, 1] scaled up (Pillow lacks such colour modes)."""
    if data.dtype == np.uint16:
        return (data // 257).astype(np.uint8)
    if data.dtype != np.uint8:
        return np.rint(np.clip(data, 0, 1) * 255).astype(np.uint8)
    return data


def to_uint8_rgb(data: np.ndarray) -> np.ndarray:
    """A display copy: uint8 RGB (gray repeated, alpha dropped, 16 bits scaled down)."""
    data = _to_uint8(np.asarray(data))
    if data.ndim == 2:
        data = data[..., None]
    return np.repeat(data, 3, axis=-1) if data.shape[-1] == 1 else data[..., :3]


def side_by_side(before: np.ndarray, after: np.ndarray, gap: int = 8) -> np.ndarray:
    """``before | after`` as one uint8 RGB picture, separated by a white gap."""
    left, right = to_uint8_rgb(before), to_uint8_rgb(after)
    height = max(left.shape[0], right.shape[0])
    canvas = np.full((height, left.shape[1] + gap + right.shape[1], 3), 255, np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] + gap:] = right
    return canvas
