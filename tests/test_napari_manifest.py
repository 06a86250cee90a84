"""napari finds and accepts the plugin manifest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import npe2


def test_manifest_is_valid():
    manifest = npe2.PluginManifest.from_distribution("daclip-plugin")
    assert manifest.name == "daclip-plugin"
    npe2_cli = Path(sys.executable).with_name("npe2")
    result = subprocess.run([str(npe2_cli), "validate", "daclip-plugin"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid!" in result.stdout


def test_napari_discovers_the_plugin(make_napari_viewer):
    make_napari_viewer()
    plugin_manager = npe2.PluginManager.instance()
    plugin_manager.discover()
    assert "daclip-plugin" in plugin_manager
    assert plugin_manager.get_manifest("daclip-plugin").display_name == "DA-CLIP Restoration"
