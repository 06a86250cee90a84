"""The core and the CLI must not import Qt or napari."""

from __future__ import annotations

import subprocess
import sys

GUI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "vispy")

CHECK = f"""
import sys
{{imports}}
gui = sorted(m for m in sys.modules if m.split('.')[0] in {GUI_MODULES!r})
print(gui)
assert not gui, gui
"""


def _run(imports: str) -> None:
    result = subprocess.run([sys.executable, "-c", CHECK.format(imports=imports)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_import_pulls_in_no_gui():
    _run("import daclip_plugin, daclip_plugin.plugins, daclip_plugin.imaging")


def test_engine_pulls_in_no_gui():
    _run("import daclip_plugin.pipeline, daclip_plugin.checkpoints, daclip_plugin.tiling")


def test_cli_pulls_in_no_gui():
    _run("from daclip_plugin import cli\ntry:\n    cli.main(['plugins'])\nexcept SystemExit:\n    pass")
