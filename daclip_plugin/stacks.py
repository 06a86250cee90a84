"""Restore and classify nD arrays slice by slice: the pure layer-level engine of the napari widget.

The last two axes of an array are the image, or the last three when ``rgb=True`` (channels
last, RGB or RGBA). Leading axes (time, z, ...) are iterated: every slice, or only the one
at ``index`` (a tuple with one entry per leading axis). Each slice is read on its own
(``np.asarray(data[index])``), so dask and other lazy arrays are never loaded whole; each
goes through :func:`daclip_plugin.restore` / :func:`daclip_plugin.classify` (normalised to
``[0, 1]`` and mapped back to the source's range), and lands in an output allocated in the
source's dtype. The source array is never modified.

Two ways to run the same work:

* synchronous: :func:`restore_stack` / :func:`classify_stack` with ``progress=callback(event)``;
* generators: :func:`iter_restore_stack` / :func:`iter_classify_stack` yield one
  :class:`StackProgress` per sampling step and slice, and return the :class:`StackResult`
  (``StopIteration.value``; napari's ``thread_worker`` emits it as ``returned``). The work runs
  in a helper thread, so a consumer sees every step even though restorers report through
  callbacks.

``should_stop()`` is polled before each slice and at every progress report of the restorer;
once it returns true the run raises :class:`~daclip_plugin.errors.Cancelled` within one
step, and nothing partial is returned. Nothing here imports Qt or napari.
"""

from __future__ import annotations

import atexit
import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterable, Mapping, Optional, TypeVar

import numpy as np

from . import api
from .errors import Cancelled, DaclipError, InvalidImageError
from .interfaces import Estimate
from .options import of as options_of

__all__ = [
    "StackProgress",
    "StackResult",
    "check_stack",
    "classify_stack",
    "image_ndim",
    "iter_classify_stack",
    "iter_restore_stack",
    "mean_probabilities",
    "relay",
    "restore_stack",
    "slice_indices",
]

Index = tuple[int, ...]
StopFlag = Optional[Callable[[], bool]]
_T = TypeVar("_T")


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


def _check_finite(data, indices: list[Index], should_stop: StopFlag) -> None:
    """Refuse NaN or infinite values before any work, naming the slice (float data only)."""
    if np.dtype(_shape_and_dtype(data)[1]).kind != "f":
        return
    for idx in indices:
        _check_stop(should_stop)
        if not np.isfinite(np.asarray(data[idx])).all():
            where = f"slice {idx}" if idx else "the image"
            raise InvalidImageError(f"{where} has NaN or infinite values; replace them first")


def _shared_estimate(data, restorer, indices, conditioning, reference, value_range, options, emit, should_stop):
    """The estimate that steers every slice (``None`` for ``"each"``)."""
    if conditioning == "each":
        return None
    sources = [reference if reference is not None else indices[0]] if conditioning == "current" else indices
    found = []
    for number, idx in enumerate(sources):
        _check_stop(should_stop)
        emit(StackProgress("estimate", idx, number, len(sources), 0, 0))
        found.append(api.estimate(np.asarray(data[idx]), restorer, value_range=value_range, **options))
    return None if None in found else Estimate.mean(found)


def _restore(
    data,
    restorer: str,
    rgb: bool,
    index,
    options: Mapping[str, Any],
    classifier: Optional[str],
    classifier_options: Mapping[str, Any],
    emit: Callable[[StackProgress], None],
    should_stop: StopFlag,
    value_range=None,
    conditioning: str = "each",
    reference: Optional[Iterable[int]] = None,
) -> StackResult:
    check_stack(data, rgb)
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
    _check_finite(data, indices, should_stop)
    conditioning = conditioning if steered else "each"
    shared = None
    if steered:
        shared = _shared_estimate(data, restorer, indices, conditioning, reference, value_range, options, emit, should_stop)
    out = np.empty(out_shape, dtype=dtype)
    probabilities: dict[Index, dict[str, float]] = {}
    total = len(indices)
    for number, idx in enumerate(indices):
        _check_stop(should_stop)
        image = np.asarray(data[idx])
        estimate = shared
        if steered and estimate is None:
            emit(StackProgress("estimate", idx, number, total, 0, 0))
            estimate = api.estimate(image, restorer, value_range=value_range, **options)
        if estimate is not None:
            probabilities[idx] = dict(estimate.probabilities)
        elif classifier is not None:
            probabilities[idx] = api.classify(image, classifier, value_range=value_range, **classifier_options)
        _check_stop(should_stop)
        emit(StackProgress("restore", idx, number, total, 0, 0))
        last = [0, 0]

        def step(done: int, steps: int, idx=idx, number=number, last=last) -> None:
            last[:] = [int(done), int(steps)]
            emit(StackProgress("restore", idx, number, total, int(done), int(steps)))
            _check_stop(should_stop)

        restored = api.restore(
            image, restorer, progress=step, should_stop=should_stop, value_range=value_range, estimate=estimate, **options
        )
        out[tuple(i - o for i, o in zip(idx, offset))] = restored
        if not (last[1] and last[0] >= last[1]):
            steps = last[1] or 1
            emit(StackProgress("restore", idx, number, total, steps, steps))
    steering = {"conditioning": conditioning, "reference": list(reference or indices[0]) if conditioning == "current" else None}
    return StackResult(out, indices, offset, probabilities, steering)


def _classify(
    data,
    classifier: str,
    rgb: bool,
    index,
    options: Mapping[str, Any],
    emit: Callable[[StackProgress], None],
    should_stop: StopFlag,
    value_range=None,
) -> StackResult:
    check_stack(data, rgb)
    api.get_classifier(classifier)
    shape, _ = _shape_and_dtype(data)
    indices, offset, _ = _plan(shape, rgb, index)
    _check_finite(data, indices, should_stop)
    probabilities: dict[Index, dict[str, float]] = {}
    total = len(indices)
    for number, idx in enumerate(indices):
        _check_stop(should_stop)
        probabilities[idx] = api.classify(np.asarray(data[idx]), classifier, value_range=value_range, **options)
        emit(StackProgress("classify", idx, number, total, 1, 1))
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
    emit = progress if progress is not None else (lambda event: None)
    restorer = restorer or api.preferred_restorer(options.get("model"))
    return _restore(
        data, restorer, rgb, index, options, classifier, dict(classifier_options or {}), emit, should_stop,
        value_range, conditioning, reference,
    )


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
    emit = progress if progress is not None else (lambda event: None)
    return _classify(data, classifier, rgb, index, options, emit, should_stop, value_range)


# --------------------------------------------------------------------------- generators

_DONE = object()
#: The helper threads of :func:`relay` now running, each with the event that stops it.
_helpers: dict[threading.Thread, threading.Event] = {}
#: How long :func:`stop_helpers` waits when the process exits.
EXIT_WAIT_S = 120.0


@atexit.register
def stop_helpers(timeout: float = EXIT_WAIT_S) -> None:
    """Ask every running :func:`relay` helper to stop, and wait (up to ``timeout`` s) until it has.

    Called when the process exits, and by the napari widget when it goes away: a process that
    exits while such a thread still runs torch code aborts. A helper stops within one step.
    """
    for event in list(_helpers.values()):
        event.set()
    deadline = time.monotonic() + timeout
    for thread in list(_helpers):
        thread.join(max(0.0, deadline - time.monotonic()))


def relay(
    run: Callable[[Callable[[Any], None], Callable[[], bool]], _T],
    *,
    should_stop: StopFlag = None,
    name: str = "daclip-relay",
) -> Generator[Any, None, _T]:
    """Turn callback-style work into a generator.

    ``run(emit, should_stop)`` runs in a helper thread; every ``emit(event)`` is yielded here
    as it happens, and ``run``'s return value becomes the generator's return value (its
    exception is raised here). Closing the generator early asks ``run`` to stop through its
    ``should_stop`` and waits until it has.
    """
    events: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
    closed = threading.Event()
    outcome: dict[str, Any] = {}

    def stopping() -> bool:
        return closed.is_set() or (should_stop is not None and bool(should_stop()))

    def target() -> None:
        try:
            outcome["value"] = run(events.put, stopping)
        except BaseException as exc:  # handed to the consumer
            outcome["error"] = exc
        finally:
            _helpers.pop(threading.current_thread(), None)
            events.put(_DONE)

    thread = threading.Thread(target=target, name=name, daemon=True)
    _helpers[thread] = closed
    thread.start()
    finished = False
    try:
        while True:
            item = events.get()
            if item is _DONE:
                finished = True
                break
            yield item
    finally:
        if not finished:  # closed early: the helper stops at its next step
            closed.set()
        # wait for it even then: a thread still running torch code when the process exits aborts it
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def iter_restore_stack(
    data,
    restorer: Optional[str] = None,
    *,
    should_stop: StopFlag = None,
    **arguments,
) -> Generator[StackProgress, None, StackResult]:
    """:func:`restore_stack` as a generator of :class:`StackProgress` returning the :class:`StackResult`."""

    def run(emit, stop):
        return restore_stack(data, restorer, progress=emit, should_stop=stop, **arguments)

    return (yield from relay(run, should_stop=should_stop, name="daclip-restore"))


def iter_classify_stack(
    data,
    classifier: str = api.DEFAULT_CLASSIFIER,
    *,
    should_stop: StopFlag = None,
    **arguments,
) -> Generator[StackProgress, None, StackResult]:
    """:func:`classify_stack` as a generator of :class:`StackProgress` returning the :class:`StackResult`."""

    def run(emit, stop):
        return classify_stack(data, classifier, progress=emit, should_stop=stop, **arguments)

    return (yield from relay(run, should_stop=should_stop, name="daclip-classify"))
