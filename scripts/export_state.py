"""Export the model of a training state file (``<out>/<stage>_state.pt``) as a weight file.

Writes what ``daclip train`` writes at the end of a stage (the official layout through
:func:`daclip_plugin.training.save_model`, float16 by default), e.g. to ship a provisional
file while training goes on::

    python scripts/export_state.py outputs/cpu_direct/direct_state.pt daclip_plugin/models/tiny/direct_tiny.pth

Prints a JSON line: stage, step, training seconds, file size and SHA-256.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from daclip_plugin import training
from daclip_plugin.nn.unet import ConditionalUNet
from daclip_plugin.weights.integrity import sha256_file


def export(state_path: Path, out: Path, dtype: str = "float16") -> dict:
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    stage = state["stage"]
    model = training.build_daclip(state["model_cfg"]) if stage == "daclip" else ConditionalUNet(**state["model_cfg"])
    model.load_state_dict(state["model"])
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    training.save_model(model, out, dtype)
    return {
        "stage": stage,
        "steps": int(state["step"]),
        "train_seconds": round(float(state["train_seconds"]), 2),
        "seed": int(state["seed"]),
        "model_cfg": state["model_cfg"],
        "file": out.name,
        "file_bytes": out.stat().st_size,
        "file_dtype": dtype,
        "file_sha256": sha256_file(out),
        "recent_loss": float(sum(state["loss_tail"][-4:]) / len(state["loss_tail"][-4:])) if state.get("loss_tail") else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state", type=Path, help="a <stage>_state.pt file written by daclip train")
    parser.add_argument("out", type=Path, help="the weight file to write")
    parser.add_argument("--dtype", default="float16", help="float16 (default) or float32")
    args = parser.parse_args(argv)
    print(json.dumps(export(args.state, args.out, args.dtype)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
