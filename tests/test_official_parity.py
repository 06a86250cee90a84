"""Parity with the official DA-CLIP implementation, on a reference fixture it computed.

The fixture directory (``DACLIP_PARITY_FIXTURES``, default ``tests/data/official-a``) holds
``meta.json``, an official-layout DA-CLIP file (``*.pt``), an official-layout UNet file
(``*.pth``) and ``reference.npz``. Every model is built from ``meta.json`` alone, so the same
tests run on any fixture of this format. Tolerances are those stated in the fixture's README.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from daclip_plugin.engine.devices import unet_precision
from daclip_plugin.engine.sde import IRSDESchedule, sample_posterior, sample_reverse_sde
from daclip_plugin.nn.daclip import DegradationClassifier, preprocess, tokenize
from daclip_plugin.weights import checkpoints

FIXTURES = Path(os.environ.get("DACLIP_PARITY_FIXTURES", Path(__file__).parent / "data" / "official-a"))
DEVICE = torch.device(os.environ.get("DACLIP_PARITY_DEVICE", "cpu"))

FEATURE_ATOL = 1e-4
UNET_RTOL = 1e-4  # of max |unet_out|
SAMPLER_ATOL = 1e-5
PREPROCESS_ATOL = 1e-5


def _only(pattern: str) -> Path:
    (path,) = sorted(FIXTURES.glob(pattern))
    return path


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((FIXTURES / "meta.json").read_text())


@pytest.fixture(scope="module")
def ref() -> dict:
    with np.load(FIXTURES / "reference.npz") as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module", autouse=True)
def exact_float32():
    with unet_precision(DEVICE, "fp32"):
        yield


@pytest.fixture(scope="module")
def daclip(meta):
    return checkpoints.load_daclip(_only("*.pt"), clip_cfg=meta["clip_cfg"], device=DEVICE).eval()


@pytest.fixture(scope="module")
def unet(meta):
    return checkpoints.load_unet(_only("*.pth"), unet_cfg=meta["unet_cfg"], device=DEVICE).eval()


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).to(DEVICE)


@pytest.fixture(scope="module")
def schedule(meta):
    return IRSDESchedule.from_config(meta["sde"])


def _max_diff(ours, theirs) -> float:
    ours = ours.detach().cpu().numpy() if torch.is_tensor(ours) else np.asarray(ours)
    assert ours.shape == theirs.shape
    return float(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)).max())


def test_preprocessing(meta, ref):
    clip_input = preprocess(ref["raw_uint8"], meta["clip_resolution"])
    assert _max_diff(clip_input, ref["clip_input"]) < PREPROCESS_ATOL


def test_tokens(meta, ref):
    np.testing.assert_array_equal(tokenize(meta["degradations"]).numpy(), ref["tokens"])


@torch.no_grad()
def test_image_features(daclip, ref):
    x = _tensor(ref["clip_input"])
    content, degradation = daclip.encode_image(x, control=True)
    assert _max_diff(content, ref["image_features"]) < FEATURE_ATOL
    assert _max_diff(degradation, ref["degra_features"]) < FEATURE_ATOL
    assert _max_diff(daclip.encode_image(x, control=False), ref["plain_image_features"]) < FEATURE_ATOL


@torch.no_grad()
def test_text_features(daclip, ref):
    assert _max_diff(daclip.encode_text(_tensor(ref["tokens"])), ref["text_features"]) < FEATURE_ATOL


def test_probabilities_from_the_raw_image(daclip, meta, ref):
    classifier = DegradationClassifier(daclip, meta["degradations"])
    estimate = classifier.estimate(ref["raw_uint8"])
    assert _max_diff(estimate.probs, ref["probs"]) < FEATURE_ATOL
    assert _max_diff(estimate.image_context, ref["image_features"]) < FEATURE_ATOL
    assert _max_diff(estimate.degra_context, ref["degra_features"]) < FEATURE_ATOL


def _contexts(ref):
    return _tensor(ref["degra_features"]), _tensor(ref["image_features"])


@torch.no_grad()
def test_unet_outputs(unet, ref):
    text, image = _contexts(ref)
    x, cond = _tensor(ref["unet_x"]), _tensor(ref["unet_cond"])
    tolerance = UNET_RTOL * np.abs(ref["unet_out"]).max()
    for index, t in enumerate(ref["unet_t"].tolist()):
        out = unet(x, cond, t, text_context=text, image_context=image)
        assert _max_diff(out[0], ref["unet_out"][index]) < tolerance, f"t={t}"
    out = unet(x, cond, 37, text_context=None, image_context=image)
    tolerance = UNET_RTOL * np.abs(ref["unet_out_no_text_context_t37"]).max()
    assert _max_diff(out, ref["unet_out_no_text_context_t37"]) < tolerance


def test_schedule_arrays(schedule, ref):
    for name in ("thetas", "sigmas", "thetas_cumsum", "sigma_bars"):
        np.testing.assert_allclose(getattr(schedule, name).numpy(), ref[f"sde_{name}"], rtol=1e-6, atol=1e-7, err_msg=name)
    assert schedule.dt == pytest.approx(float(ref["sde_dt"]), rel=1e-6)


def _reference_noise_fn(unet, schedule, ref):
    """The fixture's noise predictor (see the fixture README)."""
    mu, gt = _tensor(ref["lq"]), _tensor(ref["gt"])
    text, image = _contexts(ref)

    def noise_fn(x, t):
        mu_bar = mu + (gt - mu) * torch.exp(-schedule.thetas_cumsum[t].to(DEVICE) * schedule.dt)
        predicted = unet(x, mu, t, text_context=text, image_context=image)
        return (x - mu_bar) / schedule.sigma_bars[t].to(DEVICE) + 0.5 * torch.tanh(3 * x) + 20 * predicted

    return noise_fn


@pytest.mark.parametrize("sampler, prefix", [(sample_posterior, "posterior"), (sample_reverse_sde, "sde")])
def test_samplers(unet, schedule, ref, sampler, prefix):
    mu = _tensor(ref["lq"])
    draws = _tensor(ref[f"{prefix}_draws"])
    x_T = mu + schedule.max_sigma * draws[0]
    assert _max_diff(x_T, ref[f"{prefix}_x_T"]) < SAMPLER_ATOL
    out = sampler(_reference_noise_fn(unet, schedule, ref), mu, schedule, draws=iter(draws))
    assert _max_diff(out, ref[f"{prefix}_out"]) < SAMPLER_ATOL
    if prefix == "posterior":
        as_uint8 = (out[0].clamp(0, 1) * 255).round().permute(1, 2, 0).to(torch.uint8).cpu().numpy()
        np.testing.assert_array_equal(as_uint8, ref["posterior_out_uint8"])
