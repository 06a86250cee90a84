"""The panel's controls and their layout (the behaviour is :mod:`daclip_plugin.gui.widget`'s)."""

from __future__ import annotations

import weakref

from magicgui.widgets import CheckBox, ComboBox, Container, Label, ProgressBar, PushButton, Select, SpinBox
from qtpy.QtCore import QEvent, QObject
from qtpy.QtGui import QFontMetrics
from qtpy.QtWidgets import QApplication, QComboBox, QSizePolicy

from ..engine import samplers
from ..engine.devices import menu_devices
from .table import ProbabilityTable

#: What each setting control does (its tooltip while it applies).
TOOLTIPS = {
    "model": "model weights",
    "sampler": "posterior: the official 100-step sampler; sde: reverse SDE, 100 steps; mars: fast, 'Steps' network calls",
    "steps": "network calls of the MaRS sampler (10-20 match the 100-step posterior sampler)",
    "seed": "random seed (-1: a fresh seed every run)",
    "device": "where the model runs",
    "memory_budget": "memory a network call may use; larger images are restored in tiles "
                     "(auto: a safe share of the free memory, or DACLIP_MEMORY_BUDGET)",
    "precision": "the UNet's arithmetic: fp32 is exact; bf16 is faster on GPUs and on CPUs with bfloat16 "
                 "instructions (about 1e-2 of the output's range); tf32 and fp16 on NVIDIA GPUs",
}
#: The precisions the panel offers (what the device cannot run is refused when a run starts).
PRECISION_CHOICES = [("fp32 (exact)", "fp32"), ("bf16 (faster)", "bf16"), ("tf32 (NVIDIA)", "tf32"),
                     ("fp16 (NVIDIA)", "fp16")]
#: The memory budgets the panel offers, in MiB (0: automatic).
MEMORY_CHOICES = [("auto", 0), *((f"{mib // 1024} GiB" if mib >= 1024 else f"{mib} MiB", mib)
                                 for mib in (256, 512, 1024, 2048, 4096, 8192, 16384, 32768))]


def build_controls(panel) -> None:
    """Create the panel's controls (``panel._NAME``) and lay them out in a compact form."""
    panel._layers = Select(label="Image layers", choices=panel._layer_choices, allow_multiple=True,
                           tooltip="image layers to classify or restore (Ctrl/Shift-click for several)")
    panel._layers.native.setMaximumHeight(90)
    panel._follow = CheckBox(text="follow napari's selection", value=False,
                             tooltip="select here the image layers selected in napari's layer list")
    panel._restorer = ComboBox(label="Restorer", choices=panel._restorer_choices, tooltip="restoration method")
    panel._model = ComboBox(label="Model", choices=panel._model_choices, tooltip=TOOLTIPS["model"])
    panel._download = PushButton(text="Download", tooltip="download the selected model's weights")
    panel._sampler = ComboBox(label="Sampler", choices=panel._sampler_choices, tooltip=TOOLTIPS["sampler"])
    steps = samplers.MARS_OPTIONS.get("steps")
    panel._steps = SpinBox(label="Steps", value=steps.default, min=steps.minimum, max=steps.maximum, tooltip=TOOLTIPS["steps"])
    panel._seed = SpinBox(label="Seed", value=0, min=-1, max=2**31 - 1, tooltip=TOOLTIPS["seed"])
    panel._device = ComboBox(label="Device", choices=lambda _=None: menu_devices(), tooltip=TOOLTIPS["device"])
    panel._memory = ComboBox(label="Memory", choices=MEMORY_CHOICES, value=0, tooltip=TOOLTIPS["memory_budget"])
    panel._precision = ComboBox(label="Precision", choices=PRECISION_CHOICES, value="fp32", tooltip=TOOLTIPS["precision"])
    panel._slices = ComboBox(label="Slices", choices=[("current slice", "current"), ("all slices", "all")], value="current",
                             tooltip="for stacks (time, z, ...): restore the slice shown now, or every slice")
    panel._conditioning = ComboBox(
        label="Steering", choices=[("whole stack (mean)", "mean"), ("shown slice", "current"), ("each slice", "each")],
        value="mean", tooltip="for all slices of a stack: what DA-CLIP estimate steers them (one for all keeps them alike)",
    )
    panel._intensity = ComboBox(
        label="Intensity", choices=[("contrast limits", "contrast"), ("data range", "data"), ("full dtype range", "dtype")],
        value="contrast", tooltip="which values count as black and white: the layer's contrast limits (what you see), "
                                  "its data's range, or its dtype's full range",
    )
    panel._classify_button = PushButton(text="Classify", tooltip="degradation probabilities of the selected layers")
    panel._restore_button = PushButton(text="Restore", tooltip="restore the selected layers into new '[restored]' layers")
    panel._cancel_button = PushButton(text="Cancel", tooltip="stop the running job within one step", enabled=False)
    panel._progress = ProgressBar(value=0, min=0, max=1)
    panel._status = Label(value="Ready")
    panel._status.native.setWordWrap(True)
    panel._status.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens the panel
    panel._table = ProbabilityTable()

    def row(label: str, *widgets) -> Container:
        line = Container(widgets=list(widgets), layout="horizontal", labels=False, label=label)
        line.margins = (0, 0, 0, 0)
        return line

    panel._form = Container(
        widgets=[panel._layers, row("", panel._follow), panel._restorer, row("Model", panel._model, panel._download),
                 panel._sampler, panel._steps, panel._seed, panel._device, panel._precision, panel._memory,
                 panel._intensity, panel._slices, panel._conditioning],
        labels=True,
    )
    panel._form.margins = (0, 0, 0, 0)
    buttons = row("", panel._classify_button, panel._restore_button, panel._cancel_button)
    panel.margins = (4, 4, 4, 4)
    panel.extend([panel._form, buttons, panel._progress, panel._status, panel._table])
    for combo in (panel._restorer, panel._model, panel._sampler, panel._device, panel._precision, panel._memory, panel._slices,
                  panel._conditioning, panel._intensity):
        combo.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.native.setMinimumContentsLength(8)  # long model names must not widen the panel
    metrics = QFontMetrics(panel.native.font())
    width = max(64, int(1.15 * max(metrics.horizontalAdvance(w.label) for w in panel._form)))
    for control in panel._form:
        labeled = control._labeled_widget()
        if labeled is not None:
            labeled.label_width = width


class CloseWatcher(QObject):
    """Tells the widget when napari takes it out of its dock (the panel's X) or quits."""

    def __init__(self, widget: "Container") -> None:
        super().__init__(widget.native)
        self._widget = weakref.ref(widget)
        widget.native.installEventFilter(self)
        QApplication.instance().aboutToQuit.connect(self._quitting)

    def _call(self, method: str) -> None:
        widget = self._widget()
        if widget is not None:
            getattr(widget, method)()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.ParentChange and obj.parent() is None:
            self._call("close_panel")
        return False

    def _quitting(self) -> None:
        self._call("wait_for_run")
