"""Benchmarks in the official layout (``daclip make-benchmark``) and ``daclip evaluate``."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from PIL import Image
from test_plugins import INVERT_PLUGIN

from daclip_plugin import cli, evaluation
from daclip_plugin.data.degradations import DEGRADATIONS
from daclip_plugin.errors import UnknownNameError

IDENTITY_PLUGIN = """
    import numpy as np
    from daclip_plugin import Classifier, Restorer, hookimpl

    class Identity(Restorer):
        name = "identity"

        def restore(self, image, *, progress=None, should_stop=None):
            return image.copy()

    class Oracle(Classifier):
        '''Always says "noisy" (70 %) over "hazy".'''
        name = "always-noisy"

        def classify(self, image):
            return {"noisy": 0.7, "hazy": 0.3}

    @hookimpl
    def register_restorers(register):
        register(Identity())

    @hookimpl
    def register_classifiers(register):
        register(Oracle())
"""


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    evaluation.make_benchmark(root, seed=3, per_type=2, size=24)
    return root


def _digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))}


def test_make_benchmark_writes_the_official_layout(bench):
    for name in DEGRADATIONS:
        for kind in ("LQ", "GT"):
            files = sorted(p.name for p in (bench / name / kind).iterdir())
            assert files == ["0000.png", "0001.png"], (name, kind)
        lq = np.asarray(Image.open(bench / name / "LQ" / "0000.png"))
        gt = np.asarray(Image.open(bench / name / "GT" / "0000.png"))
        assert lq.shape == gt.shape == (24, 24, 3) and lq.dtype == np.uint8
        assert not np.array_equal(lq, gt) or name == "jpeg-compressed"
    description = json.loads((bench / "benchmark.json").read_text())
    assert description["seed"] == 3 and description["per_type"] == 2 and description["size"] == 24
    assert description["clean_images"] == ["coffee", "rocket", "camera", "gravel"]


def test_make_benchmark_is_deterministic(bench, tmp_path):
    evaluation.make_benchmark(tmp_path / "again", seed=3, per_type=2, size=24)
    assert _digests(tmp_path / "again") == _digests(bench)
    evaluation.make_benchmark(tmp_path / "other", seed=4, per_type=2, size=24)
    assert _digests(tmp_path / "other") != _digests(bench)
    # image k of a type does not depend on how many images there are per type
    evaluation.make_benchmark(tmp_path / "one", seed=3, per_type=1, size=24, degradations=["noisy"])
    assert _digests(tmp_path / "one")["noisy/LQ/0000.png"] == _digests(bench)["noisy/LQ/0000.png"]


def test_identity_restorer_scores_like_its_input(bench, install_plugin, fresh_plugins, tmp_path):
    install_plugin("identity", IDENTITY_PLUGIN)
    fresh_plugins.reload_plugins()
    report = evaluation.evaluate(bench, restorer="identity", classifier="always-noisy", progress=False)
    assert list(report["degradations"]) == list(DEGRADATIONS)
    for entry in report["degradations"].values():
        assert entry["n"] == 2
        assert entry["psnr_in"] == pytest.approx(entry["psnr_out"]) and entry["ssim_in"] == pytest.approx(entry["ssim_out"])
        assert 0 < entry["ssim_in"] <= 1
    assert report["degradations"]["noisy"]["accuracy"] == 1.0
    assert report["degradations"]["hazy"]["accuracy"] == 0.0
    assert report["degradations"]["rainy"]["accuracy"] is None  # not a class of this classifier
    assert report["average"]["n"] == 20
    assert report["average"]["psnr_in"] == pytest.approx(np.mean([e["psnr_in"] for e in report["degradations"].values()]))
    confusion = report["confusion"]
    assert confusion["true"] == list(DEGRADATIONS) and confusion["predicted"] == ["hazy", "noisy"]
    matrix = np.array(confusion["matrix"])
    assert matrix.shape == (10, 2) and matrix[:, 1].sum() == 20 and matrix.sum() == 20
    # the metrics are scikit-image's
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    lq = np.asarray(Image.open(bench / "noisy" / "LQ" / "0000.png")) / 255
    gt = np.asarray(Image.open(bench / "noisy" / "GT" / "0000.png")) / 255
    first = report["images"][[r["degradation"] for r in report["images"]].index("noisy")]
    assert first["psnr_in"] == pytest.approx(peak_signal_noise_ratio(gt, lq, data_range=1))
    assert first["ssim_in"] == pytest.approx(structural_similarity(gt, lq, channel_axis=-1, data_range=1))

    path = evaluation.write_json(report, tmp_path / "report.json")
    loaded = json.loads(path.read_text())
    assert loaded["degradations"]["noisy"]["psnr_out"] == pytest.approx(report["degradations"]["noisy"]["psnr_out"])
    assert loaded["confusion"]["matrix"] == confusion["matrix"] and loaded["restorer"] == "identity"
    text = evaluation.format_report(report)
    assert "average" in text and "confusion matrix" in text and "motion-blurry" in text


def test_limit_and_no_classifier(bench, install_plugin, fresh_plugins):
    install_plugin("identity", IDENTITY_PLUGIN)
    fresh_plugins.reload_plugins()
    report = evaluation.evaluate(bench, restorer="identity", classifier=None, limit=1, progress=False)
    assert report["average"]["n"] == 10 and report["confusion"] is None
    assert all(entry["accuracy"] is None for entry in report["degradations"].values())


def test_options_go_to_whoever_takes_them(bench, install_plugin, fresh_plugins):
    install_plugin("identity", IDENTITY_PLUGIN)
    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    fresh_plugins.reload_plugins()
    report = evaluation.evaluate(bench, restorer="invert", classifier="always-noisy", options={"gain": 0.5}, limit=1,
                                 progress=False)
    assert report["restore_options"] == {"gain": 0.5} and report["classify_options"] == {}
    assert report["average"]["psnr_out"] != pytest.approx(report["average"]["psnr_in"])
    with pytest.raises(
        UnknownNameError,
        match=r"no component takes option\(s\) seed \(restorer 'identity' takes: .*classifier 'always-noisy' takes",
    ):
        evaluation.evaluate(bench, restorer="identity", classifier="always-noisy", options={"seed": 1}, progress=False)


def test_identical_images_give_infinite_psnr_and_null_in_json(tmp_path, install_plugin, fresh_plugins):
    install_plugin("identity", IDENTITY_PLUGIN)
    fresh_plugins.reload_plugins()
    image = np.random.default_rng(0).integers(0, 256, (9, 9, 3), dtype=np.uint8)
    for kind in ("LQ", "GT"):
        (tmp_path / "b" / "clean" / kind).mkdir(parents=True)
        Image.fromarray(image).save(tmp_path / "b" / "clean" / kind / "x.png")
    report = evaluation.evaluate(tmp_path / "b", restorer="identity", classifier=None, progress=False)
    assert math.isinf(report["degradations"]["clean"]["psnr_in"])
    assert report["degradations"]["clean"]["ssim_out"] == pytest.approx(1.0)
    data = json.loads(evaluation.write_json(report, tmp_path / "r.json").read_text())
    assert data["degradations"]["clean"]["psnr_in"] is None


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "no degradation folders"),
        (lambda root: (root / "noisy" / "LQ").mkdir(parents=True), "has no GT folder"),
        (lambda root: [(root / "noisy" / k).mkdir(parents=True) for k in ("LQ", "GT")], "holds no images"),
    ],
)
def test_wrong_layouts_are_explained(tmp_path, make, message):
    root = tmp_path / "bench"
    make(root)
    with pytest.raises(evaluation.BenchmarkLayoutError, match=message):
        evaluation.find_pairs(root)


def test_unmatched_file_names_are_reported(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    for kind, name in (("LQ", "a.png"), ("GT", "b.png")):
        (tmp_path / "noisy" / kind).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "noisy" / kind / name)
    with pytest.raises(evaluation.BenchmarkLayoutError, match="same file names; unmatched: a.png, b.png"):
        evaluation.find_pairs(tmp_path)


# ------------------------------------------------------------------------------- the CLI


def test_cli_make_benchmark_and_evaluate(tmp_path, install_plugin, fresh_plugins, capsys):
    install_plugin("identity", IDENTITY_PLUGIN)
    fresh_plugins.reload_plugins()
    root = tmp_path / "bench"
    assert cli.main(["make-benchmark", str(root), "--seed", "1", "--per-type", "1", "--size", "16", "-q"]) == 0
    assert "wrote 10 pairs" in capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir()) == sorted([*DEGRADATIONS, "benchmark.json"])
    report_path = tmp_path / "out" / "report.json"
    code = cli.main(
        ["evaluate", str(root), "--restorer", "identity", "--classifier", "always-noisy", "--json", str(report_path), "-q"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "PSNR in" in out and "SSIM out" in out and "confusion matrix" in out and "average" in out
    report = json.loads(report_path.read_text())
    assert report["average"]["n"] == 10 and report["restorer"] == "identity"
    assert report["benchmark"]["seed"] == 1


def test_cli_evaluate_errors(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "nowhere"), "--restorer", "daclip-direct", "-q"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path), "--restorer", "no-such-restorer", "-q"]) == 2
    assert "daclip: error:" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path), "--limit", "0", "-q"]) == 2
    assert cli.main(["evaluate", str(tmp_path), "--json", str(tmp_path), "-q"]) == 2  # refused before any work
    assert "is a folder: name a file for the report" in capsys.readouterr().err


def test_a_benchmark_is_never_mixed_into_an_earlier_one(tmp_path, capsys):
    root = tmp_path / "bench"
    evaluation.make_benchmark(root, seed=1, per_type=2, size=16, degradations=["noisy"])
    (root / "notes.txt").write_text("mine")
    assert cli.main(["make-benchmark", str(root), "--seed", "2", "--per-type", "1", "--size", "16", "-q"]) == 2
    assert "already holds a benchmark (5 files): use --overwrite" in capsys.readouterr().err
    assert cli.main(["make-benchmark", str(root), "--seed", "2", "--per-type", "1", "--size", "16", "-q", "--overwrite"]) == 0
    assert sorted(p.name for p in (root / "noisy" / "LQ").iterdir()) == ["0000.png"]
    assert json.loads((root / "benchmark.json").read_text())["seed"] == 2 and (root / "notes.txt").read_text() == "mine"
    assert cli.main(["make-benchmark", str(tmp_path / "b2"), "--seed", "-1", "-q"]) == 2
    assert "seed must be a non-negative integer" in capsys.readouterr().err


def test_python_evaluate_runs_the_models_preferred_restorer(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path / "bench"
    evaluation.make_benchmark(root, seed=0, per_type=1, size=32, degradations=["hazy"])
    report = evaluation.evaluate(root, classifier=None, options={"model": "tiny", "device": "cpu"}, progress=False)
    assert report["restorer"] == "daclip-direct"


def test_cli_evaluate_the_embedded_direct_restorer(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path / "bench"
    evaluation.make_benchmark(root, seed=0, per_type=1, size=32, degradations=["hazy", "low-light"])
    assert cli.main(["evaluate", str(root), "--model", "tiny", "--device", "cpu", "--json", str(tmp_path / "r.json"), "-q"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["restorer"] == "daclip-direct"  # the model's preferred restorer
    assert report["classify_options"]["model"] == "tiny"
    assert report["confusion"]["predicted"] == list(DEGRADATIONS)
    assert np.array(report["confusion"]["matrix"]).shape == (2, 10)
