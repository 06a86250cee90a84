"""Evaluating a restorer and a classifier on a benchmark, and the report as text and JSON."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from .. import persist
from .benchmark import MANIFEST, METRICS, PathLike, find_pairs
from .metrics import as_rgb, psnr, ssim


def _mean(values: Sequence[float]) -> Optional[float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else None




def _confusion(rows: list[dict], true_labels: list[str]) -> dict:
    from ..data.degradations import DEGRADATIONS

    predicted = {row["predicted"] for row in rows if row.get("predicted") is not None}
    classes = {c for row in rows for c in row.get("classes", ())} | predicted
    order = lambda name: (DEGRADATIONS.index(name) if name in DEGRADATIONS else len(DEGRADATIONS), name)  # noqa: E731
    columns = sorted(classes, key=order)
    matrix = [[0] * len(columns) for _ in true_labels]
    for row in rows:
        if row.get("predicted") is not None:
            matrix[true_labels.index(row["degradation"])][columns.index(row["predicted"])] += 1
    return {"true": list(true_labels), "predicted": columns, "matrix": matrix}


#: ``classifier=AUTO``: the classifier that goes with the restorer (:func:`daclip_plugin.api.classifier_for`).
AUTO = "auto"


def _estimate_serves(restorer: str, classifier: Optional[str], restore_options: Mapping, classify_options: Mapping) -> bool:
    """Whether the restorer's own estimate gives what ``classifier`` would (then DA-CLIP runs once per image).

    True for the restorer's own classifier given no option the restorer does not take alike.
    """
    from .. import api
    from ..options import of as options_of

    if classifier is None or classifier != api.classifier_for(restorer) or not api.steers_itself(restorer):
        return False
    declared = options_of(api.get_restorer(restorer))
    return all(
        key in declared.names() and restore_options.get(key, declared.get(key).default) == value
        for key, value in classify_options.items()
    )


def evaluate(
    root: PathLike,
    *,
    restorer: Optional[str] = None,
    classifier: Optional[str] = AUTO,
    options: Optional[Mapping[str, Any]] = None,
    limit: Optional[int] = None,
    progress: bool = True,
    should_stop: Optional[Callable[[], bool]] = None,
) -> dict:
    """Evaluate ``restorer`` (default: the ``model`` option's preferred one) and ``classifier``
    (unless ``None``) on the benchmark at ``root``.

    ``classifier`` defaults to the one that goes with the restorer
    (:func:`daclip_plugin.api.classifier_for`); when the restorer steers itself with that
    classifier's estimate, the estimate is computed once per image and serves both.

    ``options`` (e.g. ``model``, ``sampler``, ``seed``, ``device``) go to the restorer and
    the classifier, each getting those its method takes (an option neither takes is an
    error); a classifier not given a ``model`` uses the restorer's default model. ``limit``
    evaluates the first ``limit`` images of each degradation. ``progress`` shows a tqdm bar
    over the images. Returns the report (see :func:`format_report`, :func:`write_json`):
    ``degradations`` (per type: ``n``, ``psnr_in``, ``psnr_out``, ``ssim_in``, ``ssim_out``,
    ``accuracy``), ``average`` (their means), ``confusion`` and per-image ``images``.
    """
    from tqdm import tqdm

    from .. import api, imagefiles
    from ..errors import Cancelled, InvalidImageError

    options = dict(options or {})
    restorer = restorer or api.preferred_restorer(options.get("model"))
    pairs = find_pairs(root, limit)
    classifier = api.classifier_for(restorer) if classifier == AUTO else classifier
    restore_options, classify_options = api.split_options(options, restorer, classifier)
    once = _estimate_serves(restorer, classifier, restore_options, classify_options)
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
                estimate = api.estimate(lq, restorer, **restore_options) if once else None
                if classifier is not None:
                    if estimate is not None:
                        scores = dict(sorted(estimate.probabilities.items(), key=lambda item: item[1], reverse=True))
                    else:
                        scores = api.classify(lq, classifier=classifier, **classify_options)
                    row["predicted"] = max(scores, key=scores.get) if scores else None
                    row["classes"] = list(scores)
                    row["confidence"] = float(scores[row["predicted"]]) if scores else None
                out = api.restore(lq, restorer=restorer, should_stop=should_stop, estimate=estimate, **restore_options)
                lq_rgb, gt_rgb, out_rgb = as_rgb(lq), as_rgb(gt), as_rgb(out)
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


def write_json(report: Mapping[str, Any], path: PathLike) -> Path:
    """Write the report as strict JSON (infinite PSNR of identical images as ``null``), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return persist.write_text(path, json.dumps(persist.json_safe(report), indent=1, allow_nan=False) + "\n")
