"""Weight interpolation of two fine-tunings of one restorer (WiSE-FT, Wortsman et al. 2022).

``(1 - alpha) * first + alpha * second``, tensor by tensor: between a conservative restorer
and a bolder fine-tuning of it, an ``alpha`` below 1 often keeps most of the bold one's gains
while dropping its worst mistakes. Both must be the same UNet, trained for the same stage
against the same DA-CLIP (as their ``provenance.json`` records say, when they have one).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch

from .. import training
from ..errors import DaclipError
from ..weights import checkpoints
from ..weights.integrity import sha256_file

#: Provenance fields both sources must agree on, copied into the result's entry (their
#: losses may differ: each source's entry stays on record under ``sources``).
SHARED_FIELDS = ("model_cfg", "daclip_file", "daclip_sha256", "clip_view")


def interpolate(
    first: Path,
    second: Path,
    alpha: float,
    out: Path,
    stage: str = "direct",
    daclip: Optional[Path] = None,
    eval_per_class: int = 4,
    eval_size: int = 128,
    command: Optional[list] = None,
) -> dict:
    """Write ``out/<stage file>`` and its ``provenance.json`` entry; returns the entry.

    With ``daclip`` and ``eval_per_class > 0`` the result is evaluated on held-out crops as
    ``daclip train --eval-per-class N --eval-size PX`` would.
    """
    first, second, out = Path(first), Path(second), Path(out)
    if not 0.0 <= alpha <= 1.0:
        raise DaclipError(f"--alpha must lie in [0, 1], got {alpha}")
    if stage not in ("irsde", "direct"):
        raise DaclipError("interpolation is for the UNet stages (irsde, direct)")
    for path in (first, second):
        if not path.is_file():
            raise DaclipError(f"{path} not found")
    a, b = (checkpoints.load_unet(path).float() for path in (first, second))
    state_a, state_b = a.state_dict(), b.state_dict()
    if {k: v.shape for k, v in state_a.items()} != {k: v.shape for k, v in state_b.items()}:
        raise DaclipError(f"{first} and {second} are not the same UNet (their tensors differ in names or shapes)")
    records = {"first": training.weights_record(first), "second": training.weights_record(second)}
    entries = [record.get("provenance") or {} for record in records.values()]
    shared = {}
    for field in SHARED_FIELDS:
        values = [entry.get(field) for entry in entries]
        if values[0] is not None and values[1] is not None and values[0] != values[1]:
            raise DaclipError(f"{first} and {second} differ in {field} ({values[0]!r} vs {values[1]!r}): not one lineage")
        shared[field] = values[0] if values[0] is not None else values[1]
    if daclip is not None:
        if not Path(daclip).is_file():
            raise DaclipError(f"{daclip} not found")
        recorded, given = shared.get("daclip_sha256"), sha256_file(Path(daclip))
        if recorded is not None and recorded != given:
            raise DaclipError(f"{daclip} is not the DA-CLIP that {first.name} and {second.name} were trained against")
    mixed = {k: torch.lerp(v, state_b[k], alpha) if v.is_floating_point() else v for k, v in state_a.items()}
    a.load_state_dict(mixed)
    out.mkdir(parents=True, exist_ok=True)
    path = out / training.FILE_NAMES[stage]
    training.save_model(a, path)  # written atomically
    entry = {
        "command": command,
        "method": "(1 - alpha) * first + alpha * second, tensor by tensor in float32 (WiSE-FT), saved as float16",
        "alpha": alpha,
        "seed": None,
        "steps": 0,
        **shared,
        "sources": records,
        "file": path.name,
        "file_bytes": path.stat().st_size,
        "file_dtype": "float16",
        "file_sha256": sha256_file(path),
        "device": "cpu",
        "eval": None,
    }
    if daclip is not None and eval_per_class > 0:
        start = time.monotonic()
        model = training.reloaded_daclip(Path(daclip), "cpu")
        clip_view = shared.get("clip_view") or "resize"
        entry["eval"] = training.evaluate_saved_unet(
            stage, path, model, eval_per_class, eval_size, 0, torch.device("cpu"), clip_view
        )
        entry["eval"]["seconds"] = round(time.monotonic() - start, 2)
    training.write_provenance(out, stage, entry)
    return entry
