"""The distribution: wheel contents, installed entry points and the console script."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import daclip_plugin

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    source = tmp_path_factory.mktemp("source")
    out = tmp_path_factory.mktemp("dist")
    # build from a copy, so the build leaves nothing behind in the checkout
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "*.egg-info", "build", "dist", "__pycache__", ".pytest_cache", "outputs", ".whl", ".hypothesis"
    )
    shutil.copytree(ROOT, source / "project", symlinks=True, ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(source / "project")],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("daclip_plugin-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def test_wheel_contains_manifest_and_hooks(wheel):
    names = set(wheel.namelist())
    assert "daclip_plugin/napari.yaml" in names
    assert "daclip_plugin/hooks/__init__.py" in names
    assert "daclip_plugin/hooks/builtin.py" in names
    manifest = wheel.read("daclip_plugin/napari.yaml").decode()
    assert manifest == (ROOT / "napari.yaml").read_text()
    assert not any(name.startswith(("tests/", "hooks/")) for name in names)


def test_wheel_contains_every_module_of_the_source_tree(wheel):
    names = set(wheel.namelist())
    sources = [path.relative_to(ROOT).as_posix() for path in (ROOT / "daclip_plugin").rglob("*.py")]
    sources += [f"daclip_plugin/{path.relative_to(ROOT).as_posix()}" for path in (ROOT / "hooks").glob("*.py")]
    missing = [name for name in sources if "__pycache__" not in name and name not in names]
    assert not missing, f"left out of the wheel (list the package in pyproject.toml): {missing}"


def test_wheel_contains_the_embedded_model_and_samples(wheel):
    names = set(wheel.namelist())
    tiny = "daclip_plugin/models/tiny/"
    for name in ("__init__.py", "daclip_tiny.pt", "irsde_tiny.pth", "direct_tiny.pth", "provenance.json"):
        assert tiny + name in names, name
        assert wheel.read(tiny + name) == (ROOT / tiny / name).read_bytes(), name
    assert "daclip_plugin/models/__init__.py" in names
    assert sum(wheel.getinfo(tiny + n).file_size for n in ("daclip_tiny.pt", "irsde_tiny.pth", "direct_tiny.pth")) <= 25_000_000
    from daclip_plugin.data.samples import SAMPLES

    for sample in SAMPLES.values():
        assert f"daclip_plugin/samples/{sample.file}" in names
    assert "daclip_plugin/data/samples.py" in names and "daclip_plugin/evaluation/__init__.py" in names
    for kind in ("daclip", "unet"):
        assert f"daclip_plugin/nn/model_configs/{kind}/tiny.json" in names


def test_wheel_declares_entry_points(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "daclip = daclip_plugin.cli:main" in text
    assert "daclip-plugin = daclip_plugin:napari.yaml" in text


def test_installed_entry_points():
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts["daclip"] == "daclip_plugin.cli:main"
    manifests = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="napari.manifest")}
    assert manifests["daclip-plugin"] == "daclip_plugin:napari.yaml"
    assert importlib.metadata.version("daclip-plugin") == daclip_plugin.__version__


def test_console_script_runs():
    script = Path(sys.executable).with_name("daclip")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"daclip-plugin {daclip_plugin.__version__}"
