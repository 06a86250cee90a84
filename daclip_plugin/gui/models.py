"""What the widget shows about layers and models: stacks, and whether a model's files are here."""

from __future__ import annotations

from .. import stacks, weights
from ..errors import DaclipError
from .layers import layer_source


def is_stack(layer) -> bool:
    """Whether ``layer`` has leading axes (time, z, ...) besides its image axes."""
    try:
        data, rgb = layer_source(layer)
    except DaclipError:
        return False
    return data.ndim > stacks.image_ndim(rgb)


def model_ready(name: str) -> bool:
    """Whether every file of model ``name`` is on this computer."""
    try:
        return weights.availability(name) in (weights.BUILT_IN, weights.READY)
    except Exception:  # a broken registration: the menu shows it as not ready
        return False


def model_state(spec) -> str:
    """``"built in"``, ``"ready"`` or ``"not downloaded, 1.2 GB"``, for the model menu (see :func:`weights.availability`)."""
    return weights.availability(spec)
