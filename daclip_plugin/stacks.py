"""Restore and classify nD arrays slice by slice: the pure layer-level engine of the napari widget.

The last two axes of an array are the image, or the last three when ``rgb=True`` (channels
last, RGB or RGBA). Leading axes (time, z, ...) are iterated: every slice, or only the one
at ``index`` (a tuple with one entry per leading axis). Each slice is read on its own
(``np.asarray(data[index])``), so dask and other lazy arrays are never loaded whole; each
goes through :func:`daclip_plugin.restore` / :func:`daclip_plugin.classify` (normalised to
``[0, 1]`` and mapped back to the source's range), and lands in an output allocated in the
source's dtype. The source array is never modified.

Two ways to run the same work:

* generators: :func:`iter_restore_stack` / :func:`iter_classify_stack` yield one
  :class:`StackProgress` per network call and slice, and return the :class:`StackResult`
  (``StopIteration.value``; napari's ``thread_worker`` emits it as ``returned``). They
  ``yield from`` the restorer's own generator (:func:`daclip_plugin.api.iter_restore`), in
  the caller's thread; only a restorer that reports through callbacks runs in a helper
  thread (:func:`daclip_plugin.steps.relay`).
* synchronous: :func:`restore_stack` / :func:`classify_stack` run the generators to the end,
  handing each event to ``progress=callback(event)``.

``should_stop()`` is polled before each slice and each network call; once it returns true
the run raises :class:`~daclip_plugin.errors.Cancelled` within one step, and nothing partial
is returned. Nothing here imports Qt or napari.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterable, Mapping, Optional

import numpy as np

from . import api, imaging
from .errors import Cancelled, DaclipError, InvalidImageError
from .interfaces import Estimate
from .options import of as options_of
from .steps import finish, mapped, until_stopped

__all__ = [
    "StackProgress",
    "StackResult",
    "check_stack",
    "classify_stack",
    "image_ndim",
    "iter_classify_stack",
    "iter_restore_stack",
    "mean_probabilities",
    "restore_stack",
    "slice_indices",
]

Index = tuple[int, ...]
StopFlag = Optional[Callable[[], bool]]
#: A generator of :class:`StackProgress` events that returns the :class:`StackResult`.
StackWork = Generator["StackProgress", None, "StackResult"]


@dataclass(frozen=True)
class StackProgress:
    """One progress report: ``step`` of ``steps`` done in slice ``slice`` of ``slices``.

    ``index`` is the slice's position along the leading axes (``()`` for a single image);
    ``slice`` counts the slices of this run from 0. ``steps`` is 0 until the restorer has
    said how many steps it takes.
    """

    stage: str  # "estimate" (DA-CLIP over the stack first), "restore" or "classify"
    index: Index
    slice: int
    slices: int
    step: int
    steps: int

    def describe(self) -> str:
        """``"slice 2/5, step 40/100"`` (the parts that apply)."""
        parts = ["estimating"] if self.stage == "estimate" else []
        if self.slices > 1 or self.index:
            parts.append(f"slice {self.slice + 1}/{self.slices}")
        if self.steps:
            parts.append(f"step {self.step}/{self.steps}")
        return ", ".join(parts)


@dataclass
class StackResult:
    """The outcome of a run.

    ``data`` is the restored array (``None`` for classification), in the source's dtype: the
    source's shape when every slice was restored, or ``(1, ..., 1) + image shape`` for a
    single slice, whose position in the source is ``offset`` (one entry per leading axis).
    ``probabilities`` maps each slice's index to the degradation probabilities that steered
    its restoration (or that its classification gave). ``steering`` says where they came
    from: ``{"conditioning": "each" | "current" | "mean", "reference": index or None}``.
    """

    data: Optional[np.ndarray]
    indices: list[Index]
    offset: Index
    probabilities: dict[Index, dict[str, float]] = field(default_factory=dict)
    steering: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_probabilities(self) -> dict[str, float]:
        """The probabilities averaged over the classified slices, most likely first."""
        return mean_probabilities(self.probabilities.values())


# --------------------------------------------------------------------------- shapes


def image_ndim(rgb: bool) -> int:
    """Axes that form one image: 3 for channels-last RGB(A), else 2."""
    return 3 if rgb else 2


def _shape_and_dtype(data) -> tuple[tuple[int, ...], np.dtype]:
    shape = getattr(data, "shape", None)
    dtype = getattr(data, "dtype", None)
    if shape is None or dtype is None:
        array = np.asarray(data)
        shape, dtype = array.shape, array.dtype
    return tuple(int(n) for n in shape), np.dtype(dtype)


def check_stack(data, rgb: bool = False) -> None:
    """Raise :class:`~daclip_plugin.errors.DaclipError` saying why ``data`` cannot be restored."""
    shape, dtype = _shape_and_dtype(data)
    if dtype.kind == "b":
        raise InvalidImageError("boolean (mask) data cannot be restored: use an integer or float image")
    if dtype.kind == "c":
        raise InvalidImageError(
            f"complex data ({dtype}) cannot be restored: take its magnitude or real part first"
        )
    if dtype.kind not in "uif":
        raise InvalidImageError(f"unsupported data type {dtype}: use an integer or float image")
    need = image_ndim(rgb)
    if len(shape) < need:
        kind = "an RGB(A) image needs (..., H, W, 3 or 4)" if rgb else "an image needs (..., H, W)"
        raise InvalidImageError(f"data of shape {shape} has too few axes: {kind}")
    if rgb and shape[-1] not in (3, 4):
        raise InvalidImageError(f"RGB data must have 3 or 4 channels last, got shape {shape}")
    if any(n == 0 for n in shape):
        raise InvalidImageError(f"the data is empty (shape {shape})")


def slice_indices(shape: tuple[int, ...], rgb: bool = False, index: Optional[Iterable[int]] = None) -> list[Index]:
    """The leading-axis indices a run visits: all of them, or just ``index``."""
    leading = tuple(shape[: len(shape) - image_ndim(rgb)])
    if index is None:
        return list(itertools.product(*(range(n) for n in leading)))
    index = tuple(int(i) for i in index)
    if len(index) != len(leading):
        raise DaclipError(
            f"slice index {index} needs {len(leading)} entries (one per leading axis of shape {tuple(shape)})"
        )
    for i, n in zip(index, leading):
        if not 0 <= i < n:
            raise DaclipError(f"slice index {index} is outside the leading axes {leading}")
    return [index]


def _plan(shape: tuple[int, ...], rgb: bool, index) -> tuple[list[Index], Index, tuple[int, ...]]:
    indices = slice_indices(shape, rgb, index)
    lead = len(shape) - image_ndim(rgb)
    if index is None:
        return indices, (0,) * lead, tuple(shape)
    return indices, indices[0], (1,) * lead + tuple(shape[lead:])


def _check_stop(should_stop: StopFlag) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled("cancelled")


def mean_probabilities(scores: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Average several probability dicts; most likely first."""
    scores = list(scores)
    if not scores:
        return {}
    names = list(dict.fromkeys(name for item in scores for name in item))
    mean = {name: float(np.mean([item.get(name, 0.0) for item in scores])) for name in names}
    return dict(sorted(mean.items(), key=lambda item: item[1], reverse=True))


# --------------------------------------------------------------------------- the work


#: How the slices of a stack are steered: each by its own estimate, all by the estimate of
#: one reference slice, or all by the mean estimate of the slices.
CONDITIONING = ("each", "current", "mean")


def _scan(data, indices: list[Index], should_stop: StopFlag, value_range, rgb: bool) -> Optional[tuple[float, float]]:
    """Read the visited slices once before any work: refuse NaN or infinite values (naming the
    slice), and return the intensity range of them all (their colour, not alpha) when none was
    given and the dtype has no full range of its own, so that every slice is mapped alike;
    else ``value_range``."""
    dtype = np.dtype(_shape_and_dtype(data)[1])
    if value_range is not None:
        value_range = imaging.check_value_range(value_range)
    own_range = value_range is None and not imaging.has_full_range(dtype)
    if dtype.kind != "f" and not own_range:
        return value_range
    extremes = []
    for idx in indices:
        _check_stop(should_stop)
        image = np.asarray(data[idx])
        if dtype.kind == "f" and not np.isfinite(image).all():
            where = f"slice {idx}" if idx else "the image"
            raise InvalidImageError(f"{where} has NaN or infinite values; replace them first")
        if own_range:
            colour = imaging.colour_of(image, rgb)
            extremes += [colour.min(), colour.max()]  # in the data's own type: exact for 64-bit integers too
    if not own_range:
        return value_range
    return imaging.value_range_of(np.array(extremes, dtype=dtype))


@dataclass
class _Restoration:
    """A checked restoration of a stack: what to restore, with what, and where it lands."""

    data: Any
    restorer: str
    options: dict[str, Any]
    classifier: Optional[str]
    classifier_options: Mapping[str, Any]
    should_stop: StopFlag
    value_range: Any
    conditioning: str
    reference: Optional[Index]
    steered: bool  #: the restorer steers itself by its estimates
    indices: list[Index]
    offset: Index
    out: np.ndarray
    rgb: bool = False  #: colour last: its alpha does not count in the intensity range

    def run(self) -> StackWork:
        self.value_range = _scan(self.data, self.indices, self.should_stop, self.value_range, self.rgb)
        shared = (yield from self._shared_estimate()) if self.steered else None
        probabilities: dict[Index, dict[str, float]] = {}
        for number, idx in enumerate(self.indices):
            _check_stop(self.should_stop)
            image = np.asarray(self.data[idx])
            estimate = shared
            if self.steered and estimate is None:
                yield StackProgress("estimate", idx, number, len(self.indices), 0, 0)
                estimate = api.estimate(image, self.restorer, value_range=self.value_range, **self.options)
            if estimate is not None:
                probabilities[idx] = dict(estimate.probabilities)
            elif self.classifier is not None:
                probabilities[idx] = api.classify(
                    image, self.classifier, value_range=self.value_range, **self.classifier_options
                )
            restored = yield from self._restore_slice(image, idx, number, estimate)
            self.out[tuple(i - o for i, o in zip(idx, self.offset))] = restored
        reference = list(self.reference or self.indices[0]) if self.conditioning == "current" else None
        steering = {"conditioning": self.conditioning, "reference": reference}
        return StackResult(self.out, self.indices, self.offset, probabilities, steering)

    def _shared_estimate(self) -> Generator[StackProgress, None, Optional[Estimate]]:
        """The estimate that steers every slice (``None`` for ``"each"``); a report per slice."""
        if self.conditioning == "each":
            return None
        first = self.reference if self.reference is not None else self.indices[0]
        sources = [first] if self.conditioning == "current" else self.indices
        found = []
        for number, idx in enumerate(sources):
            _check_stop(self.should_stop)
            yield StackProgress("estimate", idx, number, len(sources), 0, 0)
            found.append(api.estimate(np.asarray(self.data[idx]), self.restorer, value_range=self.value_range, **self.options))
        return None if None in found else Estimate.mean(found)

    def _restore_slice(self, image: np.ndarray, idx: Index, number: int, estimate: Optional[Estimate]):
        """``yield from`` the restorer's steps, as this slice's reports; return the restored slice."""
        _check_stop(self.should_stop)
        slices = len(self.indices)
        yield StackProgress("restore", idx, number, slices, 0, 0)
        last = [0, 0]

        def event(step) -> StackProgress:
            last[:] = [int(step.done), int(step.total)]
            return StackProgress("restore", idx, number, slices, *last)

        work = api.iter_restore(
            image, self.restorer, should_stop=self.should_stop, value_range=self.value_range, estimate=estimate,
            **self.options,
        )
        restored = yield from mapped(until_stopped(work, self.should_stop), event)
        if not (last[1] and last[0] >= last[1]):  # a restorer that did not report its end
            steps = last[1] or 1
            yield StackProgress("restore", idx, number, slices, steps, steps)
        return restored


def _iter_classify(data, classifier, indices, offset, options, should_stop, value_range, rgb) -> StackWork:
    value_range = _scan(data, indices, should_stop, value_range, rgb)
    probabilities: dict[Index, dict[str, float]] = {}
    total = len(indices)
    for number, idx in enumerate(indices):
        _check_stop(should_stop)
        probabilities[idx] = api.classify(np.asarray(data[idx]), classifier, value_range=value_range, **options)
        yield StackProgress("classify", idx, number, total, 1, 1)
    _check_stop(should_stop)
    return StackResult(None, indices, offset, probabilities)


def restore_stack(
    data,
    restorer: Optional[str] = None,
    *,
    rgb: bool = False,
    index: Optional[Iterable[int]] = None,
    value_range=None,
    conditioning: str = "each",
    reference: Optional[Iterable[int]] = None,
    classifier: Optional[str] = None,
    classifier_options: Optional[Mapping[str, Any]] = None,
    progress: Optional[Callable[[StackProgress], None]] = None,
    should_stop: StopFlag = None,
    **options,
) -> StackResult:
    """Restore every slice of ``data`` (or only the one at ``index``) with ``restorer``.

    ``restorer`` defaults to the ``model``'s preferred one. ``options`` go to the restorer,
    checked against its declaration before any work (:meth:`daclip_plugin.options.OptionSet.applicable`
    picks, from a set of settings, those a restorer takes). ``value_range`` is the intensity
    range mapped to [0, 1] (see :func:`daclip_plugin.imaging.normalize`); the same for every
    slice, so that they are restored alike.

    ``conditioning`` (restorers that take estimates, such as DA-CLIP's): ``"each"`` steers
    every slice by its own estimate; ``"current"`` steers all by the estimate of the slice at
    ``reference`` (default: the first one visited); ``"mean"`` by the mean estimate of all
    visited slices (one DA-CLIP pass per slice first), so that a stack is restored evenly.
    The result records the probabilities that steered each slice; for restorers without
    estimates, ``classifier`` (if given) classifies each slice for the record.
    ``progress(event)`` gets a :class:`StackProgress` at every step.
    """
    work = iter_restore_stack(
        data, restorer, rgb=rgb, index=index, value_range=value_range, conditioning=conditioning, reference=reference,
        classifier=classifier, classifier_options=classifier_options, should_stop=should_stop, **options,
    )
    return finish(work, progress)


def classify_stack(
    data,
    classifier: str = api.DEFAULT_CLASSIFIER,
    *,
    rgb: bool = False,
    index: Optional[Iterable[int]] = None,
    value_range=None,
    progress: Optional[Callable[[StackProgress], None]] = None,
    should_stop: StopFlag = None,
    **options,
) -> StackResult:
    """Classify every slice of ``data`` (or only the one at ``index``); see :class:`StackResult`."""
    work = iter_classify_stack(
        data, classifier, rgb=rgb, index=index, value_range=value_range, should_stop=should_stop, **options
    )
    return finish(work, progress)


# --------------------------------------------------------------------------- generators


def iter_restore_stack(
    data,
    restorer: Optional[str] = None,
    *,
    rgb: bool = False,
    index: Optional[Iterable[int]] = None,
    value_range=None,
    conditioning: str = "each",
    reference: Optional[Iterable[int]] = None,
    classifier: Optional[str] = None,
    classifier_options: Optional[Mapping[str, Any]] = None,
    should_stop: StopFlag = None,
    **options,
) -> StackWork:
    """:func:`restore_stack` as a generator of :class:`StackProgress` returning the :class:`StackResult`.

    The arguments are checked at once, before any work.
    """
    restorer = restorer or api.preferred_restorer(options.get("model"))
    check_stack(data, rgb)
    if value_range is not None:
        imaging.check_value_range(value_range)
    if conditioning not in CONDITIONING:
        raise DaclipError(f"conditioning must be one of {', '.join(CONDITIONING)}; got {conditioning!r}")
    component = api.get_restorer(restorer)  # an unknown name fails before any work
    options = dict(options_of(component).check(f"restorer {restorer!r}", options))
    steered = api.steers_itself(restorer)
    if classifier is not None and not steered:
        api.get_classifier(classifier)
    shape, dtype = _shape_and_dtype(data)
    indices, offset, out_shape = _plan(shape, rgb, index)
    if reference is not None:
        reference = slice_indices(shape, rgb, reference)[0]
    return _Restoration(
        data, restorer, options, classifier, dict(classifier_options or {}), should_stop, value_range,
        conditioning if steered else "each", reference, steered, indices, offset, np.empty(out_shape, dtype=dtype), rgb,
    ).run()


def iter_classify_stack(
    data,
    classifier: str = api.DEFAULT_CLASSIFIER,
    *,
    rgb: bool = False,
    index: Optional[Iterable[int]] = None,
    value_range=None,
    should_stop: StopFlag = None,
    **options,
) -> StackWork:
    """:func:`classify_stack` as a generator of :class:`StackProgress` returning the :class:`StackResult`.

    The arguments are checked at once, before any work.
    """
    check_stack(data, rgb)
    if value_range is not None:
        imaging.check_value_range(value_range)
    component = api.get_classifier(classifier)
    options = dict(options_of(component).check(f"classifier {classifier!r}", options))
    indices, offset, _ = _plan(_shape_and_dtype(data)[0], rgb, index)
    return _iter_classify(data, classifier, indices, offset, options, should_stop, value_range, rgb)
