"""Image files: read and write at the file's own bit depth, sample format and frame count.

TIFF goes through tifffile (any dtype, several pages), 16-bit colour PNG through pypng, and
everything else through Pillow. Reading applies the EXIF orientation, keeps a palette's
transparency, and checks the declared size against a limit before decoding (a small file can
declare billions of pixels). Writing is atomic (a complete file or none, with the usual
permissions), and a format that cannot hold the data is refused instead of losing it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from .errors import DaclipError, InvalidImageError
from .persist import replacing

#: Files declaring more pixels than this (per frame) are refused before they are decoded.
DEFAULT_MAX_PIXELS = 150_000_000
ENV_MAX_PIXELS = "DACLIP_MAX_PIXELS"
TIFF = (".tif", ".tiff")
#: Writable formats by suffix: what each can hold.
FORMATS = {
    ".png": "8- or 16-bit integers, gray, RGB or RGBA",
    ".tif": "any integer or float data, several frames",
    ".tiff": "any integer or float data, several frames",
    ".jpg": "8-bit gray or RGB",
    ".jpeg": "8-bit gray or RGB",
    ".bmp": "8-bit gray, RGB or RGBA",
    ".webp": "8-bit RGB or RGBA",
}
Image.MAX_IMAGE_PIXELS = None  # our own limit applies, before decoding and with a clear message


@dataclass(frozen=True)
class Picture:
    """An image file's pixels: ``(H, W[, C])``, or ``(frames, H, W[, C])`` when ``frames > 1``."""

    data: np.ndarray
    frames: int = 1
    #: grey with alpha in the file (``data`` holds it as RGBA): see :func:`gray_alpha`
    gray_alpha: bool = False

    @property
    def stack(self) -> bool:
        return self.frames > 1


def max_pixels() -> int:
    """The pixel limit: ``DACLIP_MAX_PIXELS`` if set, else :data:`DEFAULT_MAX_PIXELS`."""
    value = os.environ.get(ENV_MAX_PIXELS, "")
    return int(value) if value.strip().isdigit() else DEFAULT_MAX_PIXELS


def _check_pixels(path: Path, height: int, width: int, limit: Optional[int]) -> None:
    limit = max_pixels() if limit is None else limit
    if height * width > limit:
        raise InvalidImageError(
            f"{path} declares {width} x {height} pixels, more than the limit of {limit:,} "
            f"(raise it with --max-pixels or {ENV_MAX_PIXELS} if the file is genuine)"
        )


def read_picture(path, *, max_pixels: Optional[int] = None) -> Picture:
    """Read every frame of an image file at its own depth (see :class:`Picture`)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidImageError(f"no such image file: {path}" if not path.exists() else f"{path} is not a file")
    try:
        if path.suffix.lower() in TIFF:
            return _read_tiff(path, max_pixels)
        with Image.open(path) as image:
            _check_pixels(path, image.height, image.width, max_pixels)
            gray_alpha = image.mode in ("LA", "La")
            if image.format == "PNG" and _png_header(path)[0] == 16 and image.mode not in ("I", "I;16", "I;16B"):
                data, planes = _read_png16(path)
                return Picture(data, gray_alpha=planes == 2)
            frames = [_pixels(ImageOps.exif_transpose(frame)) for frame in ImageSequence.Iterator(image)]
    except DaclipError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidImageError(f"cannot read {path} as an image: {exc}") from None
    if len(frames) == 1:
        return Picture(frames[0], gray_alpha=gray_alpha)
    if len({(f.shape, f.dtype) for f in frames}) > 1:
        raise InvalidImageError(f"the {len(frames)} frames of {path} differ in size or kind")
    return Picture(np.stack(frames), len(frames), gray_alpha)


def written_channels(channels: int, suffix: str) -> int:
    """The channels a result read with ``channels`` is written with into a ``suffix`` file: grey and
    alpha stays so in PNG only, and is RGBA elsewhere."""
    return 4 if channels == 2 and suffix.lower() != ".png" else channels


def gray_alpha(rgba: np.ndarray) -> np.ndarray:
    """A restored RGBA image of a grey-with-alpha file as grey and alpha again (grey: the mean of R, G, B,
    as for grey images)."""
    grey = rgba[..., :3].mean(axis=-1, dtype=np.float64)
    if rgba.dtype.kind in "ui":
        grey = np.rint(grey)
    return np.stack([grey.astype(rgba.dtype), rgba[..., 3]], axis=-1)


@dataclass(frozen=True)
class Header:
    """What an image file holds, read without decoding its pixels."""

    frames: int
    channels: int
    dtype: np.dtype


_MODE_DTYPES = {"I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16, "I": np.int32, "F": np.float32}


def probe(path, *, max_pixels: Optional[int] = None) -> Header:
    """The frames, channels and pixel type of an image file (as :func:`read_picture` gives them)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidImageError(f"no such image file: {path}" if not path.exists() else f"{path} is not a file")
    try:
        if path.suffix.lower() in TIFF:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, channels = _tiff_shape(path, series)
                height, width = shape[-2:]
                _check_pixels(path, height, width, max_pixels)
                return Header(shape[0] if len(shape) == 3 else 1, channels, np.dtype(series.dtype))
        with Image.open(path) as image:
            _check_pixels(path, image.height, image.width, max_pixels)
            depth, planes = _png_header(path) if image.format == "PNG" else (8, 0)
            sixteen = depth == 16 and image.mode not in _MODE_DTYPES
            dtype = np.dtype(np.uint16 if sixteen else _MODE_DTYPES.get(image.mode, np.uint8))
            bands = len(image.getbands())
            transparent = image.mode in ("P", "PA") and ("transparency" in image.info or image.mode == "PA")
            channels = (
                2
                if image.mode in ("LA", "La") or (sixteen and planes == 2)
                else 4
                if transparent or (bands in (2, 4) and "A" in image.getbands())
                else 1
                if bands == 1 and image.mode != "P"
                else 3
            )
            return Header(getattr(image, "n_frames", 1), channels, dtype)
    except DaclipError:
        raise
    except Exception as exc:
        raise InvalidImageError(f"cannot read {path} as an image: {exc}") from None


def read_image(path, *, max_pixels: Optional[int] = None) -> np.ndarray:
    """Read a single image; a file of several frames is refused with a message saying so."""
    picture = read_picture(path, max_pixels=max_pixels)
    if picture.stack:
        raise InvalidImageError(f"{path} holds {picture.frames} frames; read it with read_picture (daclip restore restores each)")
    return picture.data


def _pixels(image: Image.Image) -> np.ndarray:
    if image.mode in ("L", "RGB", "RGBA", "F"):
        return np.asarray(image)
    if image.mode in _MODE_DTYPES:  # 16- or 32-bit integer gray
        return np.asarray(image).astype(_MODE_DTYPES[image.mode])
    if image.mode in ("P", "PA") and ("transparency" in image.info or image.mode == "PA"):
        return np.asarray(image.convert("RGBA"))
    if image.mode == "1":
        return np.asarray(image.convert("L"))
    return np.asarray(image.convert("RGBA" if "A" in image.getbands() else "RGB"))


def _png_header(path: Path) -> tuple[int, int]:
    """A PNG's bit depth and samples per pixel, from its header (8 and 3 if it has none)."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    if len(header) != 26 or header[12:16] != b"IHDR":
        return 8, 3
    return header[24], {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(header[25], 3)


def _read_png16(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit PNG's pixels (grey and alpha as RGBA) and its samples per pixel."""
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    data = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    if planes == 2:  # gray and alpha: as RGBA
        data = np.concatenate([np.repeat(data[..., :1], 3, axis=-1), data[..., 1:]], axis=-1)
    return (data[..., 0] if planes == 1 else data), planes


def _tiff_shape(path: Path, series) -> tuple[tuple[int, ...], int]:
    """A TIFF series' ``(frames?, H, W)`` shape and channels; colour stored channel by channel
    (planar RGB, axes ``...SYX``) counts as colour, not as a stack of grey frames."""
    axes, shape = series.axes, tuple(series.shape)
    planar = axes.endswith("SYX") and shape[-3] in (3, 4) and series.keyframe.photometric == 2  # RGB
    if axes.endswith("YXS") or planar:
        channels = shape[-1] if axes.endswith("YXS") else shape[-3]
        pixels = shape[-3:-1] if axes.endswith("YXS") else shape[-2:]
        lead = shape[:-3]
    elif axes.endswith("YX"):
        channels, pixels, lead = 1, shape[-2:], shape[:-2]
    else:
        raise InvalidImageError(f"{path} has axes {axes!r}; expected images with Y and X last")
    if channels not in (1, 3, 4):
        raise InvalidImageError(f"{path} has {channels} samples per pixel; expected 1 (grey), 3 (RGB) or 4 (RGBA)")
    if len(lead) > 1:
        raise InvalidImageError(f"{path} has {len(lead)} axes besides the image ({axes}); open it in napari to pick one")
    return lead + pixels, channels


def _read_tiff(path: Path, limit: Optional[int]) -> Picture:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, channels = _tiff_shape(path, series)
            _check_pixels(path, *shape[-2:], limit)
            data = series.asarray()
            if channels > 1 and series.axes.endswith("SYX"):  # planar colour: channels last
                data = np.moveaxis(data, -3, -1)
    except DaclipError:
        raise
    except Exception as exc:
        raise InvalidImageError(f"cannot read {path} as a TIFF image: {exc}") from None
    if data.dtype.kind not in "uif" or data.dtype.itemsize > 8:
        raise InvalidImageError(f"{path} holds {data.dtype} pixels; expected integers or floats")
    return Picture(data, shape[0] if len(shape) == 3 else 1)


# --------------------------------------------------------------------------- writing


def format_problem(suffix: str, dtype: np.dtype, channels: int, frames: int) -> Optional[str]:
    """Why a file of ``suffix`` cannot hold such data (``None`` if it can)."""
    suffix = suffix.lower()
    if suffix not in FORMATS:
        return f"unknown image format {suffix or '(none)'!r}; use one of {', '.join(sorted(FORMATS))}"
    what = f"{dtype} data with {channels} channel(s)" + (f" in {frames} frames" if frames > 1 else "")
    fits = suffix in TIFF or (
        frames == 1
        and (
            (suffix == ".png" and dtype in (np.uint8, np.uint16))
            or (suffix in (".jpg", ".jpeg") and dtype == np.uint8 and channels in (1, 3))
            or (suffix == ".bmp" and dtype == np.uint8 and channels in (1, 3, 4))
            or (suffix == ".webp" and dtype == np.uint8 and channels in (3, 4))
        )
    )
    return None if fits else f"a {suffix} file cannot hold {what} ({suffix} holds {FORMATS[suffix]}); use .tif"


def write_image(path, data: np.ndarray, *, frames: int = 1) -> Path:
    """Write ``data`` to ``path`` in the format of its suffix, atomically.

    ``frames > 1``: ``data`` is a stack written as pages (TIFF). The file appears complete or
    not at all (written beside the target, then renamed; interrupted, it is removed), with
    the permissions new files get here. A format that cannot hold the data is an error.
    """
    path = Path(path)
    data = np.asarray(data)
    channels = data.shape[-1] if data.ndim - (frames > 1) == 3 else 1
    problem = format_problem(path.suffix, np.dtype(data.dtype).newbyteorder("="), channels, frames)
    if problem:
        raise DaclipError(f"cannot write {path}: {problem}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as partial, open(partial, "xb") as stream:  # a new file, with the permissions the umask gives
        _encode(stream, path.suffix.lower(), data, frames)
    return path


def _encode(stream, suffix: str, data: np.ndarray, frames: int) -> None:
    if suffix in TIFF:
        import tifffile

        rgb = data.ndim - (frames > 1) == 3 and data.shape[-1] in (3, 4)
        tifffile.imwrite(
            stream,
            data,
            photometric="rgb" if rgb else "minisblack",
            compression="zlib",
            extrasamples=("unassalpha",) if rgb and data.shape[-1] == 4 else None,
        )
        return
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if suffix == ".png" and data.dtype.itemsize == 2 and data.ndim == 3:  # 16-bit colour: Pillow cannot
        import png

        mode = {2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[data.shape[-1]]
        png.from_array(data.astype(">u2").reshape(data.shape[0], -1), mode).write(stream)
        return
    image = Image.fromarray(np.ascontiguousarray(data.astype(data.dtype.newbyteorder("="))))
    image.save(stream, format=Image.registered_extensions()[suffix])


# --------------------------------------------------------------------------- pictures for people


def _to_uint8(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """8-bit copy for display, ``low..high`` mapped to 0..255."""
    if data.dtype == np.uint8:
        return data
    values = (data.astype(np.float64) - low) / ((high - low) or 1.0)
    return np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8)


def _display_range(data: np.ndarray) -> tuple[float, float]:
    if data.dtype == np.uint16:
        return 0.0, 65535.0
    low, high = float(data.min()), float(data.max())
    return (0.0, 1.0) if data.dtype.kind == "f" and low >= 0 and high <= 1 else (low, high)


def to_uint8_rgb(data: np.ndarray, value_range: Optional[tuple[float, float]] = None) -> np.ndarray:
    """A display copy: uint8 RGB (gray repeated, alpha dropped, other depths scaled to 8 bits)."""
    data = np.asarray(data)
    data = _to_uint8(data, *(value_range or _display_range(data)))
    if data.ndim == 2:
        data = data[..., None]
    return np.repeat(data, 3, axis=-1) if data.shape[-1] == 1 else data[..., :3]


def side_by_side(before: np.ndarray, after: np.ndarray, gap: int = 8) -> np.ndarray:
    """``before | after`` as one uint8 RGB picture (both shown in the input's range), a white gap between."""
    shown = _display_range(np.asarray(before))
    left, right = to_uint8_rgb(before, shown), to_uint8_rgb(after, shown)
    height = max(left.shape[0], right.shape[0])
    canvas = np.full((height, left.shape[1] + gap + right.shape[1], 3), 255, np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] + gap :] = right
    return canvas
