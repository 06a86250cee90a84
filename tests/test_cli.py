"""The ``daclip`` command line."""

from __future__ import annotations

import pytest

from daclip_plugin import __version__, cli
from test_plugins import INVERT_PLUGIN


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
    assert "invert  [inverter]  inverts the image" in restorers
    assert "invert-brightness  [inverter]" in classifiers


def test_errors_are_reported_without_traceback(install_plugin, fresh_plugins, capsys):
    install_plugin("first", INVERT_PLUGIN.format(name="twin"))
    install_plugin("second", INVERT_PLUGIN.format(name="twin"))
    fresh_plugins.reload_plugins()
    assert cli.main(["plugins"]) == 1
    assert "daclip: error: 'twin' is registered twice" in capsys.readouterr().err
