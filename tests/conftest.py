"""Shared test helpers: throw-away plugin distributions found through real entry points."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from pathlib import Path

import pytest

from daclip_plugin import plugins

pytest_plugins = ["fake_hub"]  # the local Hub and its fixtures, for every module


@pytest.fixture(autouse=True)
def private_settings(tmp_path_factory):
    """The napari widget keeps its settings in a folder of the test's own, never the user's.

    (Not through ``monkeypatch``: an autouse fixture holding it would undo the test's
    ``sys.path`` changes only after ``fresh_plugins`` has rediscovered the plugins.)
    """
    before = os.environ.get("DACLIP_CONFIG_DIR")
    os.environ["DACLIP_CONFIG_DIR"] = str(tmp_path_factory.mktemp("config"))
    yield
    if before is None:
        del os.environ["DACLIP_CONFIG_DIR"]
    else:
        os.environ["DACLIP_CONFIG_DIR"] = before


@pytest.fixture
def fresh_plugins():
    """Rediscover plugins before and after the test, so state never leaks between tests."""
    plugins.reload_plugins()
    yield plugins
    plugins.reload_plugins()


@pytest.fixture
def install_plugin(fresh_plugins, tmp_path):
    """Install a plugin as a real distribution (dist-info + entry_points.txt) on ``sys.path``.

    ``install_plugin(entry_point_name, source)`` writes module ``<entry_point_name>_mod``
    holding ``source`` and a distribution whose ``daclip_plugin`` entry point names it. On
    teardown the folder leaves ``sys.path`` and the plugins are discovered again, whatever
    order other fixtures are torn down in.
    """
    site = tmp_path / "site"
    site.mkdir()
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()

    def install(name: str, source: str) -> Path:
        module = f"{name}_mod"
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        dist_info = site / f"{name}_dist-1.0.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-dist\nVersion: 1.0\n")
        (dist_info / "entry_points.txt").write_text(f"[daclip_plugin]\n{name} = {module}\n")
        sys.modules.pop(module, None)
        return site

    yield install
    sys.path.remove(str(site))
    importlib.invalidate_caches()
    for module in [m for m in sys.modules if m.endswith("_mod")]:
        sys.modules.pop(module)
    plugins.reload_plugins()
