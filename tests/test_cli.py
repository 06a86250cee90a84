"""The ``daclip`` command line."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_plugins import INVERT_PLUGIN

from daclip_plugin import __version__, cli


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"daclip-plugin {__version__}"


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "plugins" in capsys.readouterr().out


def test_plugins_lists_components_with_their_plugin(install_plugin, fresh_plugins, capsys):
    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    fresh_plugins.reload_plugins()
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    restorers, classifiers = out.split("Classifiers:")
    assert re.search(r"\n  invert +\[inverter\]  inverts the image\n", restorers)
    assert re.search(r"daclip-direct +\[daclip_plugin.hooks.builtin\]", restorers)
    assert "invert-brightness  [inverter]" in classifiers


def test_a_failing_plugin_is_one_line_and_exit_code_1(install_plugin, fresh_plugins, tmp_path, capsys):
    install_plugin("crashing", """
        from daclip_plugin import Restorer, hookimpl

        class Crash(Restorer):
            name = "crash"

            def restore(self, image, **options):
                raise KeyError("a plugin bug")

        @hookimpl
        def register_restorers(register):
            register(Crash())
    """)
    fresh_plugins.reload_plugins()
    source = _write_png(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8))
    assert cli.main(["restore", source, "--restorer", "crash", "--no-classify", "-q"]) == 1
    err = capsys.readouterr().err
    assert err == "daclip: error: restorer 'crash' (plugin 'crashing') failed: KeyError: 'a plugin bug'\n"
    assert not (tmp_path / "x_restored.png").exists()


def _write_png(path, data):
    from PIL import Image

    Image.fromarray(data).save(path)
    return str(path)


def test_restore_writes_results_and_side_by_side(install_plugin, fresh_plugins, tmp_path, capsys):
    from PIL import Image

    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    fresh_plugins.reload_plugins()
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    gray16 = np.random.default_rng(1).integers(0, 65536, (4, 7), dtype=np.uint16)
    first = _write_png(tmp_path / "a.png", rgb)
    second = _write_png(tmp_path / "b.png", gray16)
    before = (tmp_path / "a.png").read_bytes()

    code = cli.main(["restore", first, second, "-o", str(tmp_path / "out"), "--restorer", "invert",
                     "--classifier", "invert-brightness", "--side-by-side", "-q"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"{first}: " in out and "bright" in out
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "a_restored.png")), 255 - rgb)
    restored16 = np.asarray(Image.open(tmp_path / "out" / "b_restored.png"))
    np.testing.assert_array_equal(restored16.astype(np.uint16), 65535 - gray16)
    compare = np.asarray(Image.open(tmp_path / "out" / "a_restored_compare.png"))
    assert compare.shape == (6, 5 + 8 + 5, 3)
    assert (tmp_path / "a.png").read_bytes() == before  # the source is untouched
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_restored.png", "a_restored_compare.png", "b_restored.png", "b_restored_compare.png"]


def test_restore_single_output_file_and_default_name(install_plugin, fresh_plugins, tmp_path):
    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    fresh_plugins.reload_plugins()
    source = _write_png(tmp_path / "x.png", np.zeros((3, 3, 3), np.uint8))
    assert cli.main(["restore", source, "-o", str(tmp_path / "y.png"), "--restorer", "invert", "--no-classify", "-q"]) == 0
    assert (tmp_path / "y.png").is_file()
    assert cli.main(["restore", source, "--restorer", "invert", "--no-classify", "-q"]) == 0
    assert (tmp_path / "x_restored.png").is_file()


def test_classify_json(install_plugin, fresh_plugins, tmp_path, capsys):
    import json

    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    fresh_plugins.reload_plugins()
    source = _write_png(tmp_path / "x.png", np.full((3, 3, 3), 255, np.uint8))
    assert cli.main(["classify", source, "--classifier", "invert-brightness", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[source] == {"bright": 1.0, "dark": 0.0}


@pytest.mark.parametrize("content, message", [(None, "no such image file"), (b"not an image", "cannot read")])
def test_restore_bad_files(install_plugin, fresh_plugins, tmp_path, capsys, content, message):
    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    fresh_plugins.reload_plugins()
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["restore", str(path), "--restorer", "invert", "--no-classify", "-q"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad_restored.png").exists()


def test_restore_with_an_option_the_restorer_lacks(install_plugin, fresh_plugins, tmp_path, capsys):
    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    fresh_plugins.reload_plugins()
    source = _write_png(tmp_path / "x.png", np.zeros((3, 3, 3), np.uint8))
    # the fake restorer takes **options, so unknown options reach it; the built-in one is strict
    assert cli.main(["restore", source, "--restorer", "daclip", "--no-classify", "-q", "--sampler", "sde",
                     "--daclip-path", str(tmp_path / "missing.pt")]) == 1
    assert "missing.pt" in capsys.readouterr().err
    # declared choices are the flags' choices, and an option that does not apply is refused
    with pytest.raises(SystemExit):
        cli.main(["restore", source, "--sampler", "x"])
    assert "invalid choice: 'x'" in capsys.readouterr().err
    assert cli.main(["restore", source, "--no-classify", "-q", "--steps", "10"]) == 2
    expected = "option 'steps' of restorer 'daclip' applies only with sampler='mars' (here sampler='posterior')"
    assert expected in capsys.readouterr().err
