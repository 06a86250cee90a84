"""The napari dock widget, and the layer-level functions it shares with the napari console.

This is the only module of the package that imports napari, magicgui or Qt. The work itself
is done by the pure :mod:`daclip_plugin.stacks` (array -> normalise -> model -> denormalise);
this module picks the data out of layers and writes results back as layers:

* :func:`restore_layer` / :func:`classify_layer`: synchronous, for the console and scripts::

      from daclip_plugin.widget import restore_layer
      restore_layer(viewer, "noisy", restorer="daclip", model="tiny")

* :class:`DaclipWidget`: the same functions driven from napari ``thread_worker`` threads,
  with progress (every sampling step, slice and layer) in the widget and in napari's
  activity dock, and a Cancel button that stops within one step.

Results are written to a layer named ``"<source name> [restored]"`` with the source's scale,
translate, rotate, shear, affine, units, axis labels, RGB flag and colormap/contrast; a later
run on the same source updates that layer. The source layer is never modified.

Which settings reach a restorer: the widget passes ``model``, ``sampler``, ``steps``,
``seed`` and ``device`` only to a restorer that declares that option, and only while it
applies (``steps``: with the MaRS sampler); see
:meth:`daclip_plugin.options.OptionSet.applicable`. Controls that do not apply are greyed
out, and the sampler menu lists the restorer's declared samplers. Options given to
:func:`restore_layer` by hand are passed as they are.
"""

from __future__ import annotations

import copy
import os
import weakref
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generator, Iterable, Mapping, Optional, Union

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    Label,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
    Table,
)
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info, show_warning
from napari.utils.transforms import CompositeAffine
from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor, QFont, QFontMetrics
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy

from . import __version__, api, samplers, stacks, weights
from .errors import Cancelled, DaclipError
from .options import of as options_of

if TYPE_CHECKING:
    import napari.viewer

__all__ = [
    "DaclipWidget",
    "RESULT_SUFFIX",
    "classify_layer",
    "current_index",
    "layer_source",
    "restore_layer",
    "result_metadata",
    "result_name",
    "write_result",
]

RESULT_SUFFIX = " [restored]"
METADATA_KEY = "daclip"
SLICES = ("current", "all")
#: What each setting control does (its tooltip while it applies).
TOOLTIPS = {
    "model": "model weights",
    "sampler": "posterior: the official 100-step sampler; sde: reverse SDE, 100 steps; mars: fast, 'Steps' network calls",
    "steps": "network calls of the MaRS sampler (10-20 match the 100-step posterior sampler)",
    "seed": "random seed (random: a fresh seed every run)",
    "device": "where the model runs",
}


def _avoid_llvm_clash() -> None:
    """Keep PyTorch from importing Triton into a process whose OpenGL driver loaded LLVM.

    napari draws with OpenGL; Mesa's drivers (llvmpipe software rendering, radeonsi) load the
    system ``libLLVM``, and importing Triton afterwards (PyTorch imports it through
    torchvision/open_clip) crashes the whole process with a segmentation fault, because
    Triton's own LLVM symbols clash with it. Triton only serves ``torch.compile`` kernels,
    which DA-CLIP does not use, so when that LLVM is already loaded and Triton is not, Triton
    is marked unavailable (PyTorch then treats it as not installed). Set
    ``DACLIP_ALLOW_TRITON=1`` to skip this.
    """
    if "triton" in sys.modules or os.environ.get("DACLIP_ALLOW_TRITON", "") not in ("", "0"):
        return
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            clash = any("libLLVM" in line for line in maps)
    except OSError:  # not Linux: no such clash known
        return
    if clash:
        sys.modules["triton"] = None  # type: ignore[assignment]


def _unwrap(obj):
    """napari hands plugins proxies of its objects; use the objects themselves."""
    return getattr(obj, "__wrapped__", obj)


# --------------------------------------------------------------------------- layers in


def is_restorable(layer) -> bool:
    """Whether ``layer`` is an image layer whose data can be restored (offered in the widget)."""
    layer = _unwrap(layer)
    if not isinstance(layer, Image) or isinstance(layer, Labels):
        return False
    data = layer.data[0] if layer.multiscale else layer.data
    return np.dtype(data.dtype).kind in "uif"


def _find_layer(viewer, layer):
    if isinstance(layer, str):
        if layer not in _unwrap(viewer).layers:
            names = ", ".join(repr(item.name) for item in _unwrap(viewer).layers) or "none"
            raise DaclipError(f"no layer named {layer!r} in the viewer; layers: {names}")
        return _unwrap(viewer).layers[layer]
    return _unwrap(layer)


def layer_source(layer) -> tuple[Any, bool]:
    """``(data, rgb)`` of an image layer: the full-resolution level of a multiscale layer.

    Raises :class:`~daclip_plugin.errors.DaclipError` for anything that is not a restorable
    image (labels, shapes, points, complex or boolean data, ...).
    """
    layer = _unwrap(layer)
    if isinstance(layer, Labels) or not isinstance(layer, Image):
        kind = type(layer).__name__.lower()
        raise DaclipError(f"layer {layer.name!r} is a {kind} layer: only image layers can be restored or classified")
    data = layer.data[0] if layer.multiscale else layer.data
    rgb = bool(layer.rgb)
    try:
        stacks.check_stack(data, rgb)
    except DaclipError as exc:
        raise DaclipError(f"layer {layer.name!r}: {exc}") from exc
    return data, rgb


def current_index(viewer, layer) -> tuple[int, ...]:
    """The leading-axis index of the slice of ``layer`` that ``viewer`` shows now."""
    layer = _unwrap(layer)
    data, rgb = layer_source(layer)
    lead = data.ndim - stacks.image_ndim(rgb)
    if lead <= 0:
        return ()
    coords = layer.world_to_data(_unwrap(viewer).dims.point)
    return tuple(int(np.clip(np.round(c), 0, n - 1)) for c, n in zip(coords[:lead], data.shape[:lead]))


@dataclass
class LayerJob:
    """What a run needs from one layer, read on the main thread before the work starts."""

    layer: Image
    data: Any
    rgb: bool
    index: Optional[tuple[int, ...]]  # None: all slices

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def slices(self) -> int:
        return len(stacks.slice_indices(tuple(self.data.shape), self.rgb, self.index))

    @property
    def mode(self) -> str:
        return "all" if self.index is None else "current"


def prepare_layer(viewer, layer, slices: str = "all") -> LayerJob:
    """Check ``layer`` and read what a run on it needs (``slices``: ``"current"`` or ``"all"``)."""
    if slices not in SLICES:
        raise DaclipError(f"slices must be one of {SLICES}, got {slices!r}")
    layer = _find_layer(viewer, layer)
    data, rgb = layer_source(layer)
    lead = data.ndim - stacks.image_ndim(rgb)
    index = current_index(viewer, layer) if slices == "current" and lead > 0 else None
    return LayerJob(layer, data, rgb, index)


# --------------------------------------------------------------------------- layers out


def result_name(layer) -> str:
    """``"<source name> [restored]"``."""
    return f"{_unwrap(layer).name}{RESULT_SUFFIX}"


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _resolved_device(device):
    if device != "auto":
        return device
    try:
        from .devices import select_device

        return str(select_device("auto"))
    except Exception:  # the record is informative only
        return device


def result_metadata(
    source,
    result: stacks.StackResult,
    *,
    restorer: str,
    options: Mapping[str, Any],
    classifier: Optional[str] = None,
    mode: str = "all",
) -> dict:
    """The result layer's metadata: the source's, plus the run's settings under ``"daclip"``."""
    source = _unwrap(source)
    try:
        metadata = copy.deepcopy(dict(source.metadata))
    except Exception:  # something that cannot be copied deeply
        metadata = dict(source.metadata)
    metadata.pop(METADATA_KEY, None)
    record = {
        "source": source.name,
        "restorer": restorer,
        "model": options.get("model"),
        "sampler": options.get("sampler"),
        "seed": options.get("seed"),
        "device": _resolved_device(options["device"]) if "device" in options else None,
        "options": _jsonable(dict(options)),
        "slices": mode,
        "offset": list(result.offset),
        "classifier": classifier,
        "probabilities": result.mean_probabilities or None,
        "version": __version__,
    }
    if len(result.probabilities) > 1:
        record["slice_probabilities"] = {str(list(k)): v for k, v in result.probabilities.items()}
    metadata[METADATA_KEY] = record
    return metadata


def _translate_for(source, offset: Iterable[int]) -> np.ndarray:
    """The translate that puts a block starting at ``offset`` (leading axes) where it was."""
    source = _unwrap(source)
    shift = np.zeros(source.ndim)
    offset = list(offset)
    shift[: len(offset)] = offset
    linear = CompositeAffine(
        scale=source.scale, translate=np.zeros(source.ndim), rotate=source.rotate, shear=source.shear, ndim=source.ndim
    ).linear_matrix
    return np.asarray(source.translate, dtype=float) + linear @ shift


def write_result(viewer, source, result: stacks.StackResult, metadata: Mapping) -> Image:
    """Add the restored data as ``"<source> [restored]"``, or update that layer if it exists.

    The new layer has the source's spatial transform (a single restored slice is placed at
    its slice), units, axis labels, RGB flag and display settings.
    """
    viewer, source = _unwrap(viewer), _unwrap(source)
    if result.data is None:
        raise DaclipError("a classification has no image to write")
    name = result_name(source)
    geometry = {
        "scale": source.scale,
        "translate": _translate_for(source, result.offset),
        "rotate": source.rotate,
        "shear": source.shear,
        "affine": source.affine,
        "units": source.units,
        "axis_labels": source.axis_labels,
    }
    display: dict[str, Any] = {"blending": source.blending, "opacity": source.opacity}
    if not source.rgb:
        display.update(colormap=source.colormap, contrast_limits=source.contrast_limits, gamma=source.gamma)
    existing = viewer.layers[name] if name in viewer.layers else None
    if (
        isinstance(existing, Image)
        and not isinstance(existing, Labels)
        and not existing.multiscale
        and bool(existing.rgb) == bool(source.rgb)
        and existing.data.ndim == result.data.ndim
    ):
        existing.data = result.data
        for key, value in geometry.items():
            setattr(existing, key, value)
        existing.metadata = dict(metadata)
        if not source.rgb:
            existing.contrast_limits = source.contrast_limits
        return existing
    position = None
    if existing is not None:
        position = viewer.layers.index(existing)
        viewer.layers.remove(existing)
    layer = viewer.add_image(result.data, name=name, rgb=source.rgb, metadata=dict(metadata), **geometry, **display)
    if position is not None:
        viewer.layers.move(viewer.layers.index(layer), position)
    return layer


# --------------------------------------------------------------------------- console API


def paired_classifier(restorer: str) -> Optional[str]:
    """The classifier registered under the restorer's name (``"daclip"`` -> ``"daclip"``), if any."""
    return restorer if restorer in api.list_classifiers() else None


def default_classifier(restorer: Optional[str] = None) -> str:
    """The restorer's own classifier, else the default one, else the first registered."""
    names = api.list_classifiers()
    if restorer in names:
        return restorer
    if api.DEFAULT_CLASSIFIER in names:
        return api.DEFAULT_CLASSIFIER
    if not names:
        raise DaclipError("no degradation classifier is installed")
    return names[0]


def restore_layer(
    viewer,
    layer: Union[str, Image],
    restorer: str = api.DEFAULT_RESTORER,
    *,
    slices: str = "all",
    classify: bool = True,
    progress=None,
    should_stop=None,
    **options,
) -> Image:
    """Restore an image layer (by name or object) and add or update ``"<name> [restored]"``.

    Synchronous: returns the result layer. ``options`` go to the restorer as given (for
    DA-CLIP: ``model``, ``sampler``, ``seed``, ``device``, ``tile_size``, ...). With
    ``classify`` the restorer's own classifier (if it has one) records the degradation
    probabilities in the result's metadata. ``slices``: ``"all"`` or ``"current"``.
    """
    _avoid_llvm_clash()
    job = prepare_layer(viewer, layer, slices)
    classifier = paired_classifier(restorer) if classify else None
    classifier_options = _classifier_options(classifier, options)
    result = stacks.restore_stack(
        job.data,
        restorer,
        rgb=job.rgb,
        index=job.index,
        classifier=classifier,
        classifier_options=classifier_options,
        progress=progress,
        should_stop=should_stop,
        **options,
    )
    metadata = result_metadata(job.layer, result, restorer=restorer, options=options, classifier=classifier, mode=job.mode)
    return write_result(viewer, job.layer, result, metadata)


def classify_layer(
    viewer,
    layer: Union[str, Image],
    classifier: Optional[str] = None,
    *,
    slices: str = "current",
    **options,
) -> dict[str, float]:
    """Degradation probabilities of an image layer (averaged over the slices), most likely first.

    Nothing is written to the viewer and the layer is not modified.
    """
    _avoid_llvm_clash()
    job = prepare_layer(viewer, layer, slices)
    classifier = classifier or default_classifier()
    result = stacks.classify_stack(job.data, classifier, rgb=job.rgb, index=job.index, **options)
    return result.mean_probabilities


def _classifier_options(classifier: Optional[str], settings: Mapping[str, Any]) -> dict:
    if classifier is None:
        return {}
    return options_of(api.get_classifier(classifier)).applicable(settings)


# --------------------------------------------------------------------------- worker generators


def _tagged(number: int, generator) -> Generator[tuple, None, Any]:
    """Yield ``("progress", number, event)`` for each event; return the generator's value."""
    while True:
        try:
            event = next(generator)
        except StopIteration as stop:
            return stop.value
        yield ("progress", number, event)


def _restore_jobs(jobs, restorer, options, classifier, classifier_options, should_stop):
    for number, job in enumerate(jobs):
        events = stacks.iter_restore_stack(
            job.data,
            restorer,
            rgb=job.rgb,
            index=job.index,
            classifier=classifier,
            classifier_options=classifier_options,
            should_stop=should_stop,
            **options,
        )
        result = yield from _tagged(number, events)
        yield ("done", number, result)


def _classify_jobs(jobs, classifier, options, should_stop):
    for number, job in enumerate(jobs):
        events = stacks.iter_classify_stack(
            job.data, classifier, rgb=job.rgb, index=job.index, should_stop=should_stop, **options
        )
        result = yield from _tagged(number, events)
        yield ("done", number, result)


def _download_job(name, should_stop):
    def run(emit, stop):
        return weights.download(name, progress=lambda done, total: emit(("bytes", done, total)), should_stop=stop)

    return (yield from stacks.relay(run, should_stop=should_stop, name="daclip-download"))


# --------------------------------------------------------------------------- the widget

_TOP_COLOUR = QColor(0, 150, 200, 130)


class DaclipWidget(Container):
    """Classify and restore image layers with DA-CLIP (or any installed restorer)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        _avoid_llvm_clash()
        self._viewer = _unwrap(viewer)
        self._closed = False
        self._worker = None
        self._stop = threading.Event()
        self._pbar = None
        self._jobs: list[LayerJob] = []
        self._task = ""
        self._started = 0.0
        self._slices_before: list[int] = []
        self._total_slices = 1
        self._cancelled = False
        self._failed = False
        self._pending = None
        self._flushing = False
        self._current: Optional[int] = None
        self._last_total = 1
        self._run_settings: tuple = ("", {}, None)
        #: probabilities of the last classification of each layer, by layer name
        self.probabilities: dict[str, dict[str, float]] = {}

        self._layers = Select(
            label="Image layers",
            choices=self._layer_choices,
            allow_multiple=True,
            tooltip="Image layers to classify or restore (Ctrl/Shift-click for several)",
        )
        self._layers.native.setMaximumHeight(96)
        self._restorer = ComboBox(label="Restorer", choices=self._restorer_choices, tooltip="restoration method")
        self._model = ComboBox(label="Model", choices=self._model_choices, tooltip="model weights")
        self._download = PushButton(text="Download", tooltip="download the selected model's weights")
        self._model_row = Container(widgets=[self._model, self._download], layout="horizontal", labels=False, label="Model")
        self._model_row.margins = (0, 0, 0, 0)
        self._sampler = ComboBox(label="Sampler", choices=self._sampler_choices, tooltip=TOOLTIPS["sampler"])
        steps = samplers.MARS_OPTIONS.get("steps")
        self._steps = SpinBox(label="Steps", value=steps.default, min=steps.minimum, max=steps.maximum, tooltip=TOOLTIPS["steps"])
        self._seed = SpinBox(label="Seed", value=0, min=-1, max=2**31 - 1, tooltip=TOOLTIPS["seed"])
        self._seed.native.setSpecialValueText("random")
        self._device = ComboBox(label="Device", choices=self._device_choices, tooltip="where the model runs")
        self._slices = ComboBox(
            label="Slices",
            choices=[("current slice", "current"), ("all slices", "all")],
            value="current",
            tooltip="for stacks (time, z, ...): restore the slice shown now, or every slice",
        )
        self._classify_button = PushButton(text="Classify", tooltip="degradation probabilities of the selected layers")
        self._restore_button = PushButton(text="Restore", tooltip="restore the selected layers into new '[restored]' layers")
        self._cancel_button = PushButton(text="Cancel", tooltip="stop the running job within one step", enabled=False)
        self._buttons = Container(
            widgets=[self._classify_button, self._restore_button, self._cancel_button],
            layout="horizontal",
            labels=False,
        )
        self._buttons.margins = (0, 0, 0, 0)
        self._progress = ProgressBar(value=0, min=0, max=1)
        self._status = Label(value="Ready")
        self._status.native.setWordWrap(True)
        self._status.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._table_title = Label(value="<b>Degradation probabilities</b>")
        self._table = Table()
        self._setup_table()
        self._form = Container(
            widgets=[
                self._layers,
                self._restorer,
                self._model_row,
                self._sampler,
                self._steps,
                self._seed,
                self._device,
                self._slices,
            ],
            labels=True,
        )
        self._form.margins = (0, 0, 0, 0)
        self._align_labels()
        self.extend([self._form, self._buttons, self._progress, self._status, self._table_title, self._table])

        self._restorer.changed.connect(self._sampler.reset_choices)
        self._restorer.changed.connect(self._update_controls)
        self._sampler.changed.connect(self._update_controls)
        self._model.changed.connect(self._use_preferred_restorer)
        self._model.changed.connect(self._update_controls)
        self._layers.changed.connect(self._update_controls)
        self._download.changed.connect(self._start_download)
        self._classify_button.changed.connect(self._start_classify)
        self._restore_button.changed.connect(self._start_restore)
        self._cancel_button.changed.connect(self.cancel)

        layers = self._viewer.layers
        layers.events.inserted.connect(self._on_layer_inserted)
        layers.events.removed.connect(self._on_layer_removed)
        layers.events.moved.connect(self._refresh_layers)
        for layer in layers:
            layer.events.name.connect(self._refresh_layers)
        self._select_default_layers()
        self._select_default_model()
        self._update_controls()
        widget = weakref.ref(self)
        self.native.destroyed.connect(lambda *_: (lambda w: w is not None and w._shutdown())(widget()))

    def _shutdown(self) -> None:
        """The widget was closed (or its viewer): stop any run and ignore its late reports."""
        self._closed = True
        self._stop.set()
        if self._worker is not None:
            self._worker.quit()
        pbar, self._pbar = self._pbar, None
        if pbar is not None:
            pbar.close()

    def _align_labels(self) -> None:
        """One label column for the form (magicgui measures labels before napari's larger font applies)."""
        metrics = QFontMetrics(self.native.font())
        width = max(96, int(1.4 * max(metrics.horizontalAdvance(w.label) for w in self._form)))
        for control in self._form:
            labeled = control._labeled_widget()
            if labeled is not None:
                labeled.label_width = width

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

    @staticmethod
    def _device_choices(_widget=None):
        try:
            from .devices import available_devices

            return available_devices()
        except Exception:  # no torch: the restorer will say so
            return ["auto", "cpu"]

    @staticmethod
    def _model_choices(_widget=None):
        try:
            specs = weights.list_models()
        except DaclipError as exc:
            show_error(f"DA-CLIP: cannot list models: {exc}")
            return []
        return [(f"{spec.name}  ({_model_state(spec)})", spec.name) for spec in specs]

    def _refresh_layers(self, event=None) -> None:
        self._layers.reset_choices()
        self._update_controls()

    def _on_layer_inserted(self, event) -> None:
        event.value.events.name.connect(self._refresh_layers)
        self._layers.reset_choices()
        if not self._layers.value and is_restorable(event.value) and not self.running:
            self._layers.value = [event.value]  # a first image is selected for you
        self._update_controls()

    def _on_layer_removed(self, event) -> None:
        event.value.events.name.disconnect(self._refresh_layers)
        self._refresh_layers()

    def _select_default_layers(self) -> None:
        choices = [layer for _, layer in self._layer_choices()]
        active = [layer for layer in self._viewer.layers.selection if layer in choices]
        if active:
            self._layers.value = active
        elif choices:
            self._layers.value = [choices[-1]]

    def _select_default_model(self) -> None:
        names = [value for _, value in self._model_choices()]
        ready = [name for name in names if _model_ready(name)]
        for name in (weights.DEFAULT_MODEL if weights.DEFAULT_MODEL in ready else None, *ready, weights.DEFAULT_MODEL):
            if name in names:
                self._model.value = name
                return

    def _use_preferred_restorer(self) -> None:
        """Switch to the restorer the chosen model is meant for (``tiny``: ``daclip-direct``)."""
        if self._model.value is None:
            return
        preferred = weights.get_model(self._model.value).restorer
        if preferred in self._restorer_choices():
            self._restorer.value = preferred

    # ----------------------------------------------------------------- settings

    @property
    def running(self) -> bool:
        """Whether a job (classify, restore or download) is running."""
        return self._worker is not None

    def selected_layers(self) -> list[Image]:
        return list(self._layers.value)

    def settings(self) -> dict[str, Any]:
        """Every setting of the widget (whether the restorer uses it or not)."""
        return {
            "model": self._model.value,
            "sampler": self._sampler.value,
            "steps": int(self._steps.value),
            "seed": None if self._seed.value < 0 else int(self._seed.value),
            "device": self._device.value,
        }

    def restorer_options(self) -> dict[str, Any]:
        """The settings the chosen restorer accepts (see the module's docstring)."""
        name = self._restorer.value
        if name is None:
            return {}
        return options_of(api.get_restorer(name)).applicable(self.settings())

    def _accepted(self) -> set[str]:
        """The settings that reach the chosen restorer or its classifier now."""
        name = self._restorer.value
        accepted: set[str] = set()
        if name is None:
            return accepted
        try:
            accepted |= set(self.restorer_options())
            classifier = api.get_classifier(default_classifier(name))
            accepted |= set(options_of(classifier).applicable(self.settings()))
        except DaclipError:
            pass
        return accepted

    def _update_controls(self, *_) -> None:
        running = self.running
        accepted = self._accepted()
        controls = {"model": self._model, "sampler": self._sampler, "steps": self._steps, "seed": self._seed, "device": self._device}
        for key, control in controls.items():
            control.enabled = key in accepted and not running
            reason = "" if key in accepted else f" (not used by restorer {self._restorer.value!r} with these settings)"
            control.tooltip = TOOLTIPS[key] + reason
        model = self._model.value
        self._download.enabled = not running and "model" in accepted and model is not None and not _model_ready(model)
        has_layers = bool(self._layers.value)
        stacked = any(_is_stack(layer) for layer in self._layers.value)
        self._slices.enabled = stacked and not running
        self._classify_button.enabled = has_layers and not running
        self._restore_button.enabled = has_layers and not running and self._restorer.value is not None
        self._cancel_button.enabled = running and not self._stop.is_set()
        self._layers.enabled = not running
        self._restorer.enabled = not running

    # ----------------------------------------------------------------- jobs

    def _prepare(self) -> Optional[list[LayerJob]]:
        layers = self.selected_layers()
        if not layers:
            show_warning("DA-CLIP: select at least one image layer")
            return None
        try:
            return [prepare_layer(self._viewer, layer, self._slices.value) for layer in layers]
        except DaclipError as exc:
            show_error(f"DA-CLIP: {exc}")
            return None

    def _check_model(self, options: Mapping[str, Any]) -> bool:
        model = options.get("model")
        if model is None or _model_ready(model):
            return True
        show_error(
            f"DA-CLIP: model {model!r} is not on this computer yet: press Download next to the "
            f"model (or run `daclip download {model}`), or choose a model marked 'ready'."
        )
        return False

    def _start_classify(self, *_):
        """Classify the selected layers in a worker thread; returns the worker."""
        if self.running:
            return None
        jobs = self._prepare()
        if jobs is None:
            return None
        try:
            classifier = default_classifier(self._restorer.value)
            chosen = options_of(api.get_classifier(classifier)).applicable(self.settings())
        except DaclipError as exc:
            show_error(f"DA-CLIP: {exc}")
            return None
        if not self._check_model(chosen):
            return None
        self._jobs = jobs
        self._task = "Classifying"
        return self._launch(_classify_jobs, jobs, classifier, chosen)

    def _start_restore(self, *_):
        """Restore the selected layers in a worker thread; returns the worker."""
        if self.running:
            return None
        jobs = self._prepare()
        if jobs is None:
            return None
        restorer = self._restorer.value
        try:
            chosen = self.restorer_options()
            classifier = paired_classifier(restorer)
            classifier_options = _classifier_options(classifier, self.settings())
        except DaclipError as exc:
            show_error(f"DA-CLIP: {exc}")
            return None
        if not self._check_model(chosen):
            return None
        self._jobs = jobs
        self._task = "Restoring"
        self._run_settings = (restorer, chosen, classifier)
        return self._launch(_restore_jobs, jobs, restorer, chosen, classifier, classifier_options)

    def _start_download(self, *_):
        """Download the selected model's weights in a worker thread; returns the worker."""
        if self.running or self._model.value is None:
            return None
        self._jobs = []
        self._task = f"Downloading {self._model.value!r}"
        return self._launch(_download_job, self._model.value)

    def classify(self):
        """Press Classify (returns the worker, or ``None`` if nothing started)."""
        return self._start_classify()

    def restore(self):
        """Press Restore (returns the worker, or ``None`` if nothing started)."""
        return self._start_restore()

    def download(self):
        """Press Download (returns the worker, or ``None`` if nothing started)."""
        return self._start_download()

    def cancel(self, *_) -> None:
        """Stop the running job: the sampler stops within one step and nothing partial is written."""
        if self._worker is None:
            return
        self._stop.set()
        self._status.value = f"{self._task}: cancelling..."
        self._worker.quit()
        self._update_controls()

    def _launch(self, function, *args):
        self._stop = threading.Event()
        self._current = 0 if self._jobs else None
        self._last_total = 1
        self._slices_before = []
        total = 0
        for job in self._jobs:
            self._slices_before.append(total)
            total += job.slices
        self._total_slices = max(total, 1)
        worker = thread_worker(function, start_thread=False, ignore_errors=True)(*args, self._stop.is_set)
        worker.yielded.connect(self._on_yielded)
        worker.errored.connect(self._on_errored)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._started = time.perf_counter()
        self._pbar = napari_progress(total=0 if not self._jobs else self._total_slices, desc=f"DA-CLIP: {self._task.lower()}")
        self._progress.max = max(self._total_slices, 1)
        self._progress.value = 0
        self._status.value = f"{self._task}..."
        self._update_controls()
        worker.start()
        return worker

    def _on_yielded(self, item) -> None:
        """Handle a worker's report on the main thread.

        napari's activity-dock progress bars process Qt events while they update, so this
        may be re-entered (even by ``finished``): progress reports are coalesced, the widget
        is updated before napari's bar, and a finished run is never overwritten.
        """
        if self._closed:
            return
        if item[0] != "bytes":
            self._current = item[1]
        if item[0] != "done":
            self._last_total = max(int(self._describe_progress(item)[1]), 1)
        if item[0] == "done":
            _, number, result = item
            self._on_job_done(self._jobs[number], result)
            return
        self._pending = item
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._pending is not None and self._worker is not None and not self._closed:
                item, self._pending = self._pending, None
                self._show_progress(*self._describe_progress(item))
        finally:
            self._flushing = False

    def _describe_progress(self, item) -> tuple[int, int, str]:
        if item[0] == "bytes":
            _, done, total = item
            text = f"{self._task}: {weights.format_size(done)}"
            if total:
                text += f" of {weights.format_size(total)}"
            return done, total or max(done, 1), text
        _, number, event = item
        unit = max(event.steps, 1)
        done = (self._slices_before[number] + event.slice) * unit + min(event.step, unit)
        text = f"{self._task} {self._jobs[number].name!r}"
        if len(self._jobs) > 1:
            text += f" (layer {number + 1}/{len(self._jobs)})"
        if event.describe():
            text += f": {event.describe()}"
        return done, self._total_slices * unit, text

    def _show_progress(self, done: int, total: int, text: str) -> None:
        total = max(int(total), 1)
        done = int(min(max(done, 0), total))
        self._progress.max = total
        self._progress.value = done
        self._status.value = text
        pbar = self._pbar  # napari's bar last: its updates may run the whole run's remaining events
        if pbar is not None and pbar.total != total:
            pbar.total = total
        if pbar is self._pbar and pbar is not None and done != pbar.n:
            pbar.update(done - pbar.n)
        if pbar is self._pbar and pbar is not None:
            pbar.set_description(f"DA-CLIP: {text}")

    def _on_job_done(self, job: LayerJob, result: stacks.StackResult) -> None:
        if result.probabilities:
            self.probabilities[job.name] = result.mean_probabilities
            self._show_probabilities()
        if result.data is not None:
            restorer, options, classifier = self._run_settings
            metadata = result_metadata(job.layer, result, restorer=restorer, options=options, classifier=classifier, mode=job.mode)
            try:
                write_result(self._viewer, job.layer, result, metadata)
            except Exception as exc:  # never leave the GUI in a broken state
                show_error(f"DA-CLIP: could not add the result of {job.name!r}: {exc}")

    def _on_errored(self, exc: BaseException) -> None:
        if self._closed:
            return
        if isinstance(exc, Cancelled):
            self._on_aborted()
            return
        self._failed = True
        action = {"Restoring": "restore", "Classifying": "classification"}.get(self._task, "download")
        where = ""
        if self._jobs and self._current is not None:
            where = f" on layer {self._jobs[self._current].name!r}"
        reason = str(exc) if isinstance(exc, DaclipError) else f"{type(exc).__name__}: {exc}"
        self._status.value = f"{self._task} failed: {reason}"
        show_error(f"DA-CLIP: {action} failed{where}: {reason}")

    def _on_aborted(self) -> None:
        self._stop.set()  # also when cancelled from napari's activity dock
        self._cancelled = True

    def _on_finished(self) -> None:
        if self._closed:
            return
        cancelled, failed = self._cancelled, self._failed
        self._cancelled = self._failed = False
        self._pending = None
        self._worker = None
        pbar, self._pbar = self._pbar, None
        seconds = time.perf_counter() - self._started
        message = None
        if cancelled:
            self._status.value = f"{self._task}: cancelled"
            message = f"DA-CLIP: {self._task.lower()} cancelled"
        elif not failed:
            self._status.value = f"{self._task}: done in {seconds:.1f} s"
            self._progress.max = self._last_total
            self._progress.value = self._last_total
        if self._task.startswith("Downloading"):
            value = self._model.value
            self._model.reset_choices()
            self._model.value = value
            if not cancelled and not failed:
                message = f"DA-CLIP: model {value!r} is ready"
        self._update_controls()
        # last: closing napari's bar and notifying both process Qt events
        if pbar is not None:
            pbar.close()
        if message is not None:
            show_info(message)

    # ----------------------------------------------------------------- probabilities

    def _setup_table(self) -> None:
        table = self._table.native
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        table.verticalHeader().setDefaultSectionSize(20)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._table.visible = False
        self._table_title.visible = False

    def _show_probabilities(self) -> None:
        """One column per classified layer, one row per degradation; the top class highlighted."""
        if not self.probabilities:
            self._table.visible = self._table_title.visible = False
            return
        layers = list(self.probabilities)
        names = list(dict.fromkeys(name for scores in self.probabilities.values() for name in scores))
        first = self.probabilities[layers[-1]]
        names.sort(key=lambda name: first.get(name, 0.0), reverse=True)
        data = [[f"{100 * self.probabilities[layer].get(name, 0.0):.1f} %" for layer in layers] for name in names]
        self._table.value = {"data": data, "index": names, "columns": layers}
        table = self._table.native
        bold = QFont(table.font())
        bold.setBold(True)
        for column, layer in enumerate(layers):
            scores = self.probabilities[layer]
            top = max(scores, key=scores.get) if scores else None
            for row, name in enumerate(names):
                item = table.item(row, column)
                if item is None:
                    continue
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if name == top:
                    item.setBackground(QBrush(_TOP_COLOUR))
                    item.setFont(bold)
        height = table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(len(names)))
        table.setFixedHeight(height + 2 * table.frameWidth() + 2)
        self._table.visible = self._table_title.visible = True


def _is_stack(layer) -> bool:
    try:
        data, rgb = layer_source(layer)
    except DaclipError:
        return False
    return data.ndim > stacks.image_ndim(rgb)


def _model_ready(name: str) -> bool:
    try:
        return all(item.found for item in weights.status(name))
    except Exception:
        return False


def _model_state(spec) -> str:
    if _model_ready(spec.name):
        return "built in" if spec.embedded else "ready"
    files = weights.status(spec)
    sizes = [item.size for item in files if not item.found]
    size = weights.format_size(sum(sizes)) if sizes and None not in sizes else ""
    return f"not downloaded{', ' + size if size else ''}"
