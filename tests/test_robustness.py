"""Generated inputs of every kind through restore and classify (the embedded model, offline).

Each input gives a correct result (the input's shape and dtype, finite values, the input
unchanged) or a :class:`~daclip_plugin.DaclipError`; nothing else. 300 inputs in all.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import daclip_plugin
from daclip_plugin import DaclipError

DTYPES = [np.dtype(name) for name in ("u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8")]
DTYPES += [dtype.newbyteorder(">") for dtype in DTYPES if dtype.itemsize > 1]
SHAPES = st.tuples(st.integers(1, 24), st.integers(1, 24), st.sampled_from([None, 1, 3, 4]))


def _elements(dtype: np.dtype):
    if dtype.kind == "f":
        finite = np.finfo(dtype)
        return st.one_of(
            st.floats(float(finite.min), float(finite.max), width=dtype.itemsize * 8, allow_nan=False),
            st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0]),
        )
    limits = np.iinfo(dtype)
    return st.integers(int(limits.min), int(limits.max))


@st.composite
def images(draw):
    dtype = draw(st.sampled_from(DTYPES))
    height, width, channels = draw(SHAPES)
    shape = (height, width) if channels is None else (height, width, channels)
    kind = draw(st.sampled_from(["random", "constant", "extremes"]))
    if kind == "constant":
        value = draw(_elements(dtype))
        data = np.full(shape, value, dtype=dtype)
    elif kind == "extremes" and dtype.kind in "ui":
        limits = np.iinfo(dtype)
        data = draw(hnp.arrays(dtype, shape, elements=st.sampled_from([int(limits.min), int(limits.max)])))
    else:
        data = draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))
    layout = draw(st.sampled_from(["c", "fortran", "strided"]))
    if layout == "fortran":
        data = np.asfortranarray(data)
    elif layout == "strided":
        data = np.repeat(data, 2, axis=1)[:, ::2]
    return data


def _check_restored(image: np.ndarray, before: np.ndarray, restored: np.ndarray) -> None:
    np.testing.assert_array_equal(image, before)  # the input is never modified
    assert restored.shape == image.shape and restored.dtype == image.dtype
    if restored.dtype.kind == "f":
        assert np.isfinite(restored).all()


OFFLINE = {"model": "tiny", "device": "cpu"}


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(image=images())
def test_restore_gives_a_faithful_result_or_a_clear_error(image):
    before = image.copy()
    try:
        restored = daclip_plugin.restore(image, **OFFLINE)
    except DaclipError:
        np.testing.assert_array_equal(image, before)
        return
    _check_restored(image, before, restored)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(image=images())
def test_classify_gives_probabilities_or_a_clear_error(image):
    before = image.copy()
    try:
        scores = daclip_plugin.classify(image, **OFFLINE)
    except DaclipError:
        np.testing.assert_array_equal(image, before)
        return
    np.testing.assert_array_equal(image, before)
    assert len(scores) == 10 and all(0.0 <= value <= 1.0 for value in scores.values())
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    "image, expected",
    [
        (np.full((16, 16), np.iinfo(np.int64).max, np.int64), np.iinfo(np.int64).max),
        (np.full((16, 16), np.iinfo(np.uint64).max, np.uint64), np.iinfo(np.uint64).max),
        (np.full((16, 16), 1e16), 1e16),
        (np.full((16, 16), 3e38, np.float32), np.float32(3e38)),
    ],
)
def test_large_constant_images_stay_what_they_are(image, expected):
    """No wrap-around and no "NaN or infinite" for huge values: the result stays near the value."""
    restored = daclip_plugin.restore(image, **OFFLINE)
    assert restored.dtype == image.dtype and np.isfinite(restored.astype(np.float64)).all()
    relative = np.abs(restored.astype(np.float64) - float(expected)) / abs(float(expected))
    assert relative.max() <= 2.0**-19  # a constant image keeps a span of 2**-20 of its value


def test_big_endian_rgba_comes_back_big_endian():
    image = np.random.default_rng(0).integers(0, 65536, (16, 16, 4)).astype(">u2")
    restored = daclip_plugin.restore(image, **OFFLINE)
    assert restored.dtype == np.dtype(">u2") and restored.dtype.byteorder == ">"
    np.testing.assert_array_equal(restored[..., 3], image[..., 3])  # alpha passes through


@pytest.mark.parametrize(
    "options, message",
    [
        ({"device": "tpu"}, "unknown device"),
        ({"device": "meta"}, "unknown device"),
        ({"seed": "abc"}, "option 'seed'"),
        ({"seed": 2**70}, "option 'seed'"),
        ({"seed": 1.5}, "option 'seed'"),
        ({"tile_size": "abc"}, "option 'tile_size'"),
        ({"daclip_path": 123}, "option 'daclip_path'"),
        ({"model": ["tiny"]}, "option 'model'"),
    ],
)
def test_bad_option_values_name_the_option(options, message):
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(DaclipError, match=message):
        daclip_plugin.restore(image, restorer="daclip", **{**OFFLINE, **options})


def test_bad_names_and_prompts_are_clear_errors():
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(DaclipError, match="by its name"):
        daclip_plugin.restore(image, restorer=["daclip"])
    for prompts in ("noisy", [], ["noisy", "noisy"]):
        with pytest.raises(DaclipError, match="option 'prompts'"):
            daclip_plugin.classify(image, prompts=prompts, **OFFLINE)
