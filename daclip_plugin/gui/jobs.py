"""The widget's runs: the work of its worker threads (generators) and the state of one run.

The restorations and classifications ``yield from`` the engine's own generators
(:mod:`daclip_plugin.stacks`), in the worker thread; a download, which reports through
callbacks, goes through :func:`daclip_plugin.steps.relay`.

A worker yields ``("progress", layer number, StackProgress)`` at every step, slice and layer,
``("done", layer number, StackResult)`` when a layer is finished, and ``("bytes", done,
total)`` while downloading; :class:`Run` turns them into a position on one progress bar.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Generator, Optional

from .. import stacks, steps, weights
from .layers import LayerJob
from .runtime import shorten


class Task(enum.Enum):
    CLASSIFY = "Classifying"
    RESTORE = "Restoring"
    DOWNLOAD = "Downloading"


@dataclass
class Run:
    """One run of the widget: its task, layers, worker and how far it got."""

    task: Task
    jobs: list[LayerJob]
    label: str = ""  #: what a download fetches
    plans: list = field(default_factory=list)  #: a restoration's plans, one per layer
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.perf_counter)
    worker: Any = None
    pbar: Any = None
    current: Optional[int] = None  #: the layer being worked on
    last_total: int = 1
    unit: int = 0  #: network calls per slice, once known
    cancelled: bool = False
    failed: bool = False

    @property
    def title(self) -> str:
        return f"{self.task.value} {self.label!r}" if self.label else self.task.value

    @property
    def total_slices(self) -> int:
        return max(sum(job.slices for job in self.jobs), 1)

    def describe(self, item) -> tuple[int, int, str]:
        """``(done, total, text)`` of a worker's report, on one scale for the whole run.

        ``total`` 0 means the amount of work is not known yet (a busy indicator).
        """
        if item[0] == "bytes":
            _, done, total = item
            text = f"{self.title}: {weights.format_size(done)}"
            if total:
                text += f" of {weights.format_size(total)}"
            return done, total or max(done, 1), text
        _, number, event = item
        if event.steps and event.stage != "estimate":
            self.unit = max(event.steps, 1)
        elif not self.unit:  # no measure of the work yet: busy
            return 0, 0, f"{self.title} {shorten(self.jobs[number].name)!r}: {event.describe() or 'starting'}"
        unit = self.unit  # (between slices, the bar stays where the last one ended)
        before = sum(job.slices for job in self.jobs[:number])
        done = (before + event.slice) * unit + min(event.step, unit)
        text = f"{self.title} {shorten(self.jobs[number].name)!r}"
        if len(self.jobs) > 1:
            text += f" (layer {number + 1}/{len(self.jobs)})"
        if event.describe():
            text += f": {event.describe()}"
        return done, self.total_slices * unit, text


def _tagged(number: int, generator) -> Generator[tuple, None, Any]:
    """Yield ``("progress", number, event)`` for each event; return the generator's value."""
    while True:
        try:
            event = next(generator)
        except StopIteration as stop:
            return stop.value
        yield ("progress", number, event)


def restore_jobs(plans, should_stop):
    """Restore each planned layer (see :class:`daclip_plugin.gui.console.RestorePlan`)."""
    for number, plan in enumerate(plans):
        events = stacks.iter_restore_stack(plan.job.data, should_stop=should_stop, **plan.arguments())
        result = yield from _tagged(number, events)
        yield ("done", number, result)


def classify_jobs(jobs, classifier, options, should_stop):
    for number, job in enumerate(jobs):
        events = stacks.iter_classify_stack(
            job.data, classifier, rgb=job.rgb, index=job.index, value_range=job.value_range, should_stop=should_stop,
            **options,
        )
        result = yield from _tagged(number, events)
        yield ("done", number, result)


def download_job(name, should_stop):
    def run(emit, stop):
        return weights.download(name, progress=lambda done, total: emit(("bytes", done, total)), should_stop=stop)

    return (yield from steps.relay(run, should_stop=should_stop, name="daclip-download"))
