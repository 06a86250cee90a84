"""Restore or classify napari layers from the console or a script (the widget runs the same plans).

Blocking (napari waits until the work is done; for scripts)::

    from daclip_plugin.widget import restore_layer, classify_layer
    layer = viewer.layers[0]
    classify_layer(viewer, layer, model="tiny")          # {"noisy": 0.91, ...}
    restore_layer(viewer, layer, model="tiny")            # the result layer

Non-blocking (napari stays responsive and shows progress; the result layer is added when
done)::

    from daclip_plugin.widget import start_restore
    worker = start_restore(viewer, layer, model="tiny")   # worker.quit() cancels
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info

from .. import api, stacks
from ..errors import Cancelled, DaclipError
from ..options import of as options_of
from .layers import LayerJob, check_plane_shown, prepare_layer, result_metadata, write_result
from .runtime import avoid_llvm_clash


def required_classifier(restorer: Optional[str] = None) -> str:
    """What classifies when asked to: the classifier that goes with ``restorer``
    (:func:`daclip_plugin.api.classifier_for`), else the default one; an error if none is installed."""
    name = api.classifier_for(restorer or api.DEFAULT_RESTORER)
    if name is None and api.DEFAULT_CLASSIFIER in api.list_classifiers():
        name = api.DEFAULT_CLASSIFIER
    if name is None:
        raise DaclipError("no degradation classifier is installed")
    return name


@dataclass
class RestorePlan:
    """One layer's restoration, fully decided on the main thread before any work."""

    job: LayerJob
    restorer: str
    options: dict[str, Any]
    classifier: Optional[str] = None
    classifier_options: dict[str, Any] = field(default_factory=dict)
    conditioning: str = "each"

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`daclip_plugin.stacks.restore_stack` after the data."""
        job = self.job
        return {
            "restorer": self.restorer, "rgb": job.rgb, "index": job.index, "value_range": job.value_range,
            "conditioning": self.conditioning, "reference": job.shown or None, "classifier": self.classifier,
            "classifier_options": self.classifier_options, **self.options,
        }

    def write(self, viewer, result: stacks.StackResult) -> Image:
        """Add or update the result layer, with the run's settings in its metadata."""
        job = self.job
        metadata = result_metadata(
            job.layer, result, restorer=self.restorer, options=self.options, classifier=self.classifier,
            mode=job.mode, value_range=job.value_range,
        )
        return write_result(viewer, job.layer, result, metadata, job.value_range)


def plan_restore(
    viewer,
    layer: Union[str, Image],
    restorer: Optional[str] = None,
    *,
    slices: str = "all",
    intensity: str = "contrast",
    conditioning: Optional[str] = None,
    classify: bool = True,
    **options,
) -> RestorePlan:
    """Check a layer and decide how to restore it (see :func:`restore_layer` for the arguments)."""
    job = prepare_layer(viewer, layer, slices, intensity)
    restorer = restorer or api.preferred_restorer(options.get("model"))
    options = options_of(api.get_restorer(restorer)).check(f"restorer {restorer!r}", options)
    classifier = api.classifier_for(restorer) if classify else None
    classifier_options = options_of(api.get_classifier(classifier)).applicable(options) if classifier else {}
    if conditioning is None:
        conditioning = "mean" if job.slices > 1 else "each"
    if conditioning not in stacks.CONDITIONING:
        raise DaclipError(f"conditioning must be one of {', '.join(stacks.CONDITIONING)}; got {conditioning!r}")
    if conditioning == "current" and job.shown:  # steered by the slice shown: it must be an image plane
        check_plane_shown(viewer, job.layer)
    return RestorePlan(job, restorer, dict(options), classifier, classifier_options, conditioning)


def restore_layer(
    viewer,
    layer: Union[str, Image],
    restorer: Optional[str] = None,
    *,
    slices: str = "all",
    intensity: str = "contrast",
    conditioning: Optional[str] = None,
    classify: bool = True,
    progress=None,
    should_stop=None,
    **options,
) -> Image:
    """Restore an image layer (a layer, or its name) and add or update ``"<name> [restored]"``.

    Blocking: napari waits until it is done (use :func:`start_restore` from the console).
    Returns the result layer. ``restorer`` defaults to the ``model``'s preferred one;
    ``options`` go to it (for DA-CLIP: ``model``, ``sampler``, ``steps``, ``seed``,
    ``device``, ``tile_size``, ...). ``slices``: ``"all"`` or ``"current"``. ``intensity``:
    which values map to [0, 1], ``"contrast"`` (the layer's contrast limits: what you see),
    ``"data"`` (the data's range) or ``"dtype"`` (the dtype's full range). ``conditioning``
    for stacks (see :func:`daclip_plugin.stacks.restore_stack`; default ``"mean"`` when
    several slices are restored). With ``classify``, a restorer without its own estimate is
    paired with its namesake classifier for the record of probabilities.
    """
    avoid_llvm_clash()
    plan = plan_restore(
        viewer, layer, restorer, slices=slices, intensity=intensity, conditioning=conditioning, classify=classify, **options
    )
    result = stacks.restore_stack(plan.job.data, progress=progress, should_stop=should_stop, **plan.arguments())
    return plan.write(viewer, result)


def start_restore(viewer, layer: Union[str, Image], restorer: Optional[str] = None, **arguments):
    """:func:`restore_layer` in a worker thread: returns the started napari worker at once.

    Progress shows in napari's activity dock; the result layer is added when the work is
    done, errors appear as notifications, and ``worker.quit()`` cancels (nothing is added).
    """
    avoid_llvm_clash()
    plan = plan_restore(viewer, layer, restorer, **arguments)
    bar = napari_progress(total=0, desc=f"DA-CLIP: restoring {plan.job.name!r}")

    def work(should_stop):
        return (yield from stacks.iter_restore_stack(plan.job.data, should_stop=should_stop, **plan.arguments()))

    worker = thread_worker(work, start_thread=False, ignore_errors=True)(lambda: worker.abort_requested)

    def on_event(event):
        if event.steps:
            bar.total = event.slices * event.steps
            bar.n = event.slice * event.steps + event.step
        bar.set_description(f"DA-CLIP: restoring {plan.job.name!r} {event.describe()}")

    def on_error(exc):
        if not isinstance(exc, Cancelled):
            show_error(f"DA-CLIP: restoring {plan.job.name!r} failed: {exc}")

    worker.yielded.connect(on_event)
    worker.returned.connect(lambda result: (plan.write(viewer, result), show_info(f"DA-CLIP: {plan.job.name!r} restored")))
    worker.errored.connect(on_error)
    worker.finished.connect(bar.close)
    worker.start()
    return worker


def classify_layer(
    viewer,
    layer: Union[str, Image],
    classifier: Optional[str] = None,
    *,
    slices: str = "current",
    intensity: str = "contrast",
    **options,
) -> dict[str, float]:
    """Degradation probabilities of an image layer (averaged over the slices), most likely first.

    Blocking; nothing is written to the viewer and the layer is not modified.
    """
    avoid_llvm_clash()
    job = prepare_layer(viewer, layer, slices, intensity)
    classifier = classifier or required_classifier()
    result = stacks.classify_stack(job.data, classifier, rgb=job.rgb, index=job.index, value_range=job.value_range, **options)
    return result.mean_probabilities


def classifier_options(classifier: Optional[str], settings: Mapping[str, Any]) -> dict:
    """The ``settings`` that ``classifier`` takes."""
    if classifier is None:
        return {}
    return options_of(api.get_classifier(classifier)).applicable(settings)
