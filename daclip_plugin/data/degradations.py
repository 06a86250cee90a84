"""Seeded synthetic generators for the 10 DA-CLIP degradation types, and clean images.

Every generator is a pure function ``fn(image, rng, **params) -> degraded`` on an RGB
float ``(H, W, 3)`` array in ``[0, 1]``; the result has the same shape and dtype and
is again in ``[0, 1]``; the input is never modified. ``rng`` is a
:class:`numpy.random.Generator`. A parameter left out is drawn from its documented
range; every parameter is drawn in a fixed order whether given or not, so fixing one
parameter leaves the others' draws unchanged. Same seed and parameters, same output.
Given parameters are checked against wider accepted bounds (``ValueError``).

Lengths are fractions of the image scale ``s = sqrt(H * W)``, so a degradation looks
the same at any size. Only NumPy and Pillow are needed.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from ..errors import InvalidImageError, UnknownNameError
from ..nn.daclip import DEGRADATIONS

_GAMMA = 2.2  # sRGB approximated as a pure power law for linear-light steps


# ----------------------------------------------------------------------------- helpers


def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"expected a NumPy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidImageError(f"expected a non-empty RGB image of shape (H, W, 3), got {image.shape}")
    if image.dtype.kind != "f":
        raise InvalidImageError(
            f"expected a float image in [0, 1], got dtype {image.dtype}; "
            "convert with daclip_plugin.imaging.normalize first"
        )
    low, high = image.min(), image.max()
    if not (low >= 0.0 and high <= 1.0):  # also false for NaN
        raise InvalidImageError(f"image values must be finite and within [0, 1], got [{low}, {high}]")
    return image


def check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _param(name, value, rng, low, high, bounds, integer=False):
    """Draw from ``[low, high]``; return ``value`` instead if given, after checking ``bounds``."""
    drawn = int(rng.integers(low, high + 1)) if integer else float(rng.uniform(low, high))
    if value is None:
        return drawn
    lo, hi = bounds
    if integer and (isinstance(value, bool) or not float(value).is_integer()):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not (lo <= value <= hi):
        raise ValueError(f"{name}={value!r} is outside the accepted range [{lo}, {hi}]")
    return int(value) if integer else float(value)


def _scale(shape) -> float:
    return float(np.sqrt(shape[0] * shape[1]))


def finish(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    return np.clip(result, 0.0, 1.0).astype(like.dtype, copy=False)


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (quick FFT sizes)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _pad(x: np.ndarray, ph: int, pw: int, boundary: str) -> tuple[np.ndarray, tuple[int, int]]:
    if boundary == "wrap":
        return x, (0, 0)
    width = ((ph, ph), (pw, pw)) + ((0, 0),) * (x.ndim - 2)
    return np.pad(x, width, mode="symmetric"), (ph, pw)


def _filter(x: np.ndarray, transfer: Callable[[int, int], np.ndarray], ph: int, pw: int, boundary: str) -> np.ndarray:
    """Apply a frequency-domain filter to the first two axes of ``x``."""
    padded, (oh, ow) = _pad(np.asarray(x, dtype=np.float32), ph, pw, boundary)
    planes = np.moveaxis(padded, -1, 0) if x.ndim == 3 else padded  # FFTs are fastest on the last axes
    h, w = padded.shape[:2]
    fh, fw = (h, w) if boundary == "wrap" else (_fast_len(h), _fast_len(w))
    spectrum = np.fft.rfft2(planes, s=(fh, fw)) * transfer(fh, fw).astype(np.complex64)
    out = np.fft.irfft2(spectrum, s=(fh, fw))[..., oh : oh + x.shape[0], ow : ow + x.shape[1]]
    return np.ascontiguousarray(np.moveaxis(out, 0, -1) if x.ndim == 3 else out, dtype=np.float32)


def _convolve(x: np.ndarray, kernel: np.ndarray, boundary: str = "symmetric") -> np.ndarray:
    """Convolve the first two axes of ``x`` with a centred 2-D ``kernel`` (odd sizes)."""
    kh, kw = kernel.shape

    def transfer(fh, fw):
        grid = np.zeros((fh, fw))
        rows = (np.arange(kh) - kh // 2) % fh
        cols = (np.arange(kw) - kw // 2) % fw
        np.add.at(grid, (rows[:, None], cols[None, :]), kernel)
        return np.fft.rfft2(grid)

    return _filter(x, transfer, kh // 2, kw // 2, boundary)


def gaussian(x: np.ndarray, sigma: float, boundary: str = "symmetric") -> np.ndarray:
    """Gaussian blur of the first two axes with standard deviation ``sigma`` pixels."""
    if sigma <= 0:
        return x.astype(np.float32)
    pad = int(np.ceil(3 * sigma))

    def transfer(fh, fw):
        fy = np.fft.fftfreq(fh)[:, None]
        fx = np.fft.rfftfreq(fw)[None, :]
        return np.exp(-2.0 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))

    return _filter(x, transfer, pad, pad, boundary)


def _splat(points_y: np.ndarray, points_x: np.ndarray, size: int) -> np.ndarray:
    """Accumulate sub-pixel points (relative to the kernel centre) into a square kernel."""
    kernel = np.zeros((size, size))
    y = points_y + size // 2
    x = points_x + size // 2
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (1, 0, fy * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 1, fy * fx)):
        np.add.at(kernel, (np.clip(y0 + dy, 0, size - 1), np.clip(x0 + dx, 0, size - 1)), weight)
    return kernel


def _line_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised straight motion kernel ``length`` pixels long at ``angle_deg``."""
    size = 2 * int(np.ceil(length / 2)) + 3
    t = np.linspace(-length / 2, length / 2, max(2, int(np.ceil(length * 4))))
    a = np.deg2rad(angle_deg)
    kernel = _splat(-t * np.sin(a), t * np.cos(a), size)
    return kernel / kernel.sum()


def _sample(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` at float coordinates (clamped to the border)."""
    h, w = image.shape[:2]
    y = np.clip(y, 0, h - 1)
    x = np.clip(x, 0, w - 1)
    y0 = np.minimum(np.floor(y).astype(int), max(h - 2, 0))
    x0 = np.minimum(np.floor(x).astype(int), max(w - 2, 0))
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _particles(shape, rng, expected: float, kernel: np.ndarray, brightness: tuple[float, float]) -> np.ndarray:
    """About ``expected`` random impulses convolved circularly with ``kernel``."""
    h, w = shape
    count = rng.poisson(expected)
    field = np.zeros((h, w))
    np.add.at(field, (rng.integers(0, h, count), rng.integers(0, w, count)), rng.uniform(*brightness, count))
    return _convolve(field, kernel, boundary="wrap")


def _smooth_noise(shape, rng, cells: int) -> np.ndarray:
    """Smooth random field in [0, 1]: a ``cells`` x ``cells`` random grid upsampled bicubically."""
    grid = Image.fromarray(rng.random((cells, cells), dtype=np.float32), "F")
    field = np.asarray(grid.resize((shape[1], shape[0]), Image.Resampling.BICUBIC))
    return np.clip(field, 0.0, 1.0)


# -------------------------------------------------------------------------- generators


def motion_blurry(image, rng, *, length=None, angle=None, shake=None):
    """Camera-motion blur: convolution with a random motion kernel.

    The kernel is a straight path ``length * s`` pixels long at ``angle`` degrees, bent
    by a smooth random shake trajectory of relative amplitude ``shake``.

    Ranges: ``length`` 0.04-0.1 (accepted 0-0.5), ``angle`` 0-180 (any),
    ``shake`` 0-0.3 (accepted 0-1).
    """
    image, rng = _check_image(image), check_rng(rng)
    length = _param("length", length, rng, 0.04, 0.1, (0.0, 0.5))
    angle = _param("angle", angle, rng, 0.0, 180.0, (-np.inf, np.inf))
    shake = _param("shake", shake, rng, 0.0, 0.3, (0.0, 1.0))
    wobble = np.cumsum(rng.standard_normal(64))
    wobble = np.interp(np.linspace(0, 63, 256), np.arange(64), wobble - np.linspace(wobble[0], wobble[-1], 64))
    wobble /= max(np.abs(wobble).max(), 1e-12)

    pixels = max(2.0, length * _scale(image.shape))
    t = np.linspace(-pixels / 2, pixels / 2, 256)
    off = shake * pixels / 2 * wobble
    a = np.deg2rad(angle)
    ys, xs = -t * np.sin(a) + off * np.cos(a), t * np.cos(a) + off * np.sin(a)
    size = 2 * int(np.ceil(max(np.abs(ys).max(), np.abs(xs).max()))) + 3
    kernel = _splat(ys, xs, size)
    return finish(_convolve(image, kernel / kernel.sum()), image)


def hazy(image, rng, *, beta=None, airlight=None):
    """Haze by the atmospheric scattering model ``I = J t + A (1 - t)``, ``t = exp(-beta d)``.

    The depth ``d`` in [0.3, 1] is synthetic: a ramp rising towards a random horizon
    direction plus low-frequency noise. ``A`` is a slightly bluish grey.

    Ranges: ``beta`` 1.0-2.5 (accepted 0-10), ``airlight`` 0.75-0.95 (accepted 0-1).
    """
    image, rng = _check_image(image), check_rng(rng)
    beta = _param("beta", beta, rng, 1.0, 2.5, (0.0, 10.0))
    airlight = _param("airlight", airlight, rng, 0.75, 0.95, (0.0, 1.0))
    tint = rng.uniform(-0.03, 0.03, 3) + np.array([-0.02, 0.0, 0.02])
    direction = rng.uniform(-0.4, 0.4)  # ramp tilt, radians from vertical
    h, w = image.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    ramp = -(y / max(h - 1, 1) - 0.5) * np.cos(direction) + (x / max(w - 1, 1) - 0.5) * np.sin(direction)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-12)
    depth = 0.3 + 0.7 * (0.7 * ramp + 0.3 * _smooth_noise((h, w), rng, 6))
    t = np.exp(-beta * depth)[..., None]
    a = np.clip(airlight + tint, 0.0, 1.0)
    return finish(image * t + a * (1.0 - t), image)


def jpeg_compressed(image, rng, *, quality=None):
    """JPEG artefacts: a real JPEG encode and decode with Pillow at ``quality``.

    Ranges: ``quality`` 10-25 (integer, accepted 1-95).
    """
    image, rng = _check_image(image), check_rng(rng)
    quality = _param("quality", quality, rng, 10, 25, (1, 95), integer=True)
    pixels = np.round(image * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return (decoded / np.float32(255.0)).astype(image.dtype)


def low_light(image, rng, *, exposure=None, photons=None, read_noise=None):
    """Under-exposure: linear radiance scaled by ``exposure``, then sensor noise.

    In linear light (``x ** 2.2``) the signal is scaled by ``exposure`` and recorded with
    Poisson shot noise (``photons`` photo-electrons at full scale) plus Gaussian read
    noise, then gamma-encoded again, so noise is strongest in relative terms where dark.

    Ranges: ``exposure`` 0.01-0.05 (accepted 0-1), ``photons`` 1000-10000 (accepted
    1-1e7), ``read_noise`` 0.0005-0.003 (accepted 0-0.1, linear units).
    """
    image, rng = _check_image(image), check_rng(rng)
    exposure = _param("exposure", exposure, rng, 0.01, 0.05, (0.0, 1.0))
    photons = _param("photons", photons, rng, 1000.0, 10000.0, (1.0, 1e7))
    read_noise = _param("read_noise", read_noise, rng, 0.0005, 0.003, (0.0, 0.1))
    electrons = rng.poisson(image ** np.float32(_GAMMA) * np.float32(exposure * photons))
    recorded = electrons.astype(np.float32) / np.float32(photons)
    recorded += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(read_noise)
    return finish(np.clip(recorded, 0.0, 1.0) ** np.float32(1.0 / _GAMMA), image)


def noisy(image, rng, *, sigma=None, signal_dependence=None):
    """Additive Gaussian noise, independent per channel, optionally signal dependent.

    The variance is ``(sigma / 255)**2 * ((1 - k) + k * 2 x)``: ``k = 0`` is plain
    AWGN, ``k = 1`` is Poisson-like; mid-grey always gets exactly ``sigma``.

    Ranges: ``sigma`` 15-50 in 0-255 units, as DA-CLIP's data (accepted 0-255),
    ``signal_dependence`` 0-0.5 (accepted 0-1).
    """
    image, rng = _check_image(image), check_rng(rng)
    sigma = _param("sigma", sigma, rng, 15.0, 50.0, (0.0, 255.0))
    k = _param("signal_dependence", signal_dependence, rng, 0.0, 0.5, (0.0, 1.0))
    std = sigma / 255.0 * np.sqrt((1.0 - k) + k * 2.0 * image)
    return finish(image + std * rng.standard_normal(image.shape, dtype=np.float32), image)


def raindrop(image, rng, *, count=None, radius=None):
    """Water drops on the lens, each a small refracting lens.

    Each elliptical drop (largest radius ``radius * s``) shows an inverted, minified and
    strongly defocused view of the scene around it, with a dark outline, a bright rim on
    its lower edge (where it focuses light) and a specular highlight near its top.

    Ranges: ``count`` 15-40 (integer, accepted 1-500), ``radius`` 0.06-0.12 (accepted
    0-0.3).
    """
    image, rng = _check_image(image), check_rng(rng)
    count = _param("count", count, rng, 15, 40, (1, 500), integer=True)
    radius = _param("radius", radius, rng, 0.06, 0.12, (0.0, 0.3))
    h, w = image.shape[:2]
    s = _scale(image.shape)
    cy, cx = rng.uniform(0, h, count), rng.uniform(0, w, count)
    ry = np.maximum(radius * s * rng.uniform(0.25, 1.0, count), 1.0)
    rx = ry * rng.uniform(0.75, 1.25, count)
    zoom = rng.uniform(0.8, 1.5, count)

    height, src_y, src_x = np.zeros((3, h, w))  # drop profile and where each drop pixel looks
    for i in np.argsort(ry):  # large drops last, on top
        y0, y1 = max(int(cy[i] - ry[i]) - 1, 0), min(int(cy[i] + ry[i]) + 2, h)
        x0, x1 = max(int(cx[i] - rx[i]) - 1, 0), min(int(cx[i] + rx[i]) + 2, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        drop = np.sqrt(np.clip(1.0 - ((yy - cy[i]) / ry[i]) ** 2 - ((xx - cx[i]) / rx[i]) ** 2, 0.0, None))
        inside = drop > 0
        region = (slice(y0, y1), slice(x0, x1))
        height[region] = np.where(inside, drop, height[region])
        src_y[region] = np.where(inside, cy[i] - (yy - cy[i]) * zoom[i], src_y[region])
        src_x[region] = np.where(inside, cx[i] - (xx - cx[i]) * zoom[i], src_x[region])

    drops = np.nonzero(height)
    seen = _sample(gaussian(image, 0.02 * s), src_y[drops], src_x[drops]) * 0.9 + 0.08
    padded = np.pad(height, ((1, 1), (0, 0)), mode="edge")
    slope = (padded[2:] - padded[:-2])[drops] * (0.5 * radius * s)  # > 0 on the upper half of a drop
    edge = np.exp(-((height[drops] / 0.2) ** 2))
    rim = np.clip(-slope, 0.0, 1.0) * edge
    glint = np.exp(-(((height[drops] - 0.9) / 0.04) ** 2)) * np.clip(slope, 0.0, 1.0)
    shading = 1.0 - 0.3 * edge + 0.35 * rim + 0.3 * glint
    alpha = np.clip(height[drops] * 5.0, 0.0, 1.0)[..., None]
    out = image.copy()
    out[drops] = image[drops] * (1.0 - alpha) + seen * shading[..., None] * alpha
    return finish(out, image)


def rainy(image, rng, *, count=None, length=None, angle=None, intensity=None):
    """Rain streaks: sparse impulses motion-blurred into oriented lines, added to the image.

    About ``count`` streaks, ``length * s`` pixels long, ``angle`` degrees from vertical,
    about ``s / 500`` pixels wide, are added (clipped) with peak brightness ``intensity``.

    Ranges: ``count`` 150-500 (integer, accepted 0-10000), ``length``
    0.06-0.15 (accepted 0-0.5), ``angle`` -25-25 (accepted -90-90), ``intensity``
    0.3-0.6 (accepted 0-1).
    """
    image, rng = _check_image(image), check_rng(rng)
    count = _param("count", count, rng, 150, 500, (0, 10000), integer=True)
    length = _param("length", length, rng, 0.06, 0.15, (0.0, 0.5))
    angle = _param("angle", angle, rng, -25.0, 25.0, (-90.0, 90.0))
    intensity = _param("intensity", intensity, rng, 0.3, 0.6, (0.0, 1.0))
    s = _scale(image.shape)
    pixels = max(2.0, length * s)
    kernel = _line_kernel(pixels, 90.0 + angle)
    kernel /= kernel.max()
    streaks = _particles(image.shape[:2], rng, count * length * s / pixels, kernel, (0.4, 1.0))
    width = s / 500.0
    if width > 0.5:
        streaks = gaussian(streaks, width, boundary="wrap") * (2.5 * width)
    streaks = np.clip(streaks, 0.0, 1.0) * intensity
    return finish(image + streaks[..., None], image)


def shadowed(image, rng, *, attenuation=None, size=None, softness=None):
    """A cast shadow: a random polygon with soft edges multiplying the image.

    Inside the polygon (radius about ``size * s``, covering 15-65% of the image) only
    the bluish sky light remains, a fraction ``attenuation`` of the light; the penumbra
    is ``softness * s`` wide.

    Ranges: ``attenuation`` 0.2-0.45 (accepted 0-1), ``size`` 0.35-0.7 (accepted
    0-2), ``softness`` 0.003-0.02 (accepted 0-0.2).
    """
    image, rng = _check_image(image), check_rng(rng)
    attenuation = _param("attenuation", attenuation, rng, 0.2, 0.45, (0.0, 1.0))
    size = _param("size", size, rng, 0.35, 0.7, (0.0, 2.0))
    softness = _param("softness", softness, rng, 0.003, 0.02, (0.0, 0.2))
    h, w = image.shape[:2]
    s = _scale(image.shape)
    supersample = max(1, int(np.ceil(256 / max(h, w))))  # smooth edges on small images
    for _ in range(20):  # redraw until the shadow covers a visible, partial area
        n = int(rng.integers(4, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = size * s * rng.uniform(0.5, 1.0, n) * supersample
        cy, cx = rng.uniform(0, h * supersample), rng.uniform(0, w * supersample)
        canvas = Image.new("L", (w * supersample, h * supersample), 0)
        ImageDraw.Draw(canvas).polygon(list(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles))), fill=255)
        mask = np.asarray(canvas.resize((w, h), Image.Resampling.BOX), dtype=np.float32) / 255.0
        if 0.15 <= mask.mean() <= 0.65:
            break
    mask = gaussian(mask, softness * s)
    factor = attenuation * np.array([0.92, 0.97, 1.1])
    return finish(image * (1.0 - mask[..., None] * (1.0 - factor)), image)


def snowy(image, rng, *, density=None, angle=None, veil=None):
    """Falling snow: three layers of flakes blended with a screen blend.

    Small, medium and large flakes (radii about 0.002, 0.005 and 0.011 ``s``; larger
    ones defocused) are motion-blurred along the fall direction ``angle`` (degrees from
    vertical); ``density`` multiplies the base counts (260, 50 and 10 flakes); a white
    ``veil`` adds the milky look of snowfall.

    Ranges: ``density`` 0.6-1.6 (accepted 0-10), ``angle`` -30-30 (accepted -90-90),
    ``veil`` 0-0.15 (accepted 0-1).
    """
    image, rng = _check_image(image), check_rng(rng)
    density = _param("density", density, rng, 0.6, 1.6, (0.0, 10.0))
    angle = _param("angle", angle, rng, -30.0, 30.0, (-90.0, 90.0))
    veil = _param("veil", veil, rng, 0.0, 0.15, (0.0, 1.0))
    s = _scale(image.shape)
    a = np.deg2rad(angle)
    snow = np.zeros(image.shape[:2], dtype=np.float32)
    for radius, flakes, stretch in ((0.002, 260, 2.0), (0.005, 50, 1.5), (0.011, 10, 1.2)):
        r = max(radius * s, 0.5)
        half = int(np.ceil(3 * r * stretch)) + 1
        y, x = np.mgrid[-half : half + 1, -half : half + 1]
        along = y * np.cos(a) + x * np.sin(a)
        across = -y * np.sin(a) + x * np.cos(a)
        kernel = np.exp(-0.5 * ((along / (r * stretch)) ** 2 + (across / r) ** 2))
        coverage = min(1.0, radius * s / r) ** 2  # fewer flakes where they cannot shrink further
        layer = _particles(image.shape[:2], rng, density * flakes * coverage, kernel, (0.6, 1.0))
        snow = np.maximum(snow, np.clip(layer * 1.6, 0.0, 1.0))
    out = image * (1.0 - veil) + veil * 0.95
    return finish(1.0 - (1.0 - out) * (1.0 - snow[..., None]), image)


def uncompleted(image, rng, *, strokes=None, width=None, boxes=None, fill=1.0):
    """Missing regions for inpainting: free-form brush strokes and boxes set to ``fill``.

    Strokes are random polylines ``width * s`` thick with round joints; ``fill``
    defaults to white, as in DA-CLIP's inpainting data (not drawn at random).

    Ranges: ``strokes`` 2-5 (integer, accepted 0-50), ``width`` 0.03-0.08 (accepted
    0-0.5), ``boxes`` 0-2 (integer, accepted 0-20), ``fill`` any value in [0, 1].
    """
    image, rng = _check_image(image), check_rng(rng)
    strokes = _param("strokes", strokes, rng, 2, 5, (0, 50), integer=True)
    width = _param("width", width, rng, 0.03, 0.08, (0.0, 0.5))
    boxes = _param("boxes", boxes, rng, 0, 2, (0, 20), integer=True)
    if not 0.0 <= fill <= 1.0:
        raise ValueError(f"fill={fill!r} is outside the accepted range [0, 1]")
    h, w = image.shape[:2]
    s = _scale(image.shape)
    thick = max(1, int(round(width * s)))
    canvas = Image.new("1", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(strokes):
        n = int(rng.integers(3, 8))
        steps = rng.uniform(0.08, 0.25, n) * s
        turns = np.cumsum(rng.uniform(-1.2, 1.2, n)) + rng.uniform(0, 2 * np.pi)
        start = rng.uniform((0, 0), (w, h))
        points = start + np.cumsum(np.stack([steps * np.cos(turns), steps * np.sin(turns)], 1), 0)
        points = [tuple(p) for p in np.vstack([start, points])]
        draw.line(points, fill=1, width=thick, joint="curve")
        for px, py in (points[0], points[-1]):
            draw.ellipse((px - thick / 2, py - thick / 2, px + thick / 2, py + thick / 2), fill=1)
    for _ in range(boxes):
        bw, bh = rng.uniform(0.1, 0.3, 2) * np.array([w, h])
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        draw.rectangle((x0, y0, x0 + bw, y0 + bh), fill=1)
    mask = np.asarray(canvas, dtype=bool)[..., None]
    return np.where(mask, np.asarray(fill, image.dtype), image)


# ----------------------------------------------------------------------------- registry

GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "motion-blurry": motion_blurry,
    "hazy": hazy,
    "jpeg-compressed": jpeg_compressed,
    "low-light": low_light,
    "noisy": noisy,
    "raindrop": raindrop,
    "rainy": rainy,
    "shadowed": shadowed,
    "snowy": snowy,
    "uncompleted": uncompleted,
}
"""The generators by degradation name. The released models' prompts are
:data:`~daclip_plugin.nn.daclip.DEGRADATIONS`: a generator added here does not change them."""


def degrade(image, name: str, seed_or_rng: int | np.random.Generator | None, **params) -> np.ndarray:
    """Apply degradation ``name`` to ``image``, seeded by an int (or drawing from a Generator).

    ``params`` are the generator's keyword parameters; unknown names raise ``TypeError``.
    """
    if name not in GENERATORS:
        raise UnknownNameError(f"unknown degradation {name!r}; valid names: {', '.join(DEGRADATIONS)}")
    return GENERATORS[name](image, np.random.default_rng(seed_or_rng), **params)
