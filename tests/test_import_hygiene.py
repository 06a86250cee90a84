"""The core and the CLI must not import Qt or napari; the subpackages import in one direction; ruff passes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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
    _run("import daclip_plugin.engine.pipeline, daclip_plugin.weights.checkpoints, daclip_plugin.engine.tiling")


def test_cli_pulls_in_no_gui():
    _run("from daclip_plugin import cli\ntry:\n    cli.main(['plugins'])\nexcept SystemExit:\n    pass")


# What each subpackage may import from the rest of daclip_plugin (besides itself); the
# modules directly under daclip_plugin/ are the core.
ALLOWED = {
    "nn": {"errors"},
    "data": {"errors", "nn", "imagefiles"},
    "weights": {"errors", "nn", "plugins", "interfaces", "persist"},
    "engine": {"errors", "interfaces", "steps", "options", "imaging", "nn", "weights"},
    "evaluation": {"errors", "imaging", "imagefiles", "api", "options", "data", "persist", "outputs"},
    "training": {"errors", "imaging", "nn", "data", "weights", "engine", "evaluation", "models", "persist"},
}
NEVER = {"training", "gui"}  # nothing outside them imports these (the CLI may start training)


def _package_imports(path: Path, package: str) -> set[str]:
    """The daclip_plugin modules a file imports, at any depth (lazy imports too)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [f"{module}.{alias.name}" for alias in node.names]
            imported.update(name if _is_module(name) else module for name in names)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    return {name for name in imported if name.split(".")[0] == "daclip_plugin"}


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def _area(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


PACKAGE = Path(__file__).resolve().parents[1] / "daclip_plugin"


def test_subpackages_import_only_in_the_allowed_directions():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        if len(parts) < 2 or parts[1] == "hooks":
            continue
        module = ".".join(parts)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        area = parts[1] if (PACKAGE / parts[1]).is_dir() else ""
        for target in _package_imports(path, package):
            other = _area(target)
            if other == area or not other:
                continue
            if other in NEVER and module not in ("daclip_plugin.cli", "daclip_plugin.widget"):
                problems.append(f"{module} imports {target}")
            elif area in ALLOWED and other not in ALLOWED[area]:
                problems.append(f"{module} imports {target} ({area} may import {sorted(ALLOWED[area])})")
    assert not problems, "\n".join(problems)


def test_ruff_passes():
    """The configuration in pyproject.toml, on every Python file of the project."""
    root = PACKAGE.parent
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "daclip_plugin", "hooks", "tests", "benchmarks", "scripts"],
                            cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_documented_paths_still_work():
    """The README's module paths, kept by thin re-exports where the code moved into subpackages."""
    import importlib

    documented = {
        "daclip_plugin.pipeline": ["load_pipeline", "load_classifier", "DaclipPipeline"],
        "daclip_plugin.mars": ["sample_mars"],
        "daclip_plugin.sample_data": ["sample_images", "sample_paths", "sample_image"],
        "daclip_plugin.evaluation": ["evaluate", "make_benchmark", "find_pairs", "psnr", "ssim"],
        "daclip_plugin.stacks": ["restore_stack"],
        "daclip_plugin.api": ["preferred_restorer"],
        "daclip_plugin.weights": ["load", "download", "status", "list_models"],
    }
    for module, names in documented.items():
        imported = importlib.import_module(module)
        assert all(callable(getattr(imported, name)) for name in names), module


def test_no_module_of_the_package_is_over_500_lines():
    lines = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert not {name: n for name, n in lines.items() if n > 500}
