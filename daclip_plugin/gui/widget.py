"""The napari dock widget: pick layers and settings, run in worker threads, show progress.

The work is the console's (:mod:`daclip_plugin.gui.console`: one plan per layer, run by
:mod:`daclip_plugin.stacks`); this module holds the panel's behaviour, and
:mod:`daclip_plugin.gui.controls` its controls. Settings reach a restorer only
if it declares that option and it applies (``steps``: with the MaRS sampler; see
:meth:`daclip_plugin.options.OptionSet.applicable`); controls that do not apply are greyed
out. Opening the panel imports no torch; settings are kept between sessions
(:mod:`daclip_plugin.gui.settings`). Closing the panel stops its run, and quitting napari
waits for the run to stop.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any, Mapping, Optional

from magicgui.widgets import Container
from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QThreadPool

from .. import api, steps
from ..engine import samplers
from ..errors import Cancelled, DaclipError
from ..options import of as options_of
from . import settings as saved
from .console import classifier_options, plan_restore, required_classifier
from .controls import TOOLTIPS, CloseWatcher, build_controls
from .jobs import Run, Task, classify_jobs, download_job, restore_jobs
from .layers import is_restorable, prepare_layer
from .models import default_model, is_stack, model_choices, model_ready
from .runtime import avoid_llvm_clash, shorten, unwrap

if TYPE_CHECKING:
    import napari.viewer

#: How long quitting napari waits for a run to stop (it stops within one step).
QUIT_WAIT_MS = 120_000


class DaclipWidget(Container):
    """Classify and restore image layers with DA-CLIP (or any installed restorer)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        avoid_llvm_clash()
        self._viewer = unwrap(viewer)
        self._closed = False
        self._run: Optional[Run] = None
        #: the latest run, kept when it is over
        self.last_run: Optional[Run] = None
        self._pending = None
        self._flushing = False
        self._scores: dict[int, tuple[Any, dict[str, float]]] = {}  # by layer: (layer, probabilities)
        build_controls(self)
        self._connect()
        self._restore_settings(saved.load())
        self._update_controls()
        self._watcher = CloseWatcher(self)
        widget = weakref.ref(self)
        self.native.destroyed.connect(lambda *_: (lambda w: w is not None and w.wait_for_run())(widget()))

    def _connect(self) -> None:
        self._restorer.changed.connect(self._sampler.reset_choices)
        for control in (self._restorer, self._sampler, self._model, self._layers, self._slices):
            control.changed.connect(self._update_controls)
        self._model.changed.connect(self._use_preferred_restorer)
        self._follow.changed.connect(self._follow_selection)
        for control in self._remembered().values():
            control.changed.connect(self._save_settings)
        self._download.changed.connect(self.download)
        self._classify_button.changed.connect(self.classify)
        self._restore_button.changed.connect(self.restore)
        self._cancel_button.changed.connect(self.cancel)
        layers = self._viewer.layers
        layers.events.inserted.connect(self._on_layer_inserted)
        layers.events.removed.connect(self._on_layer_removed)
        layers.events.moved.connect(self._refresh_layers)
        layers.selection.events.changed.connect(self._follow_selection)
        for layer in layers:
            layer.events.name.connect(self._refresh_layers)

    def _disconnect(self) -> None:
        layers = self._viewer.layers
        for signal, slot in (
            (layers.events.inserted, self._on_layer_inserted),
            (layers.events.removed, self._on_layer_removed),
            (layers.events.moved, self._refresh_layers),
            (layers.selection.events.changed, self._follow_selection),
        ):
            signal.disconnect(slot)
        for layer in layers:
            layer.events.name.disconnect(self._refresh_layers)

    # ----------------------------------------------------------------- closing

    def close_panel(self) -> None:
        """The panel was closed (or napari quits): stop any run, ignore its late reports, save the settings."""
        if self._closed:
            return
        self._save_settings()
        self._closed = True
        run = self._run
        if run is not None:
            run.stop.set()
            run.worker.quit()
            if run.pbar is not None:
                run.pbar.close()
        try:
            self._disconnect()
        except (RuntimeError, TypeError, ValueError):  # the viewer is already gone
            pass

    def wait_for_run(self) -> None:
        """napari is quitting: stop the run and wait until its threads have finished.

        Also when the panel is destroyed (napari closes). The worker stops at its next
        step, as does a helper thread of a callback-style restorer or download (see
        :func:`daclip_plugin.steps.relay`); a process that exits while a thread still runs
        torch code aborts.
        """
        self.close_panel()
        QThreadPool.globalInstance().waitForDone(QUIT_WAIT_MS)
        steps.stop_helpers(QUIT_WAIT_MS / 1000)

    # ----------------------------------------------------------------- choices

    def _layer_choices(self, _widget=None):
        return [(layer.name, layer) for layer in self._viewer.layers if is_restorable(layer)]

    @staticmethod
    def _restorer_choices(_widget=None):
        try:
            return api.list_restorers()
        except DaclipError as exc:
            show_error(f"DA-CLIP: cannot list restorers: {exc}")
            return []

    def _sampler_choices(self, _widget=None):
        """The chosen restorer's declared samplers (all registered ones if it declares none)."""
        try:
            declared = options_of(api.get_restorer(self._restorer.value)).get("sampler")
        except (AttributeError, DaclipError):  # no restorer chosen yet, or an unknown one
            declared = None
        return list(declared.choices) if declared is not None and declared.choices else list(samplers.SAMPLERS)

    _model_choices = staticmethod(model_choices)

    @property
    def probabilities(self) -> dict[str, dict[str, float]]:
        """The probabilities of each layer's last classification or restoration, by its name now."""
        return {layer.name: scores for layer, scores in self._scores.values()}

    def _refresh_layers(self, event=None) -> None:
        self._layers.reset_choices()
        self._table.show_probabilities(self.probabilities)  # (names change, layers go)
        self._update_controls()

    def _on_layer_inserted(self, event) -> None:
        event.value.events.name.connect(self._refresh_layers)
        self._layers.reset_choices()
        if not self._layers.value and is_restorable(event.value) and not self.running:
            self._layers.value = [event.value]  # a first image is selected for you
        self._update_controls()

    def _on_layer_removed(self, event) -> None:
        event.value.events.name.disconnect(self._refresh_layers)
        self._scores.pop(id(event.value), None)
        self._refresh_layers()

    def _follow_selection(self, event=None) -> None:
        if not self._follow.value or self.running:
            return
        chosen = [layer for layer in self._viewer.layers.selection if is_restorable(layer)]
        if chosen:
            self._layers.value = chosen

    def _select_default_layers(self) -> None:
        choices = [layer for _, layer in self._layer_choices()]
        active = [layer for layer in self._viewer.layers.selection if layer in choices]
        if active:
            self._layers.value = active
        elif choices:
            self._layers.value = [choices[-1]]

    def _use_preferred_restorer(self, *_) -> None:
        """On a new model, switch a restorer that takes models to the one the model is meant for."""
        model, restorer = self._model.value, self._restorer.value
        if model is None or (restorer is not None and options_of(api.get_restorer(restorer)).get("model") is None):
            return
        preferred = api.preferred_restorer(model)
        if preferred in self._restorer_choices():
            self._restorer.value = preferred

    # ----------------------------------------------------------------- settings

    def _remembered(self) -> dict[str, Any]:
        return {name: getattr(self, "_memory" if name == "memory_budget" else f"_{name}") for name in saved.REMEMBERED}

    def _restore_settings(self, values: Mapping[str, Any]) -> None:
        """Apply saved settings that are still valid; the model's preferred restorer otherwise."""
        self._select_default_layers()
        model = values.get("model")
        self._model.value = model if model in [v for _, v in self._model_choices()] else default_model()
        restorer = values.get("restorer")
        if restorer not in self._restorer_choices():
            restorer = api.preferred_restorer(self._model.value)
        if restorer in self._restorer_choices():
            self._restorer.value = restorer
        others = {key: control for key, control in self._remembered().items() if key not in ("model", "restorer")}
        saved.apply(others, values)

    def _save_settings(self, *_) -> None:
        if not self._closed:
            saved.save({key: control.value for key, control in self._remembered().items()})

    @property
    def running(self) -> bool:
        """Whether a job (classify, restore or download) is running."""
        return self._run is not None

    def selected_layers(self) -> list[Image]:
        return list(self._layers.value)

    def settings(self) -> dict[str, Any]:
        """Every option setting of the widget (whether the restorer uses it or not)."""
        return {
            "model": self._model.value,
            "sampler": self._sampler.value,
            "steps": int(self._steps.value),
            "seed": None if self._seed.value < 0 else int(self._seed.value),
            "device": self._device.value,
            "memory_budget": int(self._memory.value) or None,
            "precision": self._precision.value,
        }

    def restorer_options(self) -> dict[str, Any]:
        """The settings the chosen restorer takes now (see the module's docstring)."""
        name = self._restorer.value
        if name is None:
            return {}
        return options_of(api.get_restorer(name)).applicable(self.settings())

    def _accepted(self) -> set[str]:
        """The settings that reach the chosen restorer or its classifier now."""
        name = self._restorer.value
        if name is None:
            return set()
        try:
            classifier = api.get_classifier(required_classifier(name))
            return set(self.restorer_options()) | set(options_of(classifier).applicable(self.settings()))
        except DaclipError:
            return set()

    def _update_controls(self, *_) -> None:
        running = self.running
        accepted = self._accepted()
        controls = {
            "model": self._model,
            "sampler": self._sampler,
            "steps": self._steps,
            "seed": self._seed,
            "device": self._device,
            "memory_budget": self._memory,
            "precision": self._precision,
        }
        for key, control in controls.items():
            control.enabled = key in accepted and not running
            reason = "" if key in accepted else f" (not used by restorer {self._restorer.value!r} with these settings)"
            control.tooltip = TOOLTIPS[key] + reason
        model = self._model.value
        if model is not None and "model" in accepted:  # the whole entry, which a narrow panel cuts
            self._model.tooltip = f"{TOOLTIPS['model']}: {self._model.current_choice}"
        self._download.enabled = not running and "model" in accepted and model is not None and not model_ready(model)
        has_layers = bool(self._layers.value)
        stacked = any(is_stack(layer) for layer in self._layers.value)
        self._slices.enabled = stacked and not running
        self._conditioning.enabled = stacked and self._slices.value == "all" and not running
        self._intensity.enabled = not running
        self._classify_button.enabled = has_layers and not running
        self._restore_button.enabled = has_layers and not running and self._restorer.value is not None
        self._cancel_button.enabled = running and not self._run.stop.is_set()
        self._layers.enabled = self._follow.enabled = not running
        self._restorer.enabled = not running

    # ----------------------------------------------------------------- jobs

    def _refuse(self, message: str, warning: bool = False) -> None:
        """A run that cannot start: say why, in a notification and in the status line."""
        (show_warning if warning else show_error)(f"DA-CLIP: {message}")
        self._status.value = message

    def _check_model(self, options: Mapping[str, Any]) -> bool:
        model = options.get("model")
        if model is None or model_ready(model):
            return True
        self._refuse(
            f"model {model!r} is not on this computer yet: press Download next to the model "
            f"(or run `daclip download {model}`), or choose a model marked 'ready'."
        )
        return False

    def classify(self, *_):
        """Press Classify: classify the selected layers in a worker thread; returns the worker (or ``None``)."""
        if self.running:
            return None
        if not self.selected_layers():
            return self._refuse("select at least one image layer", warning=True)
        try:
            jobs = [
                prepare_layer(self._viewer, layer, self._slices.value, self._intensity.value) for layer in self.selected_layers()
            ]
            classifier = required_classifier(self._restorer.value)
            chosen = classifier_options(classifier, self.settings())
        except DaclipError as exc:
            return self._refuse(str(exc))
        if not self._check_model(chosen):
            return None
        return self._launch(Run(Task.CLASSIFY, jobs), classify_jobs, jobs, classifier, chosen)

    def restore(self, *_):
        """Press Restore: restore the selected layers in a worker thread; returns the worker (or ``None``)."""
        if self.running:
            return None
        if not self.selected_layers():
            return self._refuse("select at least one image layer", warning=True)
        restorer = self._restorer.value
        try:
            chosen = self.restorer_options()
            plans = [
                plan_restore(
                    self._viewer,
                    layer,
                    restorer,
                    slices=self._slices.value,
                    intensity=self._intensity.value,
                    conditioning=self._conditioning.value,
                    **chosen,
                )
                for layer in self.selected_layers()
            ]
            for plan in plans:
                plan.classifier_options = classifier_options(plan.classifier, self.settings())
        except DaclipError as exc:
            return self._refuse(str(exc))
        if not self._check_model(chosen):
            return None
        return self._launch(Run(Task.RESTORE, [plan.job for plan in plans], plans=plans), restore_jobs, plans)

    def download(self, *_):
        """Press Download: fetch the chosen model's weights in a worker thread; returns the worker (or ``None``)."""
        if self.running or self._model.value is None:
            return None
        return self._launch(Run(Task.DOWNLOAD, [], label=self._model.value), download_job, self._model.value)

    def cancel(self, *_) -> None:
        """Stop the running job: the sampler stops within one step and nothing partial is written."""
        if self._run is None:
            return
        self._run.stop.set()
        self._status.value = f"{self._run.title}: cancelling..."
        self._run.worker.quit()
        self._update_controls()

    def _launch(self, run: Run, function, *args):
        worker = thread_worker(function, start_thread=False, ignore_errors=True)(*args, run.stop.is_set)
        for signal, slot in ((worker.yielded, self._on_yielded), (worker.errored, self._on_errored),
                             (worker.aborted, self._on_aborted), (worker.finished, self._on_finished)):
            signal.connect(slot)
        run.worker = worker
        run.current = 0 if run.jobs else None
        run.pbar = napari_progress(total=0 if not run.jobs else run.total_slices, desc=f"DA-CLIP: {run.title.lower()}")
        self._run = self.last_run = run
        self._pending = None
        self._progress.max, self._progress.value = 0, 0  # busy until the first report
        self._status.value = f"{run.title}..."
        self._update_controls()
        worker.start()
        return worker

    def _on_yielded(self, item) -> None:
        """Handle a worker's report on the main thread.

        napari's activity-dock progress bars process Qt events while they update, so this
        may be re-entered (even by ``finished``): progress reports are coalesced, the widget
        is updated before napari's bar, and a finished run is never overwritten.
        """
        run = self._run
        if self._closed or run is None:
            return
        if item[0] == "done":  # that layer is finished: the next one is being worked on
            run.current = min(item[1] + 1, len(run.jobs) - 1)
            self._on_job_done(run, item[1], item[2])
            return
        if item[0] != "bytes":
            run.current = item[1]
        done, total, _ = run.describe(item)
        if total:
            run.last_total = max(int(total), 1)
        self._pending = item
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._pending is not None and self._run is run and not self._closed:
                item, self._pending = self._pending, None
                self._show_progress(run, *run.describe(item))
        finally:
            self._flushing = False

    def _show_progress(self, run: Run, done: int, total: int, text: str) -> None:
        total, done = int(total), int(min(max(done, 0), max(total, 0)))
        self._progress.max = total  # 0: busy
        self._progress.value = done
        self._status.value = text
        pbar = run.pbar  # napari's bar last: its updates may run the whole run's remaining events
        if pbar is None or not total:
            return
        if pbar.total != total:
            pbar.total = total
        if run.pbar is pbar and done != pbar.n:
            pbar.update(done - pbar.n)
        if run.pbar is pbar:
            pbar.set_description(f"DA-CLIP: {text}")

    def _on_job_done(self, run: Run, number: int, result) -> None:
        job = run.jobs[number]
        if result.probabilities:
            self._scores[id(job.layer)] = (job.layer, result.mean_probabilities)
            self._table.show_probabilities(self.probabilities)
        if result.data is not None:
            try:
                run.plans[number].write(self._viewer, result)
            except Exception as exc:  # never leave the GUI in a broken state
                show_error(f"DA-CLIP: could not add the result of {job.name!r}: {exc}")

    def _on_errored(self, exc: BaseException) -> None:
        run = self._run
        if self._closed or run is None:
            return
        if isinstance(exc, Cancelled):
            self._on_aborted()
            return
        run.failed = True
        action = {Task.RESTORE: "restore", Task.CLASSIFY: "classification"}.get(run.task, "download")
        where = f" on layer {shorten(run.jobs[run.current].name)!r}" if run.jobs and run.current is not None else ""
        reason = str(exc) if isinstance(exc, DaclipError) else f"{type(exc).__name__}: {exc}"
        self._status.value = f"{run.title} failed{where}: {reason}"
        show_error(f"DA-CLIP: {action} failed{where}: {reason}")

    def _on_aborted(self) -> None:
        if self._run is not None:
            self._run.stop.set()  # also when cancelled from napari's activity dock
            self._run.cancelled = True

    def _on_finished(self) -> None:
        run = self._run
        if self._closed or run is None:
            return
        self._run, self._pending = None, None
        seconds = time.perf_counter() - run.started
        message = None
        if run.cancelled:
            self._status.value = f"{run.title}: cancelled"
            message = f"DA-CLIP: {run.title.lower()} cancelled"
        elif not run.failed:
            self._status.value = f"{run.title}: done in {seconds:.1f} s"
            self._progress.max = self._progress.value = run.last_total
        else:
            self._progress.max = max(self._progress.max, 1)
        if run.task is Task.DOWNLOAD:
            self._model.reset_choices()
            self._model.value = run.label
            if not run.cancelled and not run.failed:
                message = f"DA-CLIP: model {run.label!r} is ready"
        self._update_controls()
        self._follow_selection()  # napari's selection may have moved meanwhile (to a new result)
        # last: closing napari's bar and notifying both process Qt events
        if run.pbar is not None:
            run.pbar.close()
        if message is not None:
            show_info(message)
