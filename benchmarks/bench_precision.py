"""What a reduced precision costs: restorations at ``--precision`` against the fp32 ones.

Restores every LQ image of a benchmark folder (the official layout; ``daclip make-benchmark``
writes one) twice with the same restorer and model, once in ``fp32`` and once in
``--precision``, and reports per degradation the PSNR of the reduced-precision restoration
against the fp32 one (higher is closer; ``inf``: identical), the PSNR of both against the
ground truth, and the time of each. Prints a markdown table.

    daclip make-benchmark outputs/eval/bench --seed 1 --per-type 20 --size 256
    python benchmarks/bench_precision.py outputs/eval/bench --restorer daclip-direct --model tiny --precision bf16
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import daclip_plugin  # noqa: E402
from daclip_plugin.evaluation.benchmark import find_pairs  # noqa: E402
from daclip_plugin.evaluation.metrics import as_rgb, psnr  # noqa: E402
from daclip_plugin.imagefiles import read_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a benchmark folder: ROOT/<degradation>/{LQ,GT}/*.png")
    parser.add_argument("--restorer", default="daclip-direct")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--limit", type=int, help="images per degradation")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    options = {"model": args.model, "device": args.device}
    print(f"restorer {args.restorer}, model {args.model}: {args.precision} against fp32\n")
    print(f"| degradation | images | PSNR {args.precision} vs fp32 (mean / min) | PSNR to GT fp32 | "
          f"PSNR to GT {args.precision} | time fp32 | time {args.precision} |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    everything = []
    for degradation, pairs in find_pairs(args.root, args.limit).items():
        rows = []
        for lq_path, gt_path in pairs:
            lq, gt = read_image(lq_path), as_rgb(read_image(gt_path))
            restored, seconds = {}, {}
            for precision in ("fp32", args.precision):
                start = time.perf_counter()
                restored[precision] = as_rgb(daclip_plugin.restore(lq, args.restorer, precision=precision, **options))
                seconds[precision] = time.perf_counter() - start
            exact, reduced = restored["fp32"], restored[args.precision]
            rows.append((psnr(reduced, exact), psnr(exact, gt), psnr(reduced, gt), seconds["fp32"], seconds[args.precision]))
        everything += rows
        print(_row(degradation, rows), flush=True)
    print(_row("**all**", everything))


def _row(name: str, rows: list[tuple]) -> str:
    closeness = [row[0] for row in rows]
    finite = [value for value in closeness if math.isfinite(value)]
    mean = f"{np.mean(finite):.1f}" if finite else "inf"
    columns = [np.mean([row[k] for row in rows]) for k in (1, 2, 3, 4)]
    return (f"| {name} | {len(rows)} | {mean} / {min(closeness):.1f} dB | {columns[0]:.2f} | {columns[1]:.2f} | "
            f"{columns[2]:.3f} s | {columns[3]:.3f} s |")


if __name__ == "__main__":
    main()
