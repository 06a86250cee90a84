"""Time and memory of a whole DA-CLIP restoration at the released universal-ir shapes.

Builds DA-CLIP ViT-B-32 and the universal-ir UNet with random weights (the numbers depend
only on the shapes) and restores a random image with the posterior sampler, once per
(size, precision), after one warm-up UNet call. Reports wall time, time per UNet call and
peak memory (CUDA: ``torch.cuda.max_memory_allocated``). Prints a markdown table.

    python benchmarks/bench_restore.py --device cuda --sizes 512 1024 --precisions fp32 bf16
    python benchmarks/bench_restore.py --device cpu --sizes 128 --steps 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from daclip_plugin import checkpoints  # noqa: E402
from daclip_plugin.daclip_model import DaCLIP  # noqa: E402
from daclip_plugin.errors import Cancelled  # noqa: E402
from daclip_plugin.pipeline import OFFICIAL_SDE, DaclipPipeline  # noqa: E402
from daclip_plugin.sde import IRSDESchedule  # noqa: E402
from daclip_plugin.unet import ConditionalUNet  # noqa: E402


def build(device: str, steps: int) -> DaclipPipeline:
    torch.manual_seed(0)
    daclip = DaCLIP(checkpoints.RELEASED_DACLIP_CONFIGS["daclip_ViT-B-32"]).to(device)
    unet = ConditionalUNet(**checkpoints.RELEASED_UNET_CONFIGS["universal-ir"]).to(device)
    return DaclipPipeline(daclip, unet, IRSDESchedule.from_config({**OFFICIAL_SDE, "T": steps}))


def run(pipeline: DaclipPipeline, size: int, precision: str, tile: int) -> dict:
    device = pipeline.device
    image = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    pipeline.restore(image, precision=precision, tile_size=tile)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return {"seconds": seconds, "per_call": seconds / pipeline.schedule.T, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--precisions", nargs="+", default=["fp32"])
    parser.add_argument("--steps", type=int, default=OFFICIAL_SDE["T"], help="sampling steps (T)")
    parser.add_argument("--tile", type=int, default=0, help="tile size (0: whole image)")
    args = parser.parse_args()

    pipeline = build(args.device, args.steps)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device {args.device} ({name}), torch {torch.__version__}, {args.steps} posterior steps, "
          f"tile {args.tile or 'none'}, random weights at universal-ir shapes")
    print("| size | precision | restoration (s) | per UNet call (s) | peak GPU memory (MiB) |")
    print("| --- | --- | --- | --- | --- |")
    for size in args.sizes:
        for precision in args.precisions:
            warm_up(pipeline, size, precision, args.tile)
            result = run(pipeline, size, precision, args.tile)
            print(f"| {size}² | {precision} | {result['seconds']:.2f} | {result['per_call']:.4f} | "
                  f"{result['peak_mib']:.0f} |", flush=True)


def warm_up(pipeline: DaclipPipeline, size: int, precision: str, tile: int) -> None:
    """Run DA-CLIP and one sampling step, so lazy initialisation is not timed."""
    steps = []
    try:
        pipeline.restore(np.zeros((size, size, 3), np.float32), precision=precision, tile_size=tile,
                         progress=lambda done, total: steps.append(done), should_stop=lambda: bool(steps))
    except Cancelled:
        pass


if __name__ == "__main__":
    main()
