"""Throughput of restoring a folder: the in-process loop against Dask with 1 and 2 local workers.

Writes ``--count`` benchmark images (held-out photographs, degraded as ``daclip
make-benchmark`` does) and restores them with the embedded model's direct restorer: once in
this process (one file after another, as ``daclip restore`` does without ``--workers``) and
with :func:`daclip_plugin.distributed.restore_files` on local clusters of 1 and 2 worker
processes. Every variant first restores one image, so model loading is not timed; the time
to start a cluster is reported on its own. The per-file overhead of the distributed path is
the 1-worker time per file minus the in-process time per file (both with every core).

    python benchmarks/bench_distributed.py --count 20 --size 256
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from daclip_plugin import batch, distributed, evaluation, imagefiles, outputs  # noqa: E402

OPTIONS = {"model": "tiny", "device": "cpu"}


def in_process(files: list[Path], out: Path) -> float:
    headers = [imagefiles.probe(path) for path in files]
    planned = outputs.plan(files, headers, os.path.join(out, ""))
    batch.restore_file(planned[0], "daclip-direct", OPTIONS)  # load the model
    start = time.perf_counter()
    for item in planned:
        batch.restore_file(item, "daclip-direct", OPTIONS, "daclip", {"model": "tiny", "device": "cpu"})
    return time.perf_counter() - start


def on_dask(files: list[Path], out: Path, workers: int) -> tuple[float, float]:
    start = time.perf_counter()
    with distributed.connect(workers=workers) as client:  # as restore_files(..., workers=N) starts it
        client.wait_for_workers(workers)
        started = time.perf_counter() - start
        # each worker loads the model on its first file: warm them all up, untimed
        distributed.restore_files(files[:workers], out / "warm", client=client, **OPTIONS)
        start = time.perf_counter()
        results = distributed.restore_files(files, out / "run", client=client, **OPTIONS)
        seconds = time.perf_counter() - start
    assert all(result.status == "restored" for result in results), results
    return started, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        per_type = -(-args.count // 10)
        evaluation.make_benchmark(root / "bench", seed=0, per_type=per_type, size=args.size)
        (root / "flat").mkdir()
        files = []
        for path in sorted((root / "bench").glob("*/LQ/*.png"))[: args.count]:  # one folder, unique names
            files.append(root / "flat" / f"{path.parent.parent.name}_{path.name}")
            shutil.copy(path, files[-1])
        loop = in_process(files, root / "loop")
        rows = [("in-process loop", None, loop)]
        for workers in (1, 2):
            started, seconds = on_dask(files, root / f"dask{workers}", workers)
            rows.append((f"Dask, {workers} worker(s)", started, seconds))
    print(f"{len(files)} images of {args.size} px, embedded model 'tiny' (daclip-direct), {os.cpu_count()} cores, "
          f"torch {torch.__version__}")
    print("| run | cluster start (s) | restoring (s) | files per minute | vs in-process |")
    print("| --- | --- | --- | --- | --- |")
    for name, started, seconds in rows:
        print(f"| {name} | {'' if started is None else f'{started:.1f}'} | {seconds:.1f} | "
              f"{60 * len(files) / seconds:.0f} | {loop / seconds:.2f}x |")
    print(f"overhead per file of the distributed path (1 worker): {(rows[1][2] - loop) / len(files) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
