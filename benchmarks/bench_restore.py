"""Time and memory of whole DA-CLIP restorations at the released universal-ir shapes, by sampler.

Builds DA-CLIP ViT-B-32 and the universal-ir UNet with random weights (the numbers depend
only on the shapes) and restores a random image end to end (DA-CLIP, then sampling), once per
(size, precision, sampler), after one warm-up UNet call. With several samplers the runs are
interleaved, so a machine's changing load touches all of them alike, and each row gives its
speed-up over the first one. Reports wall time, time per UNet call and peak memory (CUDA:
``torch.cuda.max_memory_allocated``). Prints a markdown table.

    python benchmarks/bench_restore.py --device cpu --sizes 256 --samplers posterior mars --steps 10 20
    python benchmarks/bench_restore.py --device cuda --sizes 512 1024 --precisions fp32 bf16 --timesteps 10
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from daclip_plugin.engine.pipeline import OFFICIAL_SDE, DaclipPipeline  # noqa: E402
from daclip_plugin.engine.samplers import SAMPLERS  # noqa: E402
from daclip_plugin.engine.sde import IRSDESchedule  # noqa: E402
from daclip_plugin.errors import Cancelled  # noqa: E402
from daclip_plugin.nn.daclip import DaCLIP  # noqa: E402
from daclip_plugin.nn.unet import ConditionalUNet  # noqa: E402
from daclip_plugin.weights import checkpoints  # noqa: E402


def build(device: str, timesteps: int) -> DaclipPipeline:
    torch.manual_seed(0)
    daclip = DaCLIP(checkpoints.RELEASED_DACLIP_CONFIGS["daclip_ViT-B-32"]).to(device)
    unet = ConditionalUNet(**checkpoints.RELEASED_UNET_CONFIGS["universal-ir"]).to(device)
    return DaclipPipeline(daclip, unet, IRSDESchedule.from_config({**OFFICIAL_SDE, "T": timesteps}))


def run(pipeline: DaclipPipeline, size: int, precision: str, tile: int, sampler: str, options: dict) -> dict:
    device = pipeline.device
    image = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    calls = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    pipeline.restore(image, sampler=sampler, sampler_options=options, precision=precision, tile_size=tile,
                     progress=lambda done, total: calls.append(total))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return {"seconds": seconds, "calls": calls[-1], "per_call": seconds / calls[-1], "peak_mib": peak}


def warm_up(pipeline: DaclipPipeline, size: int, precision: str, tile: int) -> None:
    """Run DA-CLIP and one sampling step, so lazy initialisation is not timed."""
    steps = []
    try:
        pipeline.restore(np.zeros((size, size, 3), np.float32), precision=precision, tile_size=tile,
                         progress=lambda done, total: steps.append(done), should_stop=lambda: bool(steps))
    except Cancelled:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--precisions", nargs="+", default=["fp32"])
    parser.add_argument("--samplers", nargs="+", default=["posterior"], choices=list(SAMPLERS))
    parser.add_argument("--steps", type=int, nargs="+", default=[10], help="network calls of the samplers that take steps")
    parser.add_argument("--timesteps", type=int, default=OFFICIAL_SDE["T"], help="the schedule's T (posterior, sde: T calls)")
    parser.add_argument("--tile", type=int, default=0, help="tile size (0: whole image)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds; the median time is shown")
    args = parser.parse_args()

    pipeline = build(args.device, args.timesteps)
    variants = []
    for name in args.samplers:
        takes_steps = any(option.name == "steps" for option in SAMPLERS[name].options)
        variants += [(name, {"steps": n}) for n in args.steps] if takes_steps else [(name, {})]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device {args.device} ({device}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"T={args.timesteps}, tile {args.tile or 'none'}, random weights at universal-ir shapes, "
          f"median of {args.repeats} interleaved round(s)")
    print("| size | precision | sampler | network calls | restoration (s) | per call (s) | speed-up | peak GPU memory (MiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in args.sizes:
        for precision in args.precisions:
            warm_up(pipeline, size, precision, args.tile)
            rounds = [[run(pipeline, size, precision, args.tile, name, options) for name, options in variants]
                      for _ in range(args.repeats)]
            medians = [float(np.median([r[k]["seconds"] for r in rounds])) for k in range(len(variants))]
            for k, (name, _options) in enumerate(variants):
                last = rounds[-1][k]
                print(f"| {size}² | {precision} | {name} | {last['calls']} | {medians[k]:.2f} | "
                      f"{medians[k] / last['calls']:.3f} | {medians[0] / medians[k]:.1f}x | {last['peak_mib']:.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
