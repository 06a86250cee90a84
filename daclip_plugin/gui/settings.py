"""The widget's settings, kept between sessions in a small JSON file.

The file is ``widget.json`` in ``DACLIP_CONFIG_DIR`` if set, else in the user's
configuration folder (``~/.config/daclip-plugin`` on Linux). A missing or unreadable file
means the defaults; values that are no longer valid (an uninstalled restorer, a model
that is gone) are skipped by the widget.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from platformdirs import user_config_dir

ENV_CONFIG_DIR = "DACLIP_CONFIG_DIR"


def settings_path() -> Path:
    folder = os.environ.get(ENV_CONFIG_DIR) or user_config_dir("daclip-plugin", appauthor=False)
    return Path(folder) / "widget.json"


def load() -> dict[str, Any]:
    """The saved settings (empty when there are none or they cannot be read)."""
    try:
        data = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(values: dict[str, Any]) -> None:
    """Write ``values`` atomically; failing to save (read-only home, ...) is not an error."""
    path = settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(values, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        pass
