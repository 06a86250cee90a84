"""Time and memory of one UNet forward pass: memory-efficient vs naive N x N attention.

Builds the universal-ir UNet (nf 64, ch_mult [1, 2, 4, 8], context_dim 512) with random
weights and runs it without gradients in float32. Each (size, attention) configuration runs
in a fresh subprocess, so peak memory is that configuration's alone: on CPU the increase of
the process' peak resident set size during the forward calls, on CUDA the increase of
``torch.cuda.max_memory_allocated``. Prints a markdown table.

    python benchmarks/bench_unet_attention.py --sizes 128 256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from daclip_plugin.nn import unet  # noqa: E402

CONFIG = dict(in_nc=3, out_nc=3, nf=64, ch_mult=[1, 2, 4, 8], context_dim=512,
              use_degra_context=True, use_image_context=True)


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Baseline: the official computation, materialising the full N x N attention map."""
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v


def measure(size: int, attention: str, device: str, repeats: int) -> dict:
    """Run ``repeats`` forward calls in this process; return the median time and peak memory."""
    if attention == "naive":
        unet.attention = naive_attention
    torch.manual_seed(0)
    model = unet.ConditionalUNet(**CONFIG).to(device).eval()
    xt, cond = torch.randn(2, 1, 3, size, size, device=device)
    text, image = torch.randn(2, 1, 512, device=device)
    cuda = device.startswith("cuda")
    if cuda:
        with torch.no_grad():  # warm-up: kernel selection and allocator
            model(xt, cond, 50, text, image)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            model(xt, cond, 50, text, image)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"seconds": statistics.median(times), "peak_mib": (peak - baseline) / 2**20}


def run_in_subprocess(size: int, attention: str, args: argparse.Namespace) -> dict:
    """Measure one configuration in a fresh Python process; failures (e.g. OOM) are reported."""
    command = [sys.executable, __file__, "--worker", attention, "--sizes", str(size),
               "--repeats", str(args.repeats), "--device", args.device]
    if args.threads:
        command += ["--threads", str(args.threads)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        return {"error": reason[:80]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512],
                        help="square image sizes in pixels")
    parser.add_argument("--repeats", type=int, default=3, help="timed forward calls per configuration")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--worker", choices=["sdpa", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(measure(args.sizes[0], args.worker, args.device, args.repeats)))
        return

    memory = "peak GPU memory increase" if args.device.startswith("cuda") else "peak RSS increase"
    print(f"device {args.device}, torch {torch.__version__}, threads {args.threads or torch.get_num_threads()},"
          f" batch 1, fp32, median of {args.repeats}\n")
    print(f"| size | attention | median time (s) | {memory} (MiB) |")
    print("| --- | --- | --- | --- |")
    for size in args.sizes:
        for attention, label in (("sdpa", "memory-efficient (SDPA)"), ("naive", "naive N x N")):
            r = run_in_subprocess(size, attention, args)
            if "error" in r:
                print(f"| {size}² | {label} | failed: {r['error']} | |", flush=True)
            else:
                print(f"| {size}² | {label} | {r['seconds']:.3f} | {r['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
