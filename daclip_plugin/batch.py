"""Image files in, image files out: the unit of work of the command line and of Dask workers.

:func:`find_inputs` turns files, folders and glob patterns into a list of image files;
:func:`restore_file` restores one planned :class:`~daclip_plugin.outputs.Output` (read,
restore, write atomically) and returns a small :class:`FileResult`. Restorers that take
estimates run DA-CLIP once per image: its probabilities are the ones reported.
"""

from __future__ import annotations

import glob
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from .errors import InvalidImageError
from .outputs import COMPARE, RESTORED, Output

#: The files a folder is searched for (not recursively).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")


@dataclass(frozen=True)
class FileResult:
    """What became of one input file: ``status`` is ``"restored"``, ``"skipped"`` or ``"failed"``."""

    source: str
    target: Optional[str]
    status: str
    probabilities: Optional[dict[str, float]] = None
    seconds: float = 0.0
    error: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_inputs(items: Sequence[str]) -> list[Path]:
    """Files as given, the image files of folders (sorted), and the matches of glob patterns.

    A folder without images, a pattern matching nothing and a missing file are errors; a file
    named twice (even by two different paths) is kept once. In folders and patterns, the
    results of an earlier run (``NAME_restored.EXT`` and its side-by-side picture, beside
    ``NAME.EXT``) are left out, so that running the same command again finishes that run.
    """
    found: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise InvalidImageError(f"folder {item} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found += _without_results(images)
        elif glob.has_magic(item) and not path.exists():
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not matches:
                raise InvalidImageError(f"no file matches {item}")
            found += _without_results(matches)
        else:
            found.append(path)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _without_results(paths: list[Path]) -> list[Path]:
    """``paths`` less the results this tool wrote beside others of them."""
    stems = {(path.parent, path.stem) for path in paths}

    def is_result(path: Path) -> bool:
        for ending in (RESTORED + Path(COMPARE).stem, RESTORED):
            if path.stem.endswith(ending) and (path.parent, path.stem[: -len(ending)]) in stems:
                return True
        return False

    return [path for path in paths if not is_result(path)]


def is_rgb(picture) -> bool:
    """Whether a read file's pixels are colour (the last axis) rather than a stack of grey images."""
    return picture.data.ndim == 4 or (picture.data.ndim == 3 and not picture.stack)


def restore_picture(
    picture,
    restorer: str,
    options: Mapping[str, Any],
    classifier: Optional[str] = None,
    classify_options: Optional[Mapping[str, Any]] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> tuple[np.ndarray, Optional[dict[str, float]]]:
    """The restored pixels of a read file, and the probabilities that steered them (or ``classifier``'s).

    A stack is steered by the mean estimate of its frames; ``progress(done, total)`` counts
    the restorer's steps over all frames.
    """
    from . import api, stacks

    report = progress or (lambda done, total: None)
    if picture.stack:
        def on_event(event) -> None:
            if event.steps:
                report(event.slice * event.steps + event.step, event.slices * event.steps)

        result = stacks.restore_stack(
            picture.data, restorer, rgb=is_rgb(picture), conditioning="mean", classifier=classifier,
            classifier_options=classify_options or {}, progress=on_event, **options,
        )
        return result.data, result.mean_probabilities or None
    estimate = api.estimate(picture.data, restorer, **options)
    if estimate is not None:  # most likely first, as classify gives them
        scores = dict(sorted(estimate.probabilities.items(), key=lambda item: item[1], reverse=True))
    elif classifier is not None:
        scores = api.classify(picture.data, classifier=classifier, **(classify_options or {}))
    else:
        scores = None
    return api.restore(picture.data, restorer=restorer, progress=progress, estimate=estimate, **options), scores


def restore_file(
    item: Output,
    restorer: str,
    options: Mapping[str, Any],
    classifier: Optional[str] = None,
    classify_options: Optional[Mapping[str, Any]] = None,
    *,
    max_pixels: Optional[int] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> FileResult:
    """Read ``item.source``, restore it, write ``item.target`` (and ``item.compare``) atomically.

    Errors propagate; nothing is left half-written.
    """
    from . import imagefiles

    start = time.perf_counter()
    picture = imagefiles.read_picture(item.source, max_pixels=max_pixels)
    restored, scores = restore_picture(picture, restorer, options, classifier, classify_options, progress)
    if picture.gray_alpha and imagefiles.written_channels(2, item.target.suffix) == 2:
        imagefiles.write_image(item.target, imagefiles.gray_alpha(restored), frames=picture.frames)  # as it came
    else:
        imagefiles.write_image(item.target, restored, frames=picture.frames)
    if item.compare is not None:
        first = (lambda data: data[0]) if picture.stack else (lambda data: data)
        imagefiles.write_image(item.compare, imagefiles.side_by_side(first(picture.data), first(restored)))
    return FileResult(str(item.source), str(item.target), "restored", scores, time.perf_counter() - start)
