"""How close each sampler gets to the exact distribution, on a problem with a known noise predictor.

Each pixel's clean value is drawn from a 1-D mixture of Gaussians and the degraded image is
fixed; the exact noise predictor of the IR-SDE forward process is known in closed form (see
``tests/gaussian_mixture.py``). Every sampler runs with that predictor in place of a network;
the table gives its network calls, wall time and the 1-D Wasserstein distance between its
output (pooled over pixels) and the true mixture, averaged over seeds. Values lie in [0, 1]:
0.004 is one grey level of an 8-bit image.

    python benchmarks/bench_samplers.py
    python benchmarks/bench_samplers.py --size 96 --seeds 5 --calls 5 10 20 40
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

root = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(root), str(root / "tests")]
from gaussian_mixture import MixtureProblem, wasserstein_to_mixture  # noqa: E402

from daclip_plugin.engine.mars import sample_mars  # noqa: E402
from daclip_plugin.engine.sde import sample_posterior, sample_reverse_sde  # noqa: E402


def measure(sampler, problem: MixtureProblem, seeds: int, **options) -> tuple[int, float, float]:
    """(network calls, seconds per run, mean distance) over ``seeds`` runs."""
    calls, distances, start = [0], [], time.perf_counter()

    def noise_fn(x, t):
        calls[0] += 1
        return problem.noise_fn(x, t)

    for seed in range(seeds):
        out = sampler(noise_fn, problem.mu, problem.schedule, generator=torch.Generator().manual_seed(seed), **options)
        distances.append(wasserstein_to_mixture(out))
    return calls[0] // seeds, (time.perf_counter() - start) / seeds, float(np.mean(distances))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="image side (3 channels): the pooled sample size")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--calls", type=int, nargs="+", default=[5, 10, 20], help="MaRS network calls")
    args = parser.parse_args()

    problem = MixtureProblem.build(args.size)
    rows = [("posterior", sample_posterior, {}), ("sde (Euler-Maruyama)", sample_reverse_sde, {})]
    for solver in ("ode", "sde"):
        rows += [(f"mars {solver}, order 2", sample_mars, {"solver": solver, "steps": n}) for n in args.calls]
    for label, options in (
        ("karras-t", {"time_schedule": "karras-t"}),
        ("noise parameterization", {"parameterization": "noise"}),
    ):
        rows += [(f"mars ode, order 2, {label}", sample_mars, {**options, "steps": n}) for n in args.calls]
    print(f"{args.size}x{args.size}x3 pixels, {args.seeds} seeds, exact noise predictor, torch {torch.__version__}")
    print("| sampler | network calls | time per run (s) | Wasserstein distance to the truth |")
    print("| --- | --- | --- | --- |")
    for label, sampler, options in rows:
        calls, seconds, distance = measure(sampler, problem, args.seeds, **options)
        print(f"| {label} | {calls} | {seconds:.3f} | {distance:.4f} |", flush=True)


if __name__ == "__main__":
    main()
