"""The Python API: restore and classify images by restorer or classifier name."""

from __future__ import annotations

import contextlib
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from . import imaging, options, plugins, steps
from .errors import DaclipError, InvalidOptionError, PluginError, UnknownNameError
from .interfaces import Classifier, Estimate, Restorer, yields_steps
from .steps import ProgressCallback, Step, Steps, StopCallback

DEFAULT_RESTORER = "daclip"
DEFAULT_CLASSIFIER = "daclip"


def _lookup(kind: str, registry: dict[str, plugins.Registered], name: str):
    if not isinstance(name, str):
        raise UnknownNameError(f"the {kind} must be given by its name (text), not {type(name).__name__} {name!r}")
    if name not in registry:
        available = ", ".join(sorted(registry)) or "none (no plugin registered one)"
        raise UnknownNameError(f"unknown {kind} {name!r}; available: {available}")
    return registry[name].component


def get_restorer(name: str = DEFAULT_RESTORER) -> Restorer:
    """Return the restorer registered as ``name``."""
    return _lookup("restorer", plugins.restorers(), name)


def get_classifier(name: str = DEFAULT_CLASSIFIER) -> Classifier:
    """Return the classifier registered as ``name``."""
    return _lookup("classifier", plugins.classifiers(), name)


def list_restorers() -> list[str]:
    """Names of every registered restorer, sorted."""
    return sorted(plugins.restorers())


def list_classifiers() -> list[str]:
    """Names of every registered classifier, sorted."""
    return sorted(plugins.classifiers())


def preferred_restorer(model: Optional[str] = None) -> str:
    """The restorer a model is meant for (``tiny``: ``daclip-direct``), else :data:`DEFAULT_RESTORER`.

    What the Python API, the command line, the napari console functions and the widget use
    when no restorer is named.
    """
    if model is None:
        return DEFAULT_RESTORER
    if not isinstance(model, str):
        raise InvalidOptionError(f"option 'model' must be text (a registered model's name); got {model!r}")
    from . import weights

    return getattr(weights.get_model(model), "restorer", None) or DEFAULT_RESTORER


def steers_itself(restorer: str) -> bool:
    """Whether ``restorer`` is steered by its own degradation estimate (it implements ``estimate``).

    Its estimate's probabilities are then the ones that steered a restoration, and no
    classifier needs to run beside it.
    """
    return getattr(type(get_restorer(restorer)), "estimate", Restorer.estimate) is not Restorer.estimate


def classifier_for(restorer: str) -> Optional[str]:
    """The classifier whose probabilities go with ``restorer``'s results, or ``None``.

    The one registered under the restorer's name; else, for a restorer that
    :func:`steers_itself` (a DA-CLIP restorer), :data:`DEFAULT_CLASSIFIER`, whose numbers its
    own estimate already holds (DA-CLIP runs once per image). A restorer without either gets
    no classifier unless one is asked for: nothing runs DA-CLIP, or needs its weights, behind
    the user's back. The rule of the command line, the napari panel and console, and the
    evaluation.
    """
    names = plugins.classifiers()
    if restorer in names:
        return restorer
    if DEFAULT_CLASSIFIER in names and steers_itself(restorer):
        return DEFAULT_CLASSIFIER
    return None


def split_options(
    given: Mapping[str, Any], restorer: str, classifier: Optional[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Share ``given`` between a restorer and the classifier run with it (``None``: none).

    Each gets the options it declares; an option neither takes is an error. A classifier
    that takes a ``model`` and was not given one uses the restorer's default model, so both
    describe the same weights.
    """
    restorer_options = options.of(get_restorer(restorer))
    classifier_options = options.of(get_classifier(classifier)) if classifier is not None else None
    for_restorer, for_classifier = options.route(
        given, (f"restorer {restorer!r}", restorer_options), (f"classifier {classifier!r}", classifier_options)
    )
    default_model = getattr(restorer_options.get("model"), "default", None)
    takes_model = classifier_options is not None and classifier_options.get("model") is not None
    if takes_model and "model" not in given and default_model is not None:
        for_classifier["model"] = default_model
    return for_restorer, for_classifier


def restore(
    image,
    restorer: Optional[str] = None,
    *,
    progress: Optional[ProgressCallback] = None,
    should_stop: Optional[StopCallback] = None,
    value_range: Optional[Sequence[float]] = None,
    estimate: Optional[Estimate] = None,
    **given,
) -> np.ndarray:
    """Restore one image and return it in the input's shape and dtype.

    ``image`` is ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha passes
    through unchanged). ``restorer`` defaults to the ``model``'s preferred one (see
    :func:`preferred_restorer`). The options ``given`` go to the restorer, checked against
    its declaration (for DA-CLIP: ``model``, ``sampler``, ``steps``, ``seed``, ``device``,
    ``tile_size``, ``precision``, ...; see ``get_restorer(name).options``). ``value_range``
    ``(low, high)`` is the intensity range mapped to [0, 1] (values outside it are clipped;
    default: see :func:`daclip_plugin.imaging.normalize`). ``estimate`` (from
    :func:`estimate`) steers the restoration instead of the restorer's own estimate of this
    image. ``progress(done, total)`` is called after each step (network call) and
    ``should_stop()`` polled before each one. The input is never modified.
    """
    call = _RestoreCall(image, restorer, value_range, estimate, given)
    progress, should_stop = _callers(progress), _callers(should_stop)
    with _blame("restorer", call.name):
        result = call.component.restore(call.rgb, progress=progress, should_stop=should_stop, **call.arguments)
    return call.finished(result)


def iter_restore(
    image,
    restorer: Optional[str] = None,
    *,
    should_stop: Optional[StopCallback] = None,
    value_range: Optional[Sequence[float]] = None,
    estimate: Optional[Estimate] = None,
    **given,
) -> Steps[np.ndarray]:
    """:func:`restore` as a generator: a :class:`~daclip_plugin.steps.Step` per network call, returning the image.

    The arguments are checked and the image normalised at once, before any work (the
    built-in restorers also check the device and precision then). A restorer that
    implements ``iter_restore`` runs in the caller's thread, and stops when it is no longer
    resumed or, before its next step, once ``should_stop()`` is true (raising
    :class:`~daclip_plugin.errors.Cancelled`); one that reports through callbacks runs in a
    helper thread (:func:`daclip_plugin.steps.relay`), which stops once ``should_stop()`` is
    true or the generator is closed.
    """
    call = _RestoreCall(image, restorer, value_range, estimate, given)
    component, rgb, arguments = call.component, call.rgb, call.arguments
    should_stop = _callers(should_stop)
    if yields_steps(component):
        work = steps.until_stopped(component.iter_restore(rgb, **arguments), should_stop)
    else:

        def run(emit, stopping):
            report = lambda done, total: emit(Step(int(done), int(total)))  # noqa: E731
            return component.restore(rgb, progress=report, should_stop=stopping, **arguments)

        work = steps.relay(run, should_stop=should_stop, name=f"daclip-{call.name}")
    return _blamed(call, work)


def _blamed(call: "_RestoreCall", work: Steps) -> Steps[np.ndarray]:
    with _blame("restorer", call.name):
        result = yield from work
    return call.finished(result)


class _RestoreCall:
    """One restoration's checked arguments: the restorer, its options and the normalised image."""

    def __init__(self, image, restorer: Optional[str], value_range, estimate: Optional[Estimate], given: Mapping[str, Any]):
        self.name = restorer or preferred_restorer(given.get("model"))
        self.component = get_restorer(self.name)
        checked = options.of(self.component).check(f"restorer {self.name!r}", given)
        if estimate is not None and not isinstance(estimate, Estimate):
            raise InvalidOptionError(
                f"estimate must be a daclip_plugin.interfaces.Estimate (see daclip_plugin.api.estimate); got {estimate!r}"
            )
        if estimate is not None and not steers_itself(self.name):
            raise InvalidOptionError(f"restorer {self.name!r} takes no estimate: it is not steered by one")
        self.rgb, self.info = imaging.normalize(image, value_range)
        self.arguments = {**({} if estimate is None else {"estimate": estimate}), **checked}

    def finished(self, result) -> np.ndarray:
        """The restorer's result, checked, in the input's shape and dtype."""
        return imaging.denormalize(_checked_image(result, self.rgb.shape, self.name), self.info)


def estimate(
    image, restorer: Optional[str] = None, *, value_range: Optional[Sequence[float]] = None, **given
) -> Optional[Estimate]:
    """What would steer ``restorer`` on ``image`` (``None`` for restorers without estimates)."""
    restorer = restorer or preferred_restorer(given.get("model"))
    component = get_restorer(restorer)
    checked = options.of(component).check(f"restorer {restorer!r}", given)
    rgb, _ = imaging.normalize(image, value_range)
    with _blame("restorer", restorer):
        return component.estimate(rgb, **checked)


def classify(
    image, classifier: str = DEFAULT_CLASSIFIER, *, value_range: Optional[Sequence[float]] = None, **given
) -> dict[str, float]:
    """Return the probability of each degradation for one image, most likely first."""
    component = get_classifier(classifier)
    checked = options.of(component).check(f"classifier {classifier!r}", given)
    rgb, _ = imaging.normalize(image, value_range)
    with _blame("classifier", classifier):
        scores = component.classify(rgb, **checked)
    return _checked_scores(scores, classifier)


#: How far outside [0, 1] a restorer's float result may stray (rounding) before it is refused.
RANGE_SLACK = 1e-3


#: Marks an exception raised by the caller's own callback (not the component's failure).
_FROM_CALLER = "_daclip_raised_by_callback"


def _callers(callback):
    """``callback`` marking what it raises as the caller's, so that it passes :func:`_blame` unchanged."""
    if callback is None:
        return None

    def call(*args):
        try:
            return callback(*args)
        except Exception as exc:
            with contextlib.suppress(AttributeError):  # (an exception with __slots__ stays unmarked)
                setattr(exc, _FROM_CALLER, True)
            raise

    return call


@contextlib.contextmanager
def _blame(kind: str, name: str):
    """Name the component and its plugin when it fails with anything but a DaclipError or the
    exception of the caller's own callback."""
    try:
        yield
    except DaclipError:
        raise
    except Exception as exc:
        if getattr(exc, _FROM_CALLER, False):
            raise
        raise PluginError(f"{kind} {name!r}{_plugin(kind, name)} failed: {type(exc).__name__}: {exc}") from exc


def _plugin(kind: str, name: str) -> str:
    registry = plugins.restorers() if kind == "restorer" else plugins.classifiers()
    return f" (plugin {registry[name].plugin!r})" if name in registry else ""


def _checked_image(result, shape: tuple, restorer: str) -> np.ndarray:
    """A restorer's result, if it is what the contract says: float ``shape`` values in [0, 1]."""
    who = f"restorer {restorer!r}{_plugin('restorer', restorer)}"
    array = np.asarray(result) if isinstance(result, np.ndarray) or hasattr(result, "__array__") else None
    if array is None or array.shape != shape:
        got = f"shape {array.shape}" if array is not None else type(result).__name__
        raise PluginError(f"{who} returned {got}; expected a float array of shape {shape}")
    if array.dtype.kind != "f":
        raise PluginError(f"{who} returned {array.dtype} values; expected floats in [0, 1]")
    if not np.isfinite(array).all():
        raise PluginError(f"{who} returned NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:
        raise PluginError(f"{who} returned values in {low:g}..{high:g}; expected floats in [0, 1]")
    return array


def _checked_scores(scores, classifier: str) -> dict[str, float]:
    """A classifier's result, if it maps names to probabilities; most likely first."""
    who = f"classifier {classifier!r}{_plugin('classifier', classifier)}"
    if not isinstance(scores, Mapping) or not scores:
        raise PluginError(f"{who} returned {type(scores).__name__}; expected a dict of probabilities")
    checked = {}
    for name, value in scores.items():
        number = value if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) else None
        if not isinstance(name, str) or number is None or not (0.0 <= float(number) <= 1.0):
            raise PluginError(f"{who} returned {name!r}: {value!r}; expected names with probabilities in [0, 1]")
        checked[name] = float(number)
    return dict(sorted(checked.items(), key=lambda item: item[1], reverse=True))
