"""What tiling changes: tiled against untiled restorations of the embedded model's direct restorer.

Restores 1024 x 1024 benchmark images (held-out photographs, enlarged and degraded, as
``daclip make-benchmark`` makes them) in one pass and in 512 px tiles with several overlaps,
all sharing one DA-CLIP estimate. Reports, per overlap, the PSNR of the tiled result
against the untiled one, and the seam measure: each image's mean absolute step between
neighbouring pixel lines (rows and columns), at the tiles' cut edges against the largest
such step anywhere else in the image. A visible seam is a line whose step stands out; a
ratio at or below 1 means the borders are no rougher than the image's own lines.

    python benchmarks/bench_seams.py --overlaps 32 64 128 --types noisy hazy rainy low-light
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from daclip_plugin import evaluation  # noqa: E402
from daclip_plugin.engine import direct
from daclip_plugin.engine.tiling import tile_starts  # noqa: E402


def line_steps(image: np.ndarray, axis: int) -> np.ndarray:
    """Mean absolute difference between neighbouring lines along ``axis`` (0: rows, 1: columns)."""
    return np.abs(np.diff(image, axis=axis)).mean(axis=(1 - axis, 2))


def cut_edges(size: int, tile: int, overlap: int) -> set[int]:
    """Indices ``i`` of the steps between pixel ``i`` and ``i + 1`` where a tile begins or ends."""
    starts = tile_starts(size, tile, overlap)
    if len(starts) == 1:
        return set()
    return {s - 1 for s in starts if s > 0} | {s + tile - 1 for s in starts if s + tile < size}


def seam_ratio(image: np.ndarray, tile: int, overlap: int) -> tuple[float, float]:
    """(largest step at cut edges, largest step elsewhere), over rows and columns."""
    at_edges, elsewhere = [], []
    for axis in (0, 1):
        steps = line_steps(image, axis)
        edges = cut_edges(image.shape[axis], tile, overlap)
        at_edges += [steps[i] for i in edges]
        elsewhere += [s for i, s in enumerate(steps) if i not in edges]
    return max(at_edges), max(elsewhere)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlaps", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--types", nargs="+", default=["noisy", "hazy", "rainy", "low-light"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    engine = direct.load_model("tiny", device="cpu")
    rows = {overlap: [] for overlap in args.overlaps}
    with tempfile.TemporaryDirectory() as folder:
        evaluation.make_benchmark(folder, seed=args.seed, per_type=1, size=args.size, degradations=args.types)
        for kind, pairs in evaluation.find_pairs(folder).items():
            lq = np.asarray(Image.open(pairs[0][0]).convert("RGB"), np.float32) / 255
            estimate = engine.conditioning(lq)
            whole = engine.restore(lq, tile_size=0, estimate=estimate)
            for overlap in args.overlaps:
                tiled = engine.restore(lq, tile_size=args.tile, tile_overlap=overlap, estimate=estimate)
                edge, other = seam_ratio(tiled, args.tile, overlap)
                whole_edge, whole_other = seam_ratio(whole, args.tile, overlap)
                rows[overlap].append((kind, peak_signal_noise_ratio(whole, tiled, data_range=1.0),
                                      edge / other, whole_edge / whole_other))
                print(f"{kind} overlap {overlap}: PSNR {rows[overlap][-1][1]:.1f} dB, seam ratio {edge / other:.2f} "
                      f"(untiled at the same lines: {whole_edge / whole_other:.2f})", file=sys.stderr, flush=True)
    print(f"{args.size} px images, {args.tile} px tiles, embedded model 'tiny', direct restorer, one shared DA-CLIP estimate")
    print("| overlap | PSNR tiled vs untiled (dB): mean, min | seam ratio tiled: max | same lines untiled: max |")
    print("| --- | --- | --- | --- |")
    for overlap, results in rows.items():
        psnrs, ratios, baseline = [r[1] for r in results], [r[2] for r in results], [r[3] for r in results]
        print(f"| {overlap} | {np.mean(psnrs):.1f}, {min(psnrs):.1f} | {max(ratios):.2f} | {max(baseline):.2f} |")


if __name__ == "__main__":
    main()
