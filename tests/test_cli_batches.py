"""The command line over many files: re-runs, bad files met mid-run, planar TIFFs, what is printed."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image
from test_cli import INVERT_PLUGIN

from daclip_plugin import cli
from daclip_plugin.data import samples

INVERT = ["--restorer", "invert", "-q"]


@pytest.fixture
def folder(tmp_path, install_plugin, fresh_plugins, monkeypatch):
    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    fresh_plugins.reload_plugins()
    monkeypatch.chdir(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, value in (("a", 10), ("b", 200)):
        Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(photos / f"{name}.png")
    return photos


def test_a_folder_restored_in_place_can_be_run_again_to_finish(folder, capsys):
    assert cli.main(["restore", "photos", *INVERT, "--side-by-side"]) == 0
    (folder / "b_restored.png").unlink()  # as if interrupted
    assert cli.main(["restore", "photos", *INVERT, "--side-by-side", "--skip-existing"]) == 0
    out = capsys.readouterr().out
    assert "a.png: skipped" in out and "-> photos/b_restored.png" in out and "a_restored.png: skipped" not in out
    assert sorted(p.name for p in folder.iterdir()) == [
        "a.png", "a_restored.png", "a_restored_compare.png", "b.png", "b_restored.png", "b_restored_compare.png"]


def test_one_file_named_twice_is_restored_once(folder, capsys):
    assert cli.main(["restore", "photos/a.png", "photos/../photos/a.png", str(folder / "a.png"), "-o", "out/", *INVERT]) == 0
    assert capsys.readouterr().out.count("->") == 1


def test_gif_files_in_folders_are_found(folder, capsys):
    Image.fromarray(np.full((16, 16, 3), 50, np.uint8)).save(folder / "c.gif")
    assert cli.main(["restore", "photos", "-o", "out", *INVERT]) == 0
    assert (folder.parent / "out" / "c_restored.png").is_file()


def test_a_file_unusable_mid_run_is_reported_and_the_others_finish(folder, capsys):
    nan = np.full((16, 16), 0.5, np.float32)
    nan[3, 3] = np.nan
    tifffile.imwrite(folder / "a_nan.tif", nan)
    assert cli.main(["restore", "photos", "-o", "out", *INVERT]) == 1
    captured = capsys.readouterr()
    assert "photos/a_nan.tif: failed: the image has 1 NaN or infinite values" in captured.err
    assert captured.err.strip().endswith("daclip: error: 1 of 3 file(s) failed")
    assert sorted(p.name for p in (folder.parent / "out").iterdir()) == ["a_restored.png", "b_restored.png"]
    assert cli.main(["classify", "photos", "--classifier", "invert-brightness"]) == 1
    captured = capsys.readouterr()
    assert "a_nan.tif: failed" in captured.err and "photos/b.png: bright" in captured.out


def test_planar_rgb_tiffs_are_colour_not_a_stack(folder):
    planar = np.random.default_rng(0).integers(0, 256, (3, 16, 20), dtype=np.uint8)
    tifffile.imwrite(folder / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    assert cli.main(["restore", "photos/planar.tif", "-o", "out/", *INVERT]) == 0
    restored = tifffile.imread(folder.parent / "out" / "planar_restored.tif")
    np.testing.assert_array_equal(restored, 255 - np.moveaxis(planar, 0, -1))


def test_no_classify_prints_no_probabilities(folder, capsys):
    assert cli.main(["restore", "photos/a.png", "-o", "out/", "--model", "tiny", "-q", "--no-classify"]) == 0
    assert capsys.readouterr().out.strip() == "-> out/a_restored.png"
    assert cli.main(["restore", "photos/b.png", "-o", "out/", "--model", "tiny", "-q"]) == 0
    assert "photos/b.png: " in capsys.readouterr().out  # the estimate that steered it


def test_samples_never_replace_a_different_file(tmp_path, capsys):
    mine = tmp_path / "noisy.png"
    mine.write_bytes(b"mine")
    assert cli.main(["samples", str(tmp_path)]) == 2
    assert "noisy.png already exist(s) and differ from the samples: use --overwrite" in capsys.readouterr().err
    assert mine.read_bytes() == b"mine" and not (tmp_path / "hazy.png").exists()
    assert cli.main(["samples", str(tmp_path), "--overwrite"]) == 0
    assert mine.read_bytes() == samples.sample_paths()["noisy"].read_bytes()
    assert cli.main(["samples", str(tmp_path)]) == 0  # the same files again: nothing to refuse


def test_grey_with_alpha_stays_grey_with_alpha(folder):
    import png

    rng = np.random.default_rng(0)
    la8 = np.stack([rng.integers(0, 256, (16, 16)), np.full((16, 16), 128)], -1).astype(np.uint8)
    Image.fromarray(la8, "LA").save(folder / "la8.png")
    la16 = np.stack([rng.integers(0, 65536, (16, 16)), np.full((16, 16), 30000)], -1).astype(np.uint16)
    png.from_array(la16.reshape(16, -1), "LA;16").save(str(folder / "la16.png"))
    assert cli.main(["restore", "photos/la8.png", "photos/la16.png", "-o", "out/", *INVERT, "--side-by-side"]) == 0
    restored = Image.open(folder.parent / "out" / "la8_restored.png")
    assert restored.mode == "LA"
    np.testing.assert_array_equal(np.asarray(restored), np.stack([255 - la8[..., 0], la8[..., 1]], -1))
    width, height, rows, info = png.Reader(filename=str(folder.parent / "out" / "la16_restored.png")).asDirect()
    assert info["planes"] == 2 and info["bitdepth"] == 16
    pixels = np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(16, 16, 2)
    np.testing.assert_array_equal(pixels, np.stack([65535 - la16[..., 0], la16[..., 1]], -1))


def test_grey_with_alpha_goes_to_other_formats_as_rgba(folder):
    la8 = np.stack([np.full((16, 16), 40), np.full((16, 16), 128)], -1).astype(np.uint8)
    Image.fromarray(la8, "LA").save(folder / "la8.png")
    assert cli.main(["restore", "photos/la8.png", "-o", "out.webp", *INVERT]) == 0
    assert Image.open(folder.parent / "out.webp").mode == "RGBA"
