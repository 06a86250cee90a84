"""Normalisation to float RGB and back, for every supported layout and dtype."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from daclip_plugin import imaging
from daclip_plugin.errors import InvalidImageError

SHAPES = [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4)]
DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64]


def _random_image(shape, dtype, rng):
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 60000), shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_is_exact(shape, dtype):
    image = _random_image(shape, dtype, np.random.default_rng(0))
    original = image.copy()
    rgb, info = imaging.normalize(image)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0 and rgb.max() <= 1
    back = imaging.denormalize(rgb, info)
    assert back.shape == image.shape and back.dtype == image.dtype
    np.testing.assert_array_equal(image, original)  # the input is never modified
    if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(back, image, atol=1e-6 * max(1, np.abs(image).max()))
    else:
        np.testing.assert_array_equal(back, image)


def test_alpha_passes_through_and_does_not_set_the_range():
    rgba = np.zeros((3, 3, 4), np.float32)
    rgba[..., :3] = 5.0  # out of [0, 1]: rescaled by its own range
    rgba[0, 0, :3] = 10.0
    rgba[..., 3] = 0.25
    rgb, info = imaging.normalize(rgba)
    assert rgb.max() == 1.0 and rgb.min() == 0.0
    restored = imaging.denormalize(np.ones_like(rgb) * 0.5, info)
    np.testing.assert_allclose(restored[..., :3], 7.5)
    np.testing.assert_array_equal(restored[..., 3], 0.25)


def test_grayscale_becomes_three_equal_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    rgb, _ = imaging.normalize(gray)
    for channel in range(3):
        np.testing.assert_allclose(rgb[..., channel], gray / 255, atol=1e-7)


def test_uint8_and_uint16_use_the_full_range():
    assert imaging.normalize(np.full((2, 2), 255, np.uint8))[0].max() == 1.0
    assert imaging.normalize(np.full((2, 2), 255, np.uint16))[0].max() == pytest.approx(255 / 65535)


def test_constant_image_survives():
    image = np.full((4, 4), 7.5, np.float32)
    rgb, info = imaging.normalize(image)
    np.testing.assert_array_equal(imaging.denormalize(rgb, info), image)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 5)), "empty"),
        (np.zeros((5, 5, 2)), "expected an image of shape"),
        (np.zeros((2, 5, 5, 3)), "expected an image of shape"),
        (np.zeros(5), "expected an image of shape"),
        (np.zeros((5, 5), complex), "unsupported image dtype"),
        (np.zeros((5, 5), bool), "unsupported image dtype"),
        (np.array([[0.0, np.nan], [np.inf, 1]]), "2 NaN or infinite"),
        ([["a", "b"]], "unsupported image dtype"),
    ],
)
def test_bad_input_gives_a_clear_error(bad, message):
    with pytest.raises(InvalidImageError, match=message):
        imaging.normalize(bad)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6), st.sampled_from([3, 4])),
              elements=st.floats(-1e6, 1e6)))
def test_any_finite_float_image_round_trips(image):
    rgb, info = imaging.normalize(image)
    assert np.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1
    back = imaging.denormalize(rgb, info)
    scale = max(1.0, np.abs(image).max())
    np.testing.assert_allclose(back, image, atol=1e-5 * scale)


@pytest.mark.parametrize("shape", [(9, 7), (9, 7, 1), (9, 7, 3), (9, 7, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_normalised_images_are_new_writable_float32_rgb(shape, dtype):
    image = np.ones(shape, dtype)
    rgb, _ = imaging.normalize(image)
    assert rgb.shape == (9, 7, 3) and rgb.dtype == np.float32 and rgb.flags.c_contiguous
    assert rgb.flags.writeable and not np.shares_memory(rgb, image)  # torch may work on it in place
