"""Parity with the MaRS reference implementation, on a fixture computed by its own code.

The fixture folder (``DACLIP_MARS_FIXTURES``, default ``tests/data/mars-a``) holds
``meta.json``, a UNet file (``*.pth``) and ``reference.npz`` (format ``mars-v1``; its README
says what each array is). Everything is rebuilt from those files alone, so the same test
runs on any fixture of this format (other seeds, other UNet shapes, other runs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from daclip_plugin.engine.devices import unet_precision
from daclip_plugin.engine.mars import MarsOptions, MarsSchedule, interpolate, mars_calls, sample_mars
from daclip_plugin.engine.sde import IRSDESchedule
from daclip_plugin.weights import checkpoints

FIXTURES = Path(os.environ.get("DACLIP_MARS_FIXTURES", Path(__file__).parent / "data" / "mars-a"))
#: Every run, the noise-parameterised SDE ones included: coefficients are computed in float32
#: as the reference computes them (measured on mars-a: at most 1.4e-6).
OUT_ATOL = 1e-5
SCHEDULE_RTOL = 1e-6
#: The reference MRSampler's keyword names that differ from ours.
RENAMED = {"num_sample_steps": "steps", "solver_type": "solver"}


@pytest.fixture(scope="module")
def meta() -> dict:
    meta = json.loads((FIXTURES / "meta.json").read_text())
    assert meta.get("format") == "mars-v1", meta.get("format")
    return meta


@pytest.fixture(scope="module")
def ref() -> dict:
    with np.load(FIXTURES / "reference.npz") as data:
        return {name: torch.from_numpy(data[name]) for name in data.files}


@pytest.fixture(scope="module")
def schedule(meta) -> IRSDESchedule:
    return IRSDESchedule.from_config(meta["sde"])


@pytest.fixture(scope="module")
def unet(meta):
    (path,) = sorted(FIXTURES.glob("*.pth"))
    return checkpoints.load_unet(path, unet_cfg=meta["unet_cfg"], device="cpu").eval()


def _options(run: dict) -> dict:
    return {RENAMED.get(key, key): value for key, value in run["options"].items()}


def test_mars_schedule_arrays(schedule, ref):
    mars = MarsSchedule(schedule)
    for name, ours in (("alpha", mars.alpha), ("sigma", mars.sigma), ("lambda", mars.lam)):
        np.testing.assert_allclose(ours.numpy(), ref[f"mars_{name}"].numpy(), rtol=SCHEDULE_RTOL, atol=1e-7, err_msg=name)


def _predictor(unet, ref, calls: list):
    """The fixture's noise predictor (its README), recording the timestep of every call."""
    mu, gt = ref["lq"], ref["gt"]
    text, image = ref["degra_features"], ref["image_features"]
    t_array = torch.linspace(0, len(ref["mars_alpha"]) - 1, len(ref["mars_alpha"]), dtype=torch.float32)

    def noise_fn(x, t):
        assert isinstance(t, float), type(t)
        calls.append(t)
        at = torch.tensor([t], dtype=torch.float32)
        alpha = interpolate(at, t_array, ref["mars_alpha"])[0]
        sigma = interpolate(at, t_array, ref["mars_sigma"])[0]
        predicted = unet(x, mu, t, text_context=text, image_context=image)
        return (x - mu - (gt - mu) * alpha) / sigma + 0.5 * torch.tanh(3 * x) + 20 * predicted

    return noise_fn


def _runs():
    meta = json.loads((FIXTURES / "meta.json").read_text())
    return [pytest.param(run, id=run["name"]) for run in meta["runs"]]


@pytest.mark.parametrize("run", _runs())
def test_run_matches_the_reference(run, unet, schedule, ref):
    name, options = run["name"], _options(run)
    draws = ref[f"{name}_draws"]
    assert len(draws) == run["n_draws"]
    calls: list[float] = []
    steps_seen: list[tuple[int, int]] = []
    with unet_precision(torch.device("cpu"), "fp32"):
        out = sample_mars(
            _predictor(unet, ref, calls), ref["lq"], schedule, draws=iter(draws),
            progress=lambda done, total: steps_seen.append((done, total)), **options,
        )
    expected_calls = ref[f"{name}_calls"].tolist()
    # the same timesteps, the same number of network calls, in the same order
    assert calls == expected_calls
    assert len(calls) == run["nfe"]
    assert steps_seen == [(k, run["nfe"]) for k in range(1, run["nfe"] + 1)]
    assert mars_calls(schedule, **options) == expected_calls
    timesteps = MarsSchedule(schedule).timesteps(MarsOptions.from_options(**options))
    assert timesteps.tolist() == ref[f"{name}_timesteps"].tolist()
    difference = (out.clamp(0, 1) - ref[f"{name}_out"]).abs().max().item()
    assert difference < OUT_ATOL, f"{name}: max |ours - reference| = {difference:.2e}"
