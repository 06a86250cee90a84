"""The restoration pipeline on small random models: seeding, progress, cancel, tiles, errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_helpers import TINY_SDE, tiny_models

from daclip_plugin.engine.devices import available_devices, cpu_has_bf16, select_device
from daclip_plugin.engine.pipeline import DaclipPipeline
from daclip_plugin.engine.sde import IRSDESchedule
from daclip_plugin.errors import Cancelled, DaclipError, InvalidImageError


@pytest.fixture(scope="module")
def pipeline() -> DaclipPipeline:
    daclip, unet = tiny_models()
    return DaclipPipeline(daclip, unet, IRSDESchedule.from_config(TINY_SDE))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(1).random((21, 30, 3), dtype=np.float32)


def test_restore_is_seeded(pipeline, image):
    first = pipeline.restore(image, seed=3)
    assert first.shape == image.shape and first.dtype == np.float32
    assert 0 <= first.min() and first.max() <= 1
    np.testing.assert_array_equal(first, pipeline.restore(image, seed=3))
    assert not np.array_equal(first, pipeline.restore(image, seed=4))
    assert not np.array_equal(pipeline.restore(image, seed=None), pipeline.restore(image, seed=None))


@pytest.mark.parametrize("sampler", ["posterior", "sde"])
def test_progress_reports_every_step(pipeline, image, sampler):
    steps = []
    pipeline.restore(image, sampler=sampler, progress=lambda done, total: steps.append((done, total)))
    assert steps == [(k, TINY_SDE["T"]) for k in range(1, TINY_SDE["T"] + 1)]


def test_cancel_stops_within_one_step(pipeline, image):
    steps = []
    with pytest.raises(Cancelled):
        pipeline.restore(image, progress=lambda done, total: steps.append(done), should_stop=lambda: len(steps) >= 2)
    assert steps == [1, 2]
    with pytest.raises(Cancelled):
        pipeline.restore(image, should_stop=lambda: True)


def test_one_tile_equals_no_tiling_and_small_tiles_stay_close(pipeline, image):
    whole = pipeline.restore(image, tile_size=0)
    np.testing.assert_array_equal(whole, pipeline.restore(image, tile_size=128))
    larger = np.random.default_rng(2).random((48, 40, 3), dtype=np.float32)
    tiled = pipeline.restore(larger, tile_size=32, tile_overlap=8)
    assert tiled.shape == larger.shape and np.isfinite(tiled).all()
    assert np.abs(tiled - pipeline.restore(larger, tile_size=0)).mean() < 0.05


def test_odd_images_and_too_small_ones(pipeline):
    for shape in [(8, 8, 3), (9, 13, 3), (40, 8, 3)]:
        out = pipeline.restore(np.full(shape, 0.5, np.float32))
        assert out.shape == shape
    for shape in [(1, 1, 3), (3, 3, 3), (7, 40, 3)]:
        with pytest.raises(InvalidImageError, match=r"needs at least 8 x 8 px"):
            pipeline.restore(np.full(shape, 0.5, np.float32))


def test_classify(pipeline, image):
    scores = pipeline.classify(image)
    assert len(scores) == 10 and sum(scores.values()) == pytest.approx(1, abs=1e-5)
    assert "noisy" in scores


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (np.zeros((4, 4), np.float32), "RGB"),
        (np.zeros((0, 4, 3), np.float32), "RGB"),
    ],
)
def test_bad_images(pipeline, bad, message):
    with pytest.raises(InvalidImageError, match=message):
        pipeline.restore(bad)


def test_bad_options(pipeline, image):
    with pytest.raises(DaclipError, match="unknown sampler 'euler'; available: posterior, sde"):
        pipeline.restore(image, sampler="euler")
    with pytest.raises(DaclipError, match="tile_size"):
        pipeline.restore(image, tile_size=16, tile_overlap=4)


def test_devices():
    assert select_device("auto") == select_device(None)
    assert select_device("cpu") == torch.device("cpu")
    assert available_devices()[0] == "auto" and available_devices()[-1] == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(DaclipError, match="no CUDA GPU"):
            select_device("cuda")


def test_precision(pipeline, image):
    with pytest.raises(DaclipError, match="unknown precision 'fp8'"):
        pipeline.restore(image, precision="fp8")
    if pipeline.device.type == "cpu":
        for precision in ("tf32", "fp16"):
            with pytest.raises(DaclipError, match=f"precision '{precision}' needs an NVIDIA GPU"):
                pipeline.restore(image, precision=precision)
        if not cpu_has_bf16():
            with pytest.raises(DaclipError, match="needs a CPU with bfloat16 instructions"):
                pipeline.restore(image, precision="bf16")
            return
        exact = pipeline.restore(image, precision="fp32")
        fast = pipeline.restore(image, precision="bf16")
        assert fast.dtype == np.float32 and 0 < np.abs(fast - exact).mean() < 0.02
    else:
        exact = pipeline.restore(image)
        fast = pipeline.restore(image, precision="bf16")
        assert fast.dtype == np.float32 and np.abs(fast - exact).mean() < 0.02


def test_builtin_restorer_and_classifier_with_explicit_files(tmp_path, fresh_plugins):
    import daclip_plugin
    from daclip_plugin.weights import checkpoints

    daclip, unet = tiny_models(seed=5)
    checkpoints.save_daclip(daclip, tmp_path / "d.pt")
    checkpoints.save_unet(unet, tmp_path / "u.pth")
    files = {"daclip_path": tmp_path / "d.pt", "unet_path": tmp_path / "u.pth", "device": "cpu"}
    image = (np.random.default_rng(0).random((12, 9)) * 65535).astype(np.uint16)

    only_daclip = {"daclip_path": files["daclip_path"], "device": "cpu"}
    scores = daclip_plugin.classify(image, **only_daclip)  # classifying needs no UNet
    assert len(scores) == 10 and sum(scores.values()) == pytest.approx(1, abs=1e-5)
    assert "unet_path" not in daclip_plugin.options.of(daclip_plugin.get_classifier("daclip")).names()
    custom = daclip_plugin.classify(image, prompts=["a", "b"], **only_daclip)
    assert set(custom) == {"a", "b"}

    steps = []
    restored = daclip_plugin.restore(image, progress=lambda done, total: steps.append(total), **files)
    assert restored.shape == image.shape and restored.dtype == np.uint16
    assert steps == [100] * 100  # the official schedule
    np.testing.assert_array_equal(restored, daclip_plugin.restore(image, **files))


def test_loaded_models_are_reused_until_the_file_changes(tmp_path):
    import os

    from daclip_plugin.engine.pipeline import load_pipeline
    from daclip_plugin.weights import checkpoints

    daclip, unet = tiny_models(seed=6)
    checkpoints.save_daclip(daclip, tmp_path / "d.pt")
    checkpoints.save_unet(unet, tmp_path / "u.pth")
    files = {"daclip_path": tmp_path / "d.pt", "unet_path": tmp_path / "u.pth", "device": "cpu"}
    first, second = load_pipeline(**files), load_pipeline(**files)
    assert first.unet is second.unet and first.daclip is second.daclip
    stat = os.stat(tmp_path / "u.pth")
    os.utime(tmp_path / "u.pth", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load_pipeline(**files).unet is not first.unet


def test_loaded_daclip_keeps_prompt_features_not_its_text_tower(tmp_path):
    """The inference loader encodes the degradation prompts, then frees the text tower; other
    prompts are encoded by a freshly loaded copy, with the same numbers."""
    from daclip_plugin import weights
    from daclip_plugin.engine.pipeline import load_classifier, load_pipeline
    from daclip_plugin.nn.daclip import DEGRADATIONS, DegradationClassifier
    from daclip_plugin.weights.checkpoints import save_daclip

    full = weights.load("tiny", roles=("daclip",), shared=False).daclip
    classifier = load_classifier("tiny", device="cpu")
    assert not classifier.model.has_text_tower and full.has_text_tower
    assert load_pipeline("tiny", device="cpu").classifier.model is classifier.model  # one cached copy
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for prompts in (DEGRADATIONS, ("a photo", "a noisy photo")):
        mine = load_classifier("tiny", device="cpu", prompts=prompts)
        torch.testing.assert_close(mine.text_features, DegradationClassifier(full, prompts).text_features)
        assert mine.classify(image) == pytest.approx(DegradationClassifier(full, prompts).classify(image))
    assert not classifier.model.has_text_tower
    with pytest.raises(DaclipError, match="text tower was released"):
        classifier.model.encode_text(torch.zeros(1, 77, dtype=torch.long))
    with pytest.raises(DaclipError, match="text tower was released"):
        save_daclip(classifier.model, tmp_path / "released.pt")
    assert not (tmp_path / "released.pt").exists()


def test_a_released_text_tower_without_a_source_refuses_new_prompts():
    daclip, _ = tiny_models()
    daclip.release_text_tower(keep=[("rain",)])
    assert daclip.prompt_features(("rain",)).shape == (1, 32)
    with pytest.raises(DaclipError, match="cannot encode new prompts"):
        daclip.prompt_features(("snow",))


def test_cpu_bf16_rounds_only_the_products(pipeline):
    """CPU bf16: convolutions and linear layers in bfloat16 (weights rounded once), the rest in float32."""
    import torch.nn.functional as F

    from daclip_plugin.engine.unet_call import BFloat16Products, prepare_unet

    if not cpu_has_bf16():
        with pytest.raises(DaclipError, match="bfloat16 instructions"):
            prepare_unet(pipeline.unet, device="cpu", precision="bf16")
        return
    exact, fast = (prepare_unet(pipeline.unet, device="cpu", precision=p) for p in ("fp32", "bf16"))
    x, cond = torch.rand(2, 1, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    context = torch.rand(1, 32)
    reference = exact(x, cond, 5, text_context=context, image_context=context)
    out = fast(x, cond, 5, text_context=context, image_context=context)
    assert out.dtype == torch.float32 and out.shape == reference.shape
    error = float((out - reference).abs().max() / reference.abs().max())
    assert 1e-5 < error < 2e-2  # rounded, and only a little
    products = [m for m in pipeline.unet.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    rounded = len(fast._products._rounded)
    assert 0 < rounded <= 2 * len(products)  # weights and biases, once
    torch.testing.assert_close(fast(x, cond, 5, text_context=context, image_context=context), out, rtol=0, atol=0)
    assert len(fast._products._rounded) == rounded  # the next call reuses them
    # a weight changed in place is rounded again; tensors that are not parameters are not kept
    conv, products = torch.nn.Conv2d(3, 4, 3), BFloat16Products()
    with products:
        before = conv(x)
    with torch.no_grad():
        conv.weight.mul_(2)
    with products:
        after = conv(x)
        inside = F.conv2d(x, conv.weight.detach() * 1)
    assert not torch.allclose(before, after) and len(products._rounded) == 2
    assert inside.dtype == torch.float32 and not torch.equal(inside, F.conv2d(x, conv.weight))
    # outside the mode, nothing is rounded
    torch.testing.assert_close(conv(x), torch.conv2d(x, conv.weight, conv.bias), rtol=0, atol=0)


def test_prepare_unet_is_the_call_the_restorers_make(pipeline, image, monkeypatch):
    import daclip_plugin
    from daclip_plugin.engine.unet_call import PreparedUNet

    call = daclip_plugin.prepare_unet(pipeline.unet, device="cpu")
    x, cond = torch.rand(2, 1, 3, 16, 16)
    context = torch.rand(1, 32)
    out = call(x, cond, 3, text_context=context, image_context=context)
    with torch.no_grad():
        expected = pipeline.unet(x, cond, 3, text_context=context, image_context=context)
    assert out.dtype == torch.float32 and not out.requires_grad
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    with pytest.raises(DaclipError, match="needs an NVIDIA GPU"):
        daclip_plugin.prepare_unet(pipeline.unet, device="cpu", precision="fp16")
    calls = []
    original = PreparedUNet.__call__
    monkeypatch.setattr(PreparedUNet, "__call__", lambda self, *a, **k: (calls.append(1), original(self, *a, **k))[1])
    pipeline.restore(image, seed=0)
    assert len(calls) == TINY_SDE["T"]  # every network call of the sampler


def test_compiled_unet_equals_the_eager_call_and_compiles_once_per_size(pipeline):
    """``compile=True``: torch.compile's call (inductor here; CUDA graphs on NVIDIA GPUs), reused across restorations."""
    from torch._dynamo.utils import counters

    from daclip_plugin.engine import unet_call

    eager = unet_call.prepare_unet(pipeline.unet, device="cpu")
    compiled = unet_call.prepare_unet(pipeline.unet, device="cpu", compile=True)
    assert compiled.compiled and "compile=True" in repr(compiled)
    x, cond = torch.rand(2, 1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    context = torch.rand(1, 32)
    for t in (3, 4):  # timesteps are tensors to the compiled code: one compilation serves them all
        torch.testing.assert_close(compiled(x, cond, t, text_context=context, image_context=context),
                                   eager(x, cond, t, text_context=context, image_context=context), rtol=1e-5, atol=1e-5)
    graphs = counters["stats"]["unique_graphs"]
    again = unet_call.prepare_unet(pipeline.unet, device="cpu", compile=True)  # a later restoration's call
    torch.testing.assert_close(again(x, cond, torch.tensor([5.0]), text_context=context, image_context=context),
                               eager(x, cond, 5, text_context=context, image_context=context), rtol=1e-5, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == graphs
    if cpu_has_bf16():
        with pytest.raises(DaclipError, match="does not combine"):
            unet_call.prepare_unet(pipeline.unet, device="cpu", precision="bf16", compile=True)


def test_compiled_forwards_live_and_die_with_their_unet():
    import copy
    import gc
    import pickle
    import weakref

    from daclip_plugin.engine.unet_call import compiled_forward

    cpu = torch.device("cpu")
    _, unet = tiny_models()
    compiled = compiled_forward(unet, cpu)
    assert compiled_forward(unet, cpu) is compiled
    for twin in (copy.deepcopy(unet), pickle.loads(pickle.dumps(unet))):  # copies start uncompiled
        assert compiled_forward(twin, cpu)._orig_mod is twin
    shallow = copy.copy(unet)
    assert compiled_forward(shallow, cpu)._orig_mod is shallow
    assert unet.state_dict().keys() == copy.deepcopy(unet).state_dict().keys()
    gone = weakref.ref(unet)
    del unet, compiled, shallow, twin
    gc.collect()
    assert gone() is None


@pytest.mark.parametrize("restorer", ["daclip", "daclip-direct"])
def test_the_compile_option_reaches_the_unet_call(restorer, monkeypatch):
    import daclip_plugin
    from daclip_plugin.engine import unet_call

    compiled = []
    monkeypatch.setattr(unet_call, "compiled_forward", lambda unet, device: compiled.append(device) or unet)
    rgb = np.random.default_rng(2).random((24, 24, 3), dtype=np.float32)
    settings = {"model": "tiny", "device": "cpu", **({"sampler": "mars", "steps": 2} if restorer == "daclip" else {})}
    daclip_plugin.restore(rgb, restorer, compile=False, **settings)
    assert compiled == []
    daclip_plugin.restore(rgb, restorer, compile=True, **settings)
    assert [device.type for device in compiled] == ["cpu"]


def test_the_prepared_gpu_check_runs(tmp_path):
    """benchmarks/check_gpu.py, the script for a GPU, rehearsed on the CPU (its arguments and tables stay sound)."""
    script = Path(__file__).parents[1] / "benchmarks" / "check_gpu.py"
    report = tmp_path / "check.json"
    subprocess.run([sys.executable, str(script), "--device", "cpu", "--arch", "tiny", "--sizes", "32", "--precisions",
                    "fp32", "--repeats", "1", "--photo-size", "48", "--compile-precisions", "--json", str(report)],
                   check=True, capture_output=True, timeout=300)
    rows = json.loads(report.read_text())
    assert [(row["precision"], row["variant"], row["error"]) for row in rows["unet"]] == [("fp32", "eager", 0.0)]
    assert [(row["restorer"], row["psnr_to_fp32"]) for row in rows["restore"]] == [
        ("daclip-direct", math.inf), ("daclip", math.inf)]


def test_a_compiler_that_cannot_run_is_a_clear_error(tmp_path):
    """``compile=True`` where inductor finds no working C++ compiler: one DaclipError saying what to do."""
    code = """
import torch
from engine_helpers import tiny_models
from daclip_plugin.engine.unet_call import prepare_unet
from daclip_plugin.errors import DaclipError
_, unet = tiny_models()
x, context = torch.rand(1, 3, 16, 16), torch.rand(1, 32)
try:
    prepare_unet(unet, "cpu", compile=True)(x, x, 3, text_context=context, image_context=context)
except DaclipError as exc:
    print(exc)
"""
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    message = out.stdout.strip()
    assert message.startswith("torch.compile could not compile the UNet") and "C++ compiler" in message
    assert message.endswith("run without compile (same numbers, no compiler needed)")
