"""Synthetic degradation generators: contracts, determinism, physics checks, clean images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from daclip_plugin.data import degradations as deg
from daclip_plugin.data import sources
from daclip_plugin.errors import InvalidImageError, UnknownNameError

NAMES = deg.DEGRADATIONS


def _photo(h=48, w=64, seed=0):
    """A smooth, textured test image strictly inside (0.05, 0.95)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.5 + 0.3 * np.sin(6 * x + 2 * y), 0.5 + 0.3 * np.cos(5 * y), 0.4 + 0.3 * x * y], -1)
    return np.clip(base + 0.05 * rng.standard_normal((h, w, 3)), 0.05, 0.95).astype(np.float32)


IMAGE = _photo()


def test_registry_order_and_names():
    assert NAMES == (
        "motion-blurry", "hazy", "jpeg-compressed", "low-light", "noisy",
        "raindrop", "rainy", "shadowed", "snowy", "uncompleted",
    )  # fmt: skip
    assert tuple(deg.GENERATORS) == NAMES
    assert all(fn.__doc__ and "Ranges:" in fn.__doc__ for fn in deg.GENERATORS.values())


@pytest.mark.parametrize("name", NAMES)
def test_contract(name):
    image = IMAGE.copy()
    out = deg.degrade(image, name, 7)
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(image, IMAGE)  # input unchanged
    np.testing.assert_array_equal(out, deg.degrade(image, name, 7))  # deterministic
    np.testing.assert_array_equal(out, deg.GENERATORS[name](image, np.random.default_rng(7)))
    assert not np.array_equal(out, deg.degrade(image, name, 8))  # seed matters
    assert np.abs(out - image).mean() > 0.005  # really degrades


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(8, 8), (1, 1), (9, 40), (70, 13)])
def test_tiny_and_non_square(name, shape):
    image = _photo(*shape, seed=1)
    out = deg.degrade(image, name, 0)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_float64_input_keeps_dtype(name):
    out = deg.degrade(IMAGE.astype(np.float64), name, 0)
    assert out.dtype == np.float64


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(2, 40),
    w=st.integers(2, 40),
    level=st.floats(0.0, 1.0),
)
def test_any_image_any_seed(name, seed, h, w, level):
    image = np.clip(_photo(h, w, seed % 7) * 0 + level, 0, 1).astype(np.float32)  # flat, incl. 0 and 1
    out = deg.degrade(image, name, seed)
    assert out.shape == image.shape and out.min() >= 0.0 and out.max() <= 1.0


def test_fixing_one_parameter_keeps_the_other_draws():
    free = deg.degrade(IMAGE, "hazy", 3)
    rng = np.random.default_rng(3)
    beta = rng.uniform(1.0, 2.5)
    airlight = rng.uniform(0.75, 0.95)
    np.testing.assert_array_equal(free, deg.degrade(IMAGE, "hazy", 3, beta=beta, airlight=airlight))
    assert not np.array_equal(free, deg.degrade(IMAGE, "hazy", 3, beta=beta + 0.5))


# ---------------------------------------------------------------------------- errors


def test_unknown_name_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="valid names: motion-blurry, hazy"):
        deg.degrade(IMAGE, "foggy", 0)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8), np.float32),
        np.zeros((8, 8, 4), np.float32),
        np.zeros((0, 8, 3), np.float32),
        np.zeros((8, 8, 3), np.uint8),
        np.full((8, 8, 3), 1.5, np.float32),
        np.full((8, 8, 3), np.nan, np.float32),
        [[[0.0, 0.0, 0.0]]],
    ],
)
@pytest.mark.parametrize("name", ["noisy", "uncompleted"])
def test_bad_images(bad, name):
    with pytest.raises(InvalidImageError):
        deg.degrade(bad, name, 0)


@pytest.mark.parametrize(
    "name, params",
    [
        ("motion-blurry", {"length": 0.9}),
        ("hazy", {"beta": -1}),
        ("jpeg-compressed", {"quality": 0}),
        ("jpeg-compressed", {"quality": 10.5}),
        ("low-light", {"exposure": 2}),
        ("noisy", {"sigma": 300}),
        ("raindrop", {"count": 0}),
        ("rainy", {"angle": 100}),
        ("shadowed", {"attenuation": 1.5}),
        ("snowy", {"veil": -0.1}),
        ("uncompleted", {"fill": 2.0}),
    ],
)
def test_parameters_out_of_range(name, params):
    key = next(iter(params))
    with pytest.raises(ValueError, match=key):
        deg.degrade(IMAGE, name, 0, **params)


def test_unknown_parameter_and_bad_rng():
    with pytest.raises(TypeError):
        deg.degrade(IMAGE, "noisy", 0, strength=3)
    with pytest.raises(TypeError, match="Generator"):
        deg.noisy(IMAGE, 0)


# --------------------------------------------------------------------------- physics


def test_haze_brightens_toward_airlight_and_lowers_contrast():
    out = deg.degrade(IMAGE, "hazy", 0, airlight=0.9)
    assert abs(out.mean() - 0.9) < abs(IMAGE.mean() - 0.9)
    assert out.std() < 0.7 * IMAGE.std()
    # I = J t + A (1 - t): with J = A the image does not change (up to the bluish tint)
    grey = np.full((32, 32, 3), 0.9, np.float32)
    assert np.abs(deg.degrade(grey, "hazy", 0, airlight=0.9) - grey).max() < 0.06


@pytest.mark.parametrize("quality", [10, 25, 60])
def test_jpeg_equals_pillow_round_trip(quality):
    buffer = io.BytesIO()
    Image.fromarray(np.round(IMAGE * 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    expected = np.asarray(Image.open(buffer), dtype=np.float32) / 255
    np.testing.assert_array_equal(deg.degrade(IMAGE, "jpeg-compressed", 0, quality=quality), expected)


def test_low_light_darkens_with_relatively_stronger_noise_in_the_dark():
    assert deg.degrade(IMAGE, "low-light", 0).mean() < 0.5 * IMAGE.mean()
    patches = np.concatenate([np.full((64, 64, 3), 0.2), np.full((64, 64, 3), 0.8)], axis=1).astype(np.float32)
    out = deg.degrade(patches, "low-light", 0, exposure=0.05, photons=2000, read_noise=0.0)
    dark, bright = out[:, :64], out[:, 64:]
    assert dark.std() / dark.mean() > 1.5 * bright.std() / bright.mean()
    # without noise: exactly the exposure-scaled radiance, gamma-encoded again
    exact = deg.degrade(patches, "low-light", 0, exposure=0.05, photons=1e7, read_noise=0.0)
    np.testing.assert_allclose(exact, (patches**2.2 * 0.05) ** (1 / 2.2), atol=3e-3)


@pytest.mark.parametrize("sigma", [15, 25, 50])
@pytest.mark.parametrize("k", [0.0, 0.5, 1.0])
def test_noise_std_matches_sigma_on_mid_grey(sigma, k):
    grey = np.full((128, 128, 3), 0.5, np.float32)
    residual = deg.degrade(grey, "noisy", 0, sigma=sigma, signal_dependence=k) - grey
    assert abs(residual.std() - sigma / 255) < 0.03 * sigma / 255
    assert abs(residual.mean()) < 0.002


def test_noise_signal_dependence():
    dark = np.full((64, 64, 3), 0.1, np.float32)
    plain = (deg.degrade(dark, "noisy", 0, sigma=20, signal_dependence=0.0) - dark).std()
    poisson = (deg.degrade(dark, "noisy", 0, sigma=20, signal_dependence=1.0) - dark).std()
    assert poisson < 0.7 * plain


@pytest.mark.parametrize("fill", [1.0, 0.0, 0.5])
def test_uncompleted_sets_a_mask_to_the_fill_value(fill):
    out = deg.degrade(IMAGE, "uncompleted", 4, fill=fill)
    changed = np.any(out != IMAGE, axis=-1)
    assert 0.02 < changed.mean() < 0.8
    assert np.all(out[changed] == fill)
    np.testing.assert_array_equal(out[~changed], IMAGE[~changed])


def test_shadow_only_darkens_a_partial_region():
    out = deg.degrade(IMAGE, "shadowed", 2, softness=0.001)
    ratio = out.mean(-1) / IMAGE.mean(-1)
    assert ratio.max() <= 1.0 + 1e-3
    assert 0.1 < (ratio < 0.8).mean() < 0.8


@pytest.mark.parametrize("name", ["rainy", "snowy"])
def test_weather_particles_only_brighten(name):
    out = deg.degrade(IMAGE, name, 0, **({"veil": 0.0} if name == "snowy" else {}))
    assert np.all(out >= IMAGE - 1e-6)


def test_motion_blur_preserves_mean_and_smooths():
    out = deg.degrade(IMAGE, "motion-blurry", 0, length=0.1, angle=0.0, shake=0.0)
    assert abs(out.mean() - IMAGE.mean()) < 0.01
    assert np.abs(np.diff(out, axis=1)).mean() < 0.5 * np.abs(np.diff(IMAGE, axis=1)).mean()
    # a horizontal kernel leaves a horizontally constant image unchanged
    stripes = np.repeat(IMAGE[:, :1], IMAGE.shape[1], axis=1)
    horizontal = deg.degrade(stripes, "motion-blurry", 0, length=0.1, angle=0.0, shake=0.0)
    np.testing.assert_allclose(horizontal, stripes, atol=1e-5)


def test_size_relative_parameters_look_alike_at_two_scales():
    small, large = _photo(32, 32), _photo(128, 128)
    for name in ("rainy", "snowy", "uncompleted", "raindrop"):
        a = np.abs(deg.degrade(small, name, 0) - small).mean()
        b = np.abs(deg.degrade(large, name, 0) - large).mean()
        assert 0.25 < a / b < 4, name


# ---------------------------------------------------------------------- clean images


def test_split_is_disjoint_and_images_are_rgb_float():
    assert not set(sources.TRAIN_IMAGES) & set(sources.EVAL_IMAGES)
    evaluation = sources.clean_images("eval")
    assert tuple(evaluation) == sources.EVAL_IMAGES
    for image in evaluation.values():
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.05
    train = sources.clean_images("train")
    assert tuple(train) == sources.TRAIN_IMAGES
    train_pixels = {image.tobytes() for image in train.values()}
    assert not any(image.tobytes() in train_pixels for image in evaluation.values())
    with pytest.raises(ValueError, match="train"):
        sources.clean_images("test")


def test_random_crops():
    images = {"a": _photo(40, 60), "b": _photo(10, 20, seed=2)}
    crops = sources.random_crops(images, 16, 6, np.random.default_rng(0))
    assert crops.shape == (6, 16, 16, 3) and crops.dtype == np.float32
    assert 0.0 <= crops.min() and crops.max() <= 1.0
    np.testing.assert_array_equal(crops, sources.random_crops(images, 16, 6, np.random.default_rng(0)))
    with pytest.raises(ValueError):
        sources.random_crops([], 16, 1, np.random.default_rng(0))


def test_dead_leaves_images_are_seeded_varied_and_in_range():
    from daclip_plugin.data.sources import dead_leaves

    first = dead_leaves(48, np.random.default_rng(3))
    assert first.shape == (48, 48, 3) and first.dtype == np.float32
    assert 0 <= first.min() and first.max() <= 1
    np.testing.assert_array_equal(first, dead_leaves(48, np.random.default_rng(3)))
    other = dead_leaves(48, np.random.default_rng(4))
    assert np.abs(first - other).mean() > 0.05
    # many distinct regions, not a flat background
    assert len(np.unique((first * 32).astype(int).reshape(-1, 3), axis=0)) > 20
