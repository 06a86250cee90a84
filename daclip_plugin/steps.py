"""Progress as events: the :class:`Step` that long work yields, and the adapters to callbacks.

Long work in this package is a generator: the samplers, the built-in restorers and the
slice-by-slice engine (:mod:`daclip_plugin.stacks`) yield an event after each network call
and return their result (``StopIteration.value``), like stardist-napari's predictions.
Whoever iterates decides when to stop: closing the generator, or not resuming it, stops
the work within one step. Two adapters join this to the callback style:

* :func:`drive` runs such a generator for callers that pass ``progress(done, total)`` and
  ``should_stop()`` callbacks (the synchronous API);
* :func:`relay` turns callback-style work (a third-party restorer that reports through
  ``progress``, a download) into a generator, by running it in a helper thread.

Nothing here imports torch, Qt or napari.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generator, Optional, TypeVar

from .errors import Cancelled

#: Called after each unit of work with ``(done, total)``.
ProgressCallback = Callable[[int, int], None]
#: Polled between units of work; returning ``True`` asks the run to stop.
StopCallback = Callable[[], bool]

_T = TypeVar("_T")
_E = TypeVar("_E")


@dataclass(frozen=True)
class Step:
    """``done`` of ``total`` units of work (network calls) are done."""

    done: int
    total: int


#: A generator of :class:`Step` events that returns its result.
Steps = Generator[Step, None, _T]


def yields_steps(component) -> bool:
    """Whether ``component`` implements ``iter_restore``, a generator of steps (a base class's
    placeholder, marked ``placeholder = True``, does not count)."""
    method = getattr(type(component), "iter_restore", None)
    return callable(method) and not getattr(method, "placeholder", False)


def mapped(work: Generator[_E, None, _T], convert: Callable[[_E], Any]) -> Generator[Any, None, _T]:
    """Yield ``convert(event)`` for each event of ``work``; return ``work``'s value."""
    try:
        while True:
            try:
                event = next(work)
            except StopIteration as stop:
                return stop.value
            yield convert(event)
    finally:
        work.close()


def until_stopped(work: Generator[_E, None, _T], should_stop: Optional[StopCallback]) -> Generator[_E, None, _T]:
    """``yield from work``, raising :class:`Cancelled` instead of resuming it once ``should_stop()`` is true."""
    last: Any = None
    try:
        while True:
            if should_stop is not None and should_stop():
                done = f"after {last.done} of {last.total} steps" if isinstance(last, Step) else "before the first step"
                raise Cancelled(f"stopped {done}")
            try:
                last = next(work)
            except StopIteration as stop:
                return stop.value
            yield last
    finally:
        work.close()


def finish(work: Generator[_E, None, _T], on_event: Optional[Callable[[_E], Any]] = None) -> _T:
    """Run ``work`` to its end, handing each event to ``on_event``; return its value."""
    try:
        while True:
            try:
                event = next(work)
            except StopIteration as stop:
                return stop.value
            if on_event is not None:
                on_event(event)
    finally:
        work.close()


def drive(
    work: Generator[Step, None, _T],
    progress: Optional[ProgressCallback] = None,
    should_stop: Optional[StopCallback] = None,
) -> _T:
    """Run a generator of :class:`Step` events with the callback interface.

    ``progress(done, total)`` after each step; ``should_stop()`` polled before each one
    (the first included): once true, the work is closed and :class:`Cancelled` raised.
    """
    report = None if progress is None else (lambda step: progress(step.done, step.total))
    return finish(until_stopped(work, should_stop), report)


def with_callbacks(work: Callable[..., Generator[Step, None, _T]], name: str) -> Callable[..., _T]:
    """The function ``name`` that runs the generator function ``work`` to its end with :func:`drive`.

    It takes ``work``'s arguments and the keywords ``progress`` and ``should_stop``.
    """

    def run(*args, progress: Optional[ProgressCallback] = None, should_stop: Optional[StopCallback] = None, **kwargs) -> _T:
        return drive(work(*args, **kwargs), progress, should_stop)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = f":func:`{work.__name__}` run to its end, with callbacks (see :func:`daclip_plugin.steps.drive`)."
    run.__module__ = work.__module__
    return run


# --------------------------------------------------------------------------- callbacks -> generator

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
    should_stop: Optional[StopCallback] = None,
    name: str = "daclip-relay",
) -> Generator[Any, None, _T]:
    """Turn callback-style work into a generator.

    ``run(emit, stopping)`` runs in a helper thread; every ``emit(event)`` is yielded here as
    it happens, and ``run``'s return value becomes the generator's return value (its
    exception is raised here). ``stopping()`` turns true once ``should_stop()`` does or the
    generator is closed early; ``emit`` then raises :class:`Cancelled` in the helper, so even
    work that never polls ``stopping`` ends at its next report. Closing the generator waits
    until the helper has finished.
    """
    events: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
    closed = threading.Event()
    outcome: dict[str, Any] = {}

    def stopping() -> bool:
        return closed.is_set() or (should_stop is not None and bool(should_stop()))

    def emit(event: Any) -> None:
        events.put(event)
        if stopping():
            raise Cancelled("stopped by request")

    def target() -> None:
        try:
            outcome["value"] = run(emit, stopping)
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
