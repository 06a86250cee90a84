"""The embedded model ``tiny``: offline resolution, its three files, the ``daclip-direct`` restorer."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import daclip_plugin
from daclip_plugin import weights
from daclip_plugin.errors import WeightsNotFoundError

TINY_DIR = Path(daclip_plugin.__file__).parent / "models" / "tiny"
FILES = {"daclip": "daclip_tiny.pt", "unet": "irsde_tiny.pth", "direct": "direct_tiny.pth"}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty Hugging Face home: only embedded files can be found."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.delenv("DACLIP_WEIGHTS_DIR", raising=False)


def _image(size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_tiny_is_registered_with_three_embedded_files():
    spec = weights.get_model("tiny")
    assert spec.embedded and spec.restorer == "daclip-direct"
    assert [(role, file.filename) for role, file in spec.files] == list(FILES.items())
    assert all(file.package == "daclip_plugin.models.tiny" for _, file in spec.files)
    assert weights.models_with("direct") == ["tiny"]
    # the official models stay two-file
    assert all(len(weights.get_model(name).files) == 2 for name in ("universal-ir", "universal-ir-mix", "wild-ir"))


def test_tiny_resolves_offline_without_any_cache(offline):
    resolved = weights.resolve("tiny")
    assert resolved.roles == ("daclip", "unet", "direct")
    for role, name in FILES.items():
        assert resolved.path(role) == TINY_DIR / name
        assert resolved.sources[role] == weights.SOURCE_PACKAGE
    assert all(item.found and item.source == weights.SOURCE_PACKAGE for item in weights.status("tiny"))
    assert weights.download("tiny").direct == TINY_DIR / FILES["direct"]  # nothing to fetch
    subset = weights.resolve("tiny", roles=("daclip", "direct"))
    assert subset.unet is None and subset.roles == ("daclip", "direct")


def test_resolving_in_a_fresh_process_touches_no_network(tmp_path):
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise AssertionError('network access')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from daclip_plugin import weights\n"
        "print(weights.resolve('tiny').direct)\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("direct_tiny.pth")


def test_files_fit_the_size_budget_and_provenance_describes_them():
    sizes = {name: (TINY_DIR / name).stat().st_size for name in FILES.values()}
    assert sum(sizes.values()) <= 25_000_000, sizes
    provenance = json.loads((TINY_DIR / "provenance.json").read_text())
    assert set(provenance["stages"]) == {"daclip", "irsde", "direct"}
    assert provenance["files"] == {"daclip": FILES["daclip"], "irsde": FILES["unet"], "direct": FILES["direct"]}
    for stage, entry in provenance["stages"].items():
        for field in ("seed", "steps", "model_cfg", "file", "file_bytes", "file_dtype", "file_sha256"):
            assert field in entry, (stage, field)
        assert entry["file"] == provenance["files"][stage]
        path = TINY_DIR / entry["file"]
        assert entry["file_bytes"] == path.stat().st_size
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["file_sha256"], (
            f"{path.name} changed: update provenance.json"
        )
        assert "device" in entry
        assert "command" in entry and entry["eval"] is not None
        if "init" in entry:  # fine-tuned: the weights it started from are on record too
            assert len(entry["init"]["sha256"]) == 64 and entry["init"]["provenance"]["file"] == entry["file"]
    daclip, irsde = provenance["stages"]["daclip"], provenance["stages"]["irsde"]
    assert irsde["daclip_sha256"] == daclip["file_sha256"] == provenance["stages"]["direct"]["daclip_sha256"]
    # every stage was trained with the DA-CLIP view the registry entry declares
    assert {entry.get("clip_view", "resize") for entry in provenance["stages"].values()} == {weights.get_model("tiny").clip_view}


def test_classify_with_tiny(offline):
    scores = daclip_plugin.classify(_image(), model="tiny", device="cpu")
    assert len(scores) == 10 and sum(scores.values()) == pytest.approx(1, abs=1e-5)


def test_direct_restorer_keeps_shape_and_dtype_and_is_deterministic(offline):
    image = _image(40, seed=1)[:, :36]
    steps = []
    first = daclip_plugin.restore(image, restorer="daclip-direct", device="cpu", progress=lambda d, t: steps.append((d, t)))
    assert first.shape == image.shape and first.dtype == image.dtype
    assert steps == [(1, 1)]  # one UNet pass
    np.testing.assert_array_equal(first, daclip_plugin.restore(image, restorer="daclip-direct", model="tiny", device="cpu"))
    gray16 = np.random.default_rng(2).integers(0, 65536, (20, 24), dtype=np.uint16)
    restored = daclip_plugin.restore(gray16, restorer="daclip-direct", device="cpu", tile_size=0)
    assert restored.shape == gray16.shape and restored.dtype == np.uint16


def test_the_direct_restorer_yields_a_step_per_tile_and_stops_between_tiles(offline):
    from daclip_plugin import Cancelled
    from daclip_plugin.engine import direct

    restorer = direct.load_model("tiny", device="cpu")
    image = _image(64, seed=3).astype(np.float32) / 255
    work = restorer.iter_restore(image, tile_size=40, tile_overlap=8)  # 2 x 2 tiles
    steps = []
    while True:
        try:
            steps.append(next(work))
        except StopIteration as stop:
            tiled = stop.value
            break
    assert [(step.done, step.total) for step in steps] == [(k, 4) for k in range(1, 5)]
    np.testing.assert_array_equal(tiled, restorer.restore(image, tile_size=40, tile_overlap=8))
    seen = []
    with pytest.raises(Cancelled, match="after 2 of 4 steps"):
        restorer.restore(
            image, tile_size=40, tile_overlap=8, progress=lambda d, t: seen.append(d), should_stop=lambda: len(seen) >= 2
        )
    assert seen == [1, 2]


def test_direct_restorer_reuses_loaded_modules(offline):
    from daclip_plugin.engine import direct, pipeline

    first = direct.load_model("tiny", device="cpu")
    second = direct.load_model("tiny", device="cpu")
    assert first.unet is second.unet and first.daclip is second.daclip
    # the IR-SDE pipeline of the same model shares the DA-CLIP, not the UNet
    engine = pipeline.load_pipeline("tiny", device="cpu")
    assert engine.daclip is first.daclip and engine.unet is not first.unet


def test_direct_restorer_explicit_unet_path(offline, tmp_path):
    import shutil

    from daclip_plugin.engine import direct

    copy = tmp_path / "mine.pth"
    shutil.copy(TINY_DIR / FILES["direct"], copy)
    restorer = direct.load_model("tiny", unet_path=copy, device="cpu")
    assert restorer.unet is not direct.load_model("tiny", device="cpu").unet
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        weights.resolve("tiny", direct_path=tmp_path / "missing.pth", roles=("direct",))


def test_a_model_without_direct_weights_gives_a_clear_error(offline):
    with pytest.raises(WeightsNotFoundError) as info:
        daclip_plugin.restore(_image(8), restorer="daclip-direct", model="universal-ir", device="cpu")
    message = str(info.value)
    assert "'universal-ir' has no direct restorer weights" in message and "'tiny'" in message
    assert "restorer 'daclip'" in message
    with pytest.raises(WeightsNotFoundError, match="has no direct restorer file.*'tiny'"):
        weights.resolve("universal-ir", roles=("daclip", "direct"))


def test_irsde_restorer_runs_with_tiny(offline):
    image = _image(24, seed=3)
    steps = []
    restored = daclip_plugin.restore(
        image, restorer="daclip", model="tiny", device="cpu", seed=0, progress=lambda d, t: steps.append(d)
    )
    assert restored.shape == image.shape and restored.dtype == np.uint8
    assert len(steps) == 100


def test_a_third_file_in_errors_and_status(offline):
    from daclip_plugin.weights import ModelSpec, WeightFile

    spec = ModelSpec(
        "hubby",
        "three files on the Hub",
        daclip=WeightFile.hub("a/b", "d.pt"),
        unet=WeightFile.hub("a/b", "u.pth"),
        direct=WeightFile.hub("a/b", "r.pth"),
    )
    assert [item.label for item in weights.status(spec)] == ["DA-CLIP", "UNet", "direct restorer"]
    assert not any(item.found for item in weights.status(spec))
    with pytest.raises(WeightsNotFoundError) as info:
        weights.resolve(spec, roles=("daclip", "direct"))
    message = str(info.value)
    assert "missing its DA-CLIP file 'd.pt' and direct restorer file 'r.pth'" in message
    assert "u.pth" not in message and "daclip download hubby" in message


def test_cli_models_shows_the_direct_file(capsys):
    from daclip_plugin import cli

    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()

    def block(name):
        start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}  ["))
        rows = []
        for line in lines[start + 1 :]:
            if not line.startswith("  "):
                break
            rows.append(line.strip())
        return rows

    tiny = block("tiny")
    assert tiny[:2] == ["preferred restorer: daclip-direct", "DA-CLIP input: tiles"]
    assert [row.split()[0] for row in tiny[2:]] == ["DA-CLIP", "UNet", "direct"]
    assert tiny[4].startswith("direct restorer  direct_tiny.pth") and all(" built in " in row for row in tiny[2:])
    assert [row.split()[0] for row in block("universal-ir")] == ["DA-CLIP", "UNet"]


def _count_daclip_passes(monkeypatch) -> list:
    """Every DA-CLIP image pass (classifier and restorers go through DegradationClassifier.estimate)."""
    from daclip_plugin.nn.daclip import DegradationClassifier

    passes = []
    original = DegradationClassifier.estimate
    monkeypatch.setattr(DegradationClassifier, "estimate", lambda self, image: (passes.append(1), original(self, image))[1])
    return passes


def test_classify_then_restore_runs_daclip_once_in_the_cli(offline, tmp_path, capsys, monkeypatch):
    from PIL import Image

    from daclip_plugin import cli

    source = tmp_path / "photo.png"
    Image.fromarray(_image(48)).save(source)
    passes = _count_daclip_passes(monkeypatch)
    assert cli.main(["restore", str(source), "--model", "tiny", "--device", "cpu", "-q"]) == 0
    assert len(passes) == 1 and "noisy" in capsys.readouterr().out  # the printed probabilities are the estimate's


def test_evaluation_runs_daclip_once_per_image(offline, tmp_path, monkeypatch):
    from daclip_plugin import evaluation

    evaluation.make_benchmark(tmp_path / "bench", per_type=1, size=48, seed=0, degradations=["noisy", "hazy"])
    passes = _count_daclip_passes(monkeypatch)
    report = evaluation.evaluate(tmp_path / "bench", restorer="daclip-direct", options={"model": "tiny", "device": "cpu"},
                                 progress=False)
    assert report["classifier"] == "daclip" and len(passes) == 2  # one pass for each image, not two
    assert report["average"]["accuracy"] is not None
    passes.clear()
    other = evaluation.evaluate(tmp_path / "bench", restorer="daclip-direct", classifier="daclip",
                                options={"model": "tiny", "device": "cpu", "prompts": ["noisy", "hazy"]}, progress=False)
    assert len(passes) == 4 and other["classifier"] == "daclip"  # a classifier with other prompts runs on its own
