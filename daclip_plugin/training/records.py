"""What a run leaves behind: saved models, the JSON-lines log and provenance."""

from __future__ import annotations

import copy
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import persist
from ..nn.daclip import DaCLIP
from ..weights import checkpoints
from ..weights.integrity import sha256_file
from .config import FILE_NAMES, PROVENANCE_NAME


def save_model(model: nn.Module, path: Path, dtype: str = "float16") -> None:
    """Write a DA-CLIP or UNet in the official layout, cast to ``dtype`` (a copy; aliases kept)."""
    copy_ = copy.deepcopy(model).to("cpu", getattr(torch, dtype))
    if isinstance(copy_, DaCLIP):
        checkpoints.save_daclip(copy_, path)
    else:
        checkpoints.save_unet(copy_, path)


class TrainingLog:
    """JSON-lines log of losses and events, plus throttled progress lines on stdout."""

    def __init__(self, path: Path, stage: str, quiet: bool, print_seconds: float):
        self.path, self.stage, self.quiet, self.print_seconds = path, stage, quiet, print_seconds
        self._last_print = -math.inf

    def write(self, record: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"stage": self.stage, **record}) + "\n")

    def say(self, message: str, force: bool = True) -> None:
        now = time.monotonic()
        if self.quiet or (not force and now - self._last_print < self.print_seconds):
            return
        self._last_print = now
        print(f"[{self.stage}] {message}", flush=True)


def weights_record(path: Path) -> dict:
    """What provenance records of a saved model used as a start: its name, SHA-256 and, when
    a ``provenance.json`` beside it describes it, that entry."""
    path = Path(path)
    info: dict[str, Any] = {"file": path.name, "sha256": sha256_file(path)}
    record = path.with_name(PROVENANCE_NAME)
    if record.is_file():
        try:
            stages = json.loads(record.read_text()).get("stages", {})
        except ValueError:
            stages = {}
        info["provenance"] = next((entry for entry in stages.values() if entry.get("file") == path.name), None)
    return info


def write_provenance(out: Path, stage: str, entry: dict) -> None:
    """Add or replace ``stage``'s entry in ``out/provenance.json`` (written atomically)."""
    path = out / PROVENANCE_NAME
    data: dict = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    data.setdefault("format", 1)
    data.setdefault("stages", {})[stage] = entry
    data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    data["files"] = {s: FILE_NAMES[s] for s in data["stages"]}
    persist.write_text(path, json.dumps(data, indent=1))


def environment(device: torch.device) -> dict:
    import open_clip

    info = {
        "device": str(device),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info
