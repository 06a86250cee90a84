"""What the widget shows about layers and models: stacks, and whether a model's files are here."""

from __future__ import annotations

from typing import Optional

from napari.utils.notifications import show_error

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


def model_choices(_widget=None) -> list[tuple[str, str]]:
    """The model menu: ``("name  (state)", name)`` for every registered model."""
    try:
        specs = weights.list_models()
    except DaclipError as exc:
        show_error(f"DA-CLIP: cannot list models: {exc}")
        return []
    return [(f"{spec.name}  ({model_state(spec)})", spec.name) for spec in specs]


def default_model() -> Optional[str]:
    """The model a new panel starts with: the default one if it is here, else one that is, else the default."""
    names = [value for _, value in model_choices()]
    ready = [name for name in names if model_ready(name)]
    for name in (weights.DEFAULT_MODEL if weights.DEFAULT_MODEL in ready else None, *ready, weights.DEFAULT_MODEL):
        if name in names:
            return name
    return None
