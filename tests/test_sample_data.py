"""The bundled sample images: files, Python functions, ``daclip samples`` and napari's sample data."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import daclip_plugin.nn.daclip  # noqa: F401  torch, open_clip and torchvision before Qt: importing them after a napari viewer can crash
from daclip_plugin import cli
from daclip_plugin.data import samples as sample_data
from daclip_plugin.data.degradations import DEGRADATIONS
from daclip_plugin.data.sources import EVAL_IMAGES


def test_samples_are_small_degraded_pngs():
    paths = sample_data.sample_paths()
    assert list(paths) == list(sample_data.SAMPLES) and len(paths) >= 5
    assert sum(path.stat().st_size for path in paths.values()) < 500_000
    images = sample_data.sample_images()
    for name, image in images.items():
        sample = sample_data.SAMPLES[name]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert 192 <= image.shape[0] == image.shape[1] == sample.size <= 256
        assert sample.degradation in DEGRADATIONS and sample.source in EVAL_IMAGES
    assert len({s.degradation for s in sample_data.SAMPLES.values()}) == len(sample_data.SAMPLES)


def test_samples_are_reproducible_from_their_recipes(tmp_path):
    script = sample_data.sample_dir().parents[1] / "scripts" / "make_samples.py"
    if not script.is_file():
        pytest.skip("not a source checkout")
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    for name, path in sample_data.sample_paths().items():
        np.testing.assert_array_equal(
            sample_data.sample_image(name), np.asarray(__import__("PIL.Image").Image.open(tmp_path / path.name))
        )


def test_unknown_sample():
    with pytest.raises(sample_data.UnknownNameError, match="unknown sample 'foggy'; available: noisy"):
        sample_data.sample_image("foggy")


def test_napari_sample_functions_return_layer_data():
    for name, command in sample_data.NAPARI_COMMANDS.items():
        [(data, meta)] = command()
        np.testing.assert_array_equal(data, sample_data.sample_image(name))
        assert meta["name"] == f"{name} (DA-CLIP sample)" and meta["rgb"] is True


def test_manifest_contributes_every_sample():
    import npe2

    manager = npe2.PluginManager.instance()
    manager.discover()
    contributions = dict(manager.iter_sample_data())["daclip-plugin"]
    assert [c.key for c in contributions] == list(sample_data.SAMPLES)
    titles = {c.key: c.display_name for c in contributions}
    assert titles["noisy"] == "Noisy photograph (DA-CLIP sample)"
    assert all(title.endswith("(DA-CLIP sample)") for title in titles.values())
    for contribution in contributions:
        [(data, meta)] = manager.commands.execute(contribution.command)
        assert data.shape[-1] == 3 and meta["name"].startswith(contribution.key)


def test_napari_opens_a_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("daclip-plugin", "hazy")
    assert [layer.name for layer in viewer.layers] == ["hazy (DA-CLIP sample)"]
    assert viewer.layers[0].rgb and viewer.layers[0].data.shape == sample_data.sample_image("hazy").shape


def test_the_module_pulls_in_no_gui():
    code = (
        "import sys\nfrom daclip_plugin.data import samples\nsamples.noisy_sample()\n"
        "gui = [m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6', 'napari', 'magicgui')]\n"
        "assert not gui, gui\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_samples_lists_and_copies(tmp_path, capsys):
    assert cli.main(["samples"]) == 0
    out = capsys.readouterr().out
    assert all(str(path) in out for path in sample_data.sample_paths().values())
    assert cli.main(["samples", str(tmp_path / "here")]) == 0
    copied = sorted(p.name for p in (tmp_path / "here").iterdir())
    assert copied == sorted(s.file for s in sample_data.SAMPLES.values())
    assert (tmp_path / "here" / "hazy.png").read_bytes() == sample_data.sample_paths()["hazy"].read_bytes()


def test_cli_restore_with_tiny_uses_the_direct_restorer(tmp_path, capsys, monkeypatch):
    from daclip_plugin import api

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    used = []
    original = api.restore
    monkeypatch.setattr(
        api, "restore", lambda image, restorer="daclip", **kw: (used.append(restorer), original(image, restorer, **kw))[1]
    )
    source = sample_data.copy_samples(tmp_path)[1]  # hazy
    code = cli.main(
        ["restore", str(source), "-o", f"{tmp_path / 'out'}/", "--model", "tiny", "--device", "cpu", "--side-by-side", "-q"]
    )
    assert code == 0 and used == ["daclip-direct"]
    out = capsys.readouterr().out
    assert f"{source}: " in out and "%" in out
    assert (tmp_path / "out" / "hazy_restored.png").is_file() and (tmp_path / "out" / "hazy_restored_compare.png").is_file()


def test_cli_restore_irsde_with_tiny(tmp_path, monkeypatch):
    from PIL import Image

    from daclip_plugin import api

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    used = []
    original = api.restore
    monkeypatch.setattr(
        api,
        "restore",
        lambda image, restorer="daclip", **kw: (used.append((restorer, kw.get("seed"))), original(image, restorer, **kw))[1],
    )
    source = tmp_path / "small.png"
    Image.fromarray(sample_data.sample_image("rainy")[:24, :24]).save(source)
    code = cli.main(
        [
            "restore",
            str(source),
            "-o",
            str(tmp_path / "r.png"),
            "--model",
            "tiny",
            "--restorer",
            "daclip",
            "--seed",
            "1",
            "--device",
            "cpu",
            "--no-classify",
            "-q",
        ]
    )
    assert code == 0 and used == [("daclip", 1)]
    assert np.asarray(Image.open(tmp_path / "r.png")).shape == (24, 24, 3)
