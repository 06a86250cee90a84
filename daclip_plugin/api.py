"""The Python API: restore and classify images by restorer or classifier name."""

from __future__ import annotations

import inspect
from typing import Optional

import numpy as np

from . import imaging, plugins
from .errors import InvalidImageError, UnknownNameError
from .interfaces import Classifier, ProgressCallback, Restorer, StopCallback

DEFAULT_RESTORER = "daclip"
DEFAULT_CLASSIFIER = "daclip"


def _lookup(kind: str, registry: dict[str, plugins.Registered], name: str):
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


def check_options(kind: str, name: str, method, options: dict) -> None:
    """Raise a clear error if ``method`` does not take keyword ``options``."""
    parameters = inspect.signature(method).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        accepted = sorted(n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)
        raise UnknownNameError(
            f"{kind} {name!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(accepted) or 'none'}"
        )


def restore(
    image,
    restorer: str = DEFAULT_RESTORER,
    *,
    progress: Optional[ProgressCallback] = None,
    should_stop: Optional[StopCallback] = None,
    **options,
) -> np.ndarray:
    """Restore one image and return it in the input's shape and dtype.

    ``image`` is ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha passes
    through unchanged). ``options`` go to the restorer (for DA-CLIP: ``model``, ``sampler``,
    ``seed``, ``device``, ``tile_size``, ``precision``, ...). The input is never modified.
    """
    component = get_restorer(restorer)
    check_options("restorer", restorer, component.restore, options)
    rgb, info = imaging.normalize(image)
    result = component.restore(rgb, progress=progress, should_stop=should_stop, **options)
    result = np.asarray(result)
    if result.shape != rgb.shape or not np.isfinite(result).all():
        raise InvalidImageError(
            f"restorer {restorer!r} returned an invalid result (shape {result.shape}, "
            f"expected {rgb.shape}, finite values only)"
        )
    return imaging.denormalize(result, info)


def classify(image, classifier: str = DEFAULT_CLASSIFIER, **options) -> dict[str, float]:
    """Return the probability of each degradation for one image, most likely first."""
    component = get_classifier(classifier)
    check_options("classifier", classifier, component.classify, options)
    rgb, _ = imaging.normalize(image)
    scores = component.classify(rgb, **options)
    return dict(sorted(scores.items(), key=lambda item: item[1], reverse=True))
