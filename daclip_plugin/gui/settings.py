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
from typing import Any, Mapping

from platformdirs import user_config_dir

from .. import persist

ENV_CONFIG_DIR = "DACLIP_CONFIG_DIR"

#: The settings kept between sessions (the widget's controls of these names).
REMEMBERED = (
    "restorer", "model", "sampler", "steps", "seed", "device", "precision", "memory_budget", "slices", "conditioning",
    "intensity", "follow",
)


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
        persist.write_text(path, json.dumps(values, indent=1, sort_keys=True))
    except OSError:
        pass


def apply(controls: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """Give each control its saved value where that value is still valid (one of its choices, in its range)."""
    for key, control in controls.items():
        value = values.get(key)
        if hasattr(control, "choices"):
            if value in [choice[1] if isinstance(choice, tuple) else choice for choice in control.choices]:
                control.value = value
        elif isinstance(control.value, bool):
            control.value = value is True
        elif isinstance(value, int) and not isinstance(value, bool) and control.min <= value <= control.max:
            control.value = value
