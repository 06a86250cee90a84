"""Benchmarks in the official layout, and evaluating any restorer and classifier on them.

The official DA-CLIP test sets are folders ``ROOT/<degradation>/LQ/*.png`` (degraded inputs)
and ``ROOT/<degradation>/GT/*.png`` (the clean images, same file names). :func:`make_benchmark`
writes one from the held-out clean photographs (:func:`daclip_plugin.degradations.clean_images`
``("eval")``, never used for training) with the seeded degradation generators;
:func:`evaluate` runs a restorer and a classifier through the public API
(:func:`daclip_plugin.restore` / :func:`daclip_plugin.classify`), so any plugin's restorer
can be evaluated, and reports per degradation and on average:

* PSNR and SSIM (scikit-image ``peak_signal_noise_ratio`` and ``structural_similarity``,
  ``data_range=1``, ``channel_axis=-1``, on RGB in ``[0, 1]``) of the input and of the output
  against the clean image;
* the classification accuracy (top class == folder name) and a confusion matrix
  (rows: true degradation, columns: predicted class).

The averages are the means of the per-degradation values (each type weighs the same).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from .errors import DaclipError, InvalidOptionError

PathLike = Union[str, "os.PathLike[str]"]
LQ, GT = "LQ", "GT"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MANIFEST = "benchmark.json"
METRICS = ("psnr_in", "psnr_out", "ssim_in", "ssim_out")


#: Bounds of make_benchmark (a 4096 px crop is larger than any held-out photograph anyway).
MAX_SIZE = 4096
MAX_PER_TYPE = 10_000


class BenchmarkLayoutError(DaclipError):
    """The benchmark folder does not have the ``<degradation>/LQ``, ``<degradation>/GT`` layout."""


# ------------------------------------------------------------------------------ benchmarks


def _crop(images: Sequence[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    from .degradations import random_crops

    crop = random_crops(images, size, 1, rng)[0]
    if rng.integers(2):
        crop = crop[:, ::-1]
    if rng.integers(2):
        crop = crop[::-1]
    # the clean image is what the GT file will hold: 8-bit
    return np.rint(np.ascontiguousarray(crop) * 255).astype(np.float32) / 255


def make_benchmark(
    root: PathLike,
    *,
    seed: int,
    per_type: int = 20,
    size: int = 256,
    degradations: Optional[Sequence[str]] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> dict:
    """Write a benchmark in the official layout into ``root``; return its description.

    For each degradation type (default: all 10), ``per_type`` random ``size`` x ``size``
    crops of the held-out photographs (random image, position and horizontal/vertical
    flips), degraded with random parameters; image ``k`` of type ``i`` depends only on
    ``(seed, i, k)``. Files: ``root/<type>/GT/<k>.png`` and ``root/<type>/LQ/<k>.png``
    (8-bit RGB), plus ``root/benchmark.json`` describing how they were made.
    """
    from . import degradations as deg
    from . import imagefiles

    if not (1 <= per_type <= MAX_PER_TYPE and 8 <= size <= MAX_SIZE):
        raise InvalidOptionError(
            f"need 1 <= per_type <= {MAX_PER_TYPE} and 8 <= size <= {MAX_SIZE}, got per_type={per_type}, size={size}"
        )
    names = list(deg.DEGRADATIONS if degradations is None else degradations)
    unknown = [name for name in names if name not in deg.DEGRADATIONS]
    if unknown:
        raise DaclipError(f"unknown degradation(s) {', '.join(unknown)}; valid: {', '.join(deg.DEGRADATIONS)}")
    root = Path(root)
    images = list(deg.clean_images("eval").values())
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
        "clean_images": list(deg.EVAL_IMAGES),
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
    :data:`~daclip_plugin.degradations.DEGRADATIONS` (other names after them, sorted); LQ
    and GT images are paired by file name.
    ``limit`` keeps the first ``limit`` pairs (sorted by name) of each degradation.
    Raises :class:`BenchmarkLayoutError` saying what is wrong.
    """
    root = Path(root)
    expected = f"expected {root}/<degradation>/{LQ}/*.png and {root}/<degradation>/{GT}/*.png"
    if not root.is_dir():
        raise BenchmarkLayoutError(f"benchmark folder {root} does not exist ({expected})")
    if limit is not None and limit < 1:
        raise DaclipError(f"limit must be at least 1, got {limit}")
    from .degradations import DEGRADATIONS

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


# ------------------------------------------------------------------------------- metrics


def _rgb(image: np.ndarray) -> np.ndarray:
    from .imaging import normalize

    return normalize(image)[0].astype(np.float64)


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of float RGB ``image`` against ``reference`` (range 1); ``inf`` when equal."""
    from skimage.metrics import peak_signal_noise_ratio

    if np.array_equal(image, reference):
        return math.inf
    return float(peak_signal_noise_ratio(reference, image, data_range=1.0))


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """SSIM of float RGB ``image`` against ``reference`` (range 1, per channel, averaged)."""
    from skimage.metrics import structural_similarity

    side = min(image.shape[:2])
    win_size = None if side >= 7 else max(side - (1 - side % 2), 1)
    if win_size is not None and win_size < 3:
        return 1.0 if np.array_equal(image, reference) else float("nan")
    return float(structural_similarity(reference, image, channel_axis=-1, data_range=1.0, win_size=win_size))


def _mean(values: Sequence[float]) -> Optional[float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else None


# ---------------------------------------------------------------------------- evaluation


def _confusion(rows: list[dict], true_labels: list[str]) -> dict:
    from .degradations import DEGRADATIONS

    predicted = {row["predicted"] for row in rows if row.get("predicted") is not None}
    classes = {c for row in rows for c in row.get("classes", ())} | predicted
    order = lambda name: (DEGRADATIONS.index(name) if name in DEGRADATIONS else len(DEGRADATIONS), name)  # noqa: E731
    columns = sorted(classes, key=order)
    matrix = [[0] * len(columns) for _ in true_labels]
    for row in rows:
        if row.get("predicted") is not None:
            matrix[true_labels.index(row["degradation"])][columns.index(row["predicted"])] += 1
    return {"true": list(true_labels), "predicted": columns, "matrix": matrix}


def evaluate(
    root: PathLike,
    *,
    restorer: str = "daclip",
    classifier: Optional[str] = "daclip",
    options: Optional[Mapping[str, Any]] = None,
    limit: Optional[int] = None,
    progress: bool = True,
    should_stop: Optional[Callable[[], bool]] = None,
) -> dict:
    """Evaluate ``restorer`` (and ``classifier``, unless ``None``) on the benchmark at ``root``.

    ``options`` (e.g. ``model``, ``sampler``, ``seed``, ``device``) go to the restorer and
    the classifier, each getting those its method takes (an option neither takes is an
    error); a classifier not given a ``model`` uses the restorer's default model. ``limit``
    evaluates the first ``limit`` images of each degradation. ``progress`` shows a tqdm bar
    over the images. Returns the report (see :func:`format_report`, :func:`write_json`):
    ``degradations`` (per type: ``n``, ``psnr_in``, ``psnr_out``, ``ssim_in``, ``ssim_out``,
    ``accuracy``), ``average`` (their means), ``confusion`` and per-image ``images``.
    """
    from tqdm import tqdm

    from . import api, imagefiles
    from .errors import Cancelled, InvalidImageError

    options = dict(options or {})
    pairs = find_pairs(root, limit)
    restore_options, classify_options = api.split_options(options, restorer, classifier)
    total = sum(len(items) for items in pairs.values())
    rows: list[dict] = []
    start = time.monotonic()
    with tqdm(total=total, desc="evaluating", unit="image", disable=not progress) as bar:
        for degradation, items in pairs.items():
            for lq_path, gt_path in items:
                if should_stop is not None and should_stop():
                    raise Cancelled("evaluation cancelled")
                bar.set_postfix_str(f"{degradation}/{lq_path.name}", refresh=False)
                lq, gt = imagefiles.read_image(lq_path), imagefiles.read_image(gt_path)
                if lq.shape[:2] != gt.shape[:2]:
                    raise InvalidImageError(
                        f"{lq_path} is {lq.shape[1]}x{lq.shape[0]} px but {gt_path} is {gt.shape[1]}x{gt.shape[0]} px"
                    )
                row: dict[str, Any] = {"degradation": degradation, "file": lq_path.name}
                if classifier is not None:
                    scores = api.classify(lq, classifier=classifier, **classify_options)
                    row["predicted"] = max(scores, key=scores.get) if scores else None
                    row["classes"] = list(scores)
                    row["confidence"] = float(scores[row["predicted"]]) if scores else None
                out = api.restore(lq, restorer=restorer, should_stop=should_stop, **restore_options)
                lq_rgb, gt_rgb, out_rgb = _rgb(lq), _rgb(gt), _rgb(out)
                row.update(
                    psnr_in=psnr(lq_rgb, gt_rgb), psnr_out=psnr(out_rgb, gt_rgb),
                    ssim_in=ssim(lq_rgb, gt_rgb), ssim_out=ssim(out_rgb, gt_rgb),
                )
                rows.append(row)
                bar.update(1)
    per_type: dict[str, dict] = {}
    for degradation in pairs:
        mine = [row for row in rows if row["degradation"] == degradation]
        entry: dict[str, Any] = {"n": len(mine)}
        entry.update({metric: _mean([row[metric] for row in mine]) for metric in METRICS})
        classes = set(mine[0].get("classes", ())) if mine and classifier is not None else set()
        entry["accuracy"] = (
            float(np.mean([row["predicted"] == degradation for row in mine])) if degradation in classes else None
        )
        per_type[degradation] = entry
    average: dict[str, Any] = {"n": len(rows)}
    average.update({key: _mean([e[key] for e in per_type.values()]) for key in (*METRICS, "accuracy")})
    report = {
        "format": 1,
        "root": str(Path(root)),
        "restorer": restorer,
        "classifier": classifier,
        "restore_options": restore_options,
        "classify_options": classify_options,
        "limit": limit,
        "degradations": per_type,
        "average": average,
        "confusion": _confusion(rows, list(pairs)) if classifier is not None else None,
        "images": [{k: v for k, v in row.items() if k != "classes"} for row in rows],
        "seconds": round(time.monotonic() - start, 2),
    }
    manifest = Path(root) / MANIFEST
    if manifest.is_file():
        try:
            report["benchmark"] = json.loads(manifest.read_text())
        except ValueError:
            pass
    return report


# -------------------------------------------------------------------------------- output


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}f}"
    return str(value)


def format_report(report: Mapping[str, Any]) -> str:
    """The report as a readable table, then the confusion matrix."""
    header = ("degradation", "n", "PSNR in", "PSNR out", "SSIM in", "SSIM out", "accuracy")
    rows = []
    for name, entry in [*report["degradations"].items(), ("average", report["average"])]:
        rows.append((
            name, str(entry["n"]), _cell(entry["psnr_in"], 2), _cell(entry["psnr_out"], 2),
            _cell(entry["ssim_in"], 4), _cell(entry["ssim_out"], 4), _cell(entry["accuracy"], 3),
        ))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    options = ", ".join(f"{k}={v}" for k, v in report.get("restore_options", {}).items())
    lines = [
        f"restorer {report['restorer']!r}" + (f" ({options})" if options else "")
        + f", classifier {report['classifier']!r}" + f", {report['average']['n']} images in {report['root']}"
        + f", {report['seconds']:.1f} s",
        "",
        line(header),
        line(["-" * w for w in widths]),
    ]
    lines += [line(r) for r in rows[:-1]]
    lines += [line(["-" * w for w in widths]), line(rows[-1])]
    confusion = report.get("confusion")
    if confusion:
        columns = confusion["predicted"]
        labels = [name[:8] for name in columns]
        first = max([len("true \\ predicted"), *map(len, confusion["true"])])
        width = max([3, *map(len, labels)])
        lines += ["", "confusion matrix (rows: true, columns: predicted)", ""]
        lines.append("true \\ predicted".ljust(first) + "  " + "  ".join(label.rjust(width) for label in labels))
        for name, counts in zip(confusion["true"], confusion["matrix"]):
            lines.append(name.ljust(first) + "  " + "  ".join(str(c).rjust(width) for c in counts))
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    """Non-finite floats become ``None`` (JSON has no infinity); tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def write_json(report: Mapping[str, Any], path: PathLike) -> Path:
    """Write the report as strict JSON (infinite PSNR of identical images as ``null``), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(_json_safe(report), indent=1, allow_nan=False) + "\n")
    os.replace(partial, path)
    return path
