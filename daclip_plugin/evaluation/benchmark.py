"""Benchmark folders in the official layout (``ROOT/<degradation>/LQ|GT/*.png``): writing and reading them."""


from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from ..errors import DaclipError, InvalidImageError, InvalidOptionError, OutputError

PathLike = Union[str, "os.PathLike[str]"]
LQ, GT = "LQ", "GT"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MANIFEST = "benchmark.json"
METRICS = ("psnr_in", "psnr_out", "ssim_in", "ssim_out")


#: Bounds of make_benchmark (a 4096 px crop is larger than any held-out photograph anyway).
MAX_SIZE = 4096
MAX_PER_TYPE = 10_000


class BenchmarkLayoutError(InvalidImageError):
    """The benchmark folder does not have the ``<degradation>/LQ``, ``<degradation>/GT`` layout."""


# ------------------------------------------------------------------------------ benchmarks


def _crop(images: Sequence[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    from ..data.sources import random_crops

    crop = random_crops(images, size, 1, rng)[0]
    if rng.integers(2):
        crop = crop[:, ::-1]
    if rng.integers(2):
        crop = crop[::-1]
    # the clean image is what the GT file will hold: 8-bit
    return np.rint(np.ascontiguousarray(crop) * 255).astype(np.float32) / 255


def _clear_earlier(root: Path, overwrite: bool) -> None:
    """Refuse to mix a new benchmark into an earlier one at ``root``; with ``overwrite``, remove the earlier one's files."""
    from ..data import degradations as deg
    from ..outputs import check_writable

    if root.exists() and not root.is_dir():
        raise OutputError(f"{root} is a file: give a folder for the benchmark")
    check_writable(root / MANIFEST)
    earlier = [root / MANIFEST] if (root / MANIFEST).exists() else []
    for name in deg.DEGRADATIONS:
        for kind in (GT, LQ):
            earlier += [path for path in (root / name / kind).glob("[0-9][0-9][0-9][0-9].png") if path.is_file()]
    if earlier and not overwrite:
        raise OutputError(
            f"{root} already holds a benchmark ({len(earlier)} files): use --overwrite to replace it, or choose another folder"
        )
    for path in earlier:
        path.unlink()


def make_benchmark(
    root: PathLike,
    *,
    seed: int,
    per_type: int = 20,
    size: int = 256,
    degradations: Optional[Sequence[str]] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    overwrite: bool = False,
) -> dict:
    """Write a benchmark in the official layout into ``root``; return its description.

    A folder that already holds a benchmark (or any of its pairs) is refused unless
    ``overwrite``, which first removes the pairs and description an earlier run wrote (and
    nothing else), so that two runs are never mixed.

    For each degradation type (default: all 10), ``per_type`` random ``size`` x ``size``
    crops of the held-out photographs (random image, position and horizontal/vertical
    flips), degraded with random parameters; image ``k`` of type ``i`` depends only on
    ``(seed, i, k)``. Files: ``root/<type>/GT/<k>.png`` and ``root/<type>/LQ/<k>.png``
    (8-bit RGB), plus ``root/benchmark.json`` describing how they were made.
    """
    from .. import imagefiles
    from ..data import degradations as deg
    from ..data import sources

    if not (1 <= per_type <= MAX_PER_TYPE and 8 <= size <= MAX_SIZE):
        raise InvalidOptionError(
            f"need 1 <= per_type <= {MAX_PER_TYPE} and 8 <= size <= {MAX_SIZE}, got per_type={per_type}, size={size}"
        )
    names = list(deg.DEGRADATIONS if degradations is None else degradations)
    unknown = [name for name in names if name not in deg.DEGRADATIONS]
    if unknown:
        raise DaclipError(f"unknown degradation(s) {', '.join(unknown)}; valid: {', '.join(deg.DEGRADATIONS)}")
    if int(seed) < 0:
        raise InvalidOptionError(f"seed must be a non-negative integer, got {seed}")
    root = Path(root)
    _clear_earlier(root, overwrite)
    images = list(sources.clean_images("eval").values())
    total, done = len(names) * per_type, 0
    for name in names:
        index = deg.DEGRADATIONS.index(name)
        for k in range(per_type):
            rng = np.random.default_rng([int(seed), index, k])
            clean = _crop(images, size, rng)
            degraded = deg.degrade(clean, name, rng)
            file = f"{k:04d}.png"
            imagefiles.write_image(root / name / GT / file, np.rint(clean * 255).astype(np.uint8))
            imagefiles.write_image(root / name / LQ / file, np.rint(degraded * 255).astype(np.uint8))
            done += 1
            if progress is not None:
                progress(done, total)
    description = {
        "format": 1,
        "layout": "<degradation>/LQ/*.png (degraded), <degradation>/GT/*.png (clean)",
        "seed": int(seed),
        "per_type": per_type,
        "size": size,
        "degradations": names,
        "clean_images": list(sources.EVAL_IMAGES),
        "made_by": "daclip_plugin.evaluation.make_benchmark",
    }
    (root / MANIFEST).write_text(json.dumps(description, indent=1) + "\n")
    return description


# ---------------------------------------------------------------------------- the layout


def _images(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def find_pairs(root: PathLike, limit: Optional[int] = None) -> dict[str, list[tuple[Path, Path]]]:
    """``{degradation: [(lq_path, gt_path), ...]}`` of a benchmark in the official layout.

    Degradation folders are the subfolders of ``root`` that hold ``LQ`` and ``GT`` folders
    (others are an error, except hidden ones), in the order of
    :data:`~daclip_plugin.data.degradations.DEGRADATIONS` (other names after them, sorted); LQ
    and GT images are paired by file name.
    ``limit`` keeps the first ``limit`` pairs (sorted by name) of each degradation.
    Raises :class:`BenchmarkLayoutError` saying what is wrong.
    """
    root = Path(root)
    expected = f"expected {root}/<degradation>/{LQ}/*.png and {root}/<degradation>/{GT}/*.png"
    if not root.is_dir():
        raise BenchmarkLayoutError(f"benchmark folder {root} does not exist ({expected})")
    if limit is not None and limit < 1:
        raise InvalidOptionError(f"limit must be at least 1, got {limit}")
    from ..data.degradations import DEGRADATIONS

    order = lambda p: (DEGRADATIONS.index(p.name) if p.name in DEGRADATIONS else len(DEGRADATIONS), p.name)  # noqa: E731
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=order)
    if not folders:
        raise BenchmarkLayoutError(f"{root} has no degradation folders; {expected}")
    pairs: dict[str, list[tuple[Path, Path]]] = {}
    for folder in folders:
        lq_dir, gt_dir = folder / LQ, folder / GT
        missing = [name for name, d in ((LQ, lq_dir), (GT, gt_dir)) if not d.is_dir()]
        if missing:
            raise BenchmarkLayoutError(f"{folder} has no {' and no '.join(missing)} folder; {expected}")
        lq, gt = _images(lq_dir), _images(gt_dir)
        if not lq:
            raise BenchmarkLayoutError(f"{lq_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        unmatched = sorted(set(lq) ^ set(gt))
        if unmatched:
            shown = ", ".join(unmatched[:5]) + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
            raise BenchmarkLayoutError(
                f"{folder}: the {LQ} and {GT} folders must hold the same file names; unmatched: {shown}"
            )
        names = sorted(lq)[:limit] if limit is not None else sorted(lq)
        pairs[folder.name] = [(lq[name], gt[name]) for name in names]
    return pairs
