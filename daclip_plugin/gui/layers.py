"""Layers in and out: what a run reads from an image layer, and how its result is written back.

The source layer is never modified. Results go to a layer named ``"<source name> [restored]"``
with the source's spatial transform (a single restored slice is placed at its slice), units,
axis labels, RGB flag and display settings; a later run on the same source updates it.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

import numpy as np
from napari.layers import Image, Labels
from napari.utils.transforms import CompositeAffine

from .. import __version__, imaging, persist, stacks
from ..engine.devices import select_device
from ..errors import DaclipError
from .runtime import unwrap

RESULT_SUFFIX = " [restored]"
METADATA_KEY = "daclip"
SLICES = ("current", "all")
#: Which intensities map to [0, 1]: the layer's contrast limits (what you see), the range of
#: its data, or its dtype's full range (uint8, uint16; other data: its own range).
INTENSITY = ("contrast", "data", "dtype")


def is_restorable(layer) -> bool:
    """Whether ``layer`` is an image layer whose data can be restored (offered in the widget)."""
    layer = unwrap(layer)
    if not isinstance(layer, Image) or isinstance(layer, Labels):
        return False
    data = layer.data[0] if layer.multiscale else layer.data
    return np.dtype(data.dtype).kind in "uif"


def find_layer(viewer, layer):
    if isinstance(layer, str):
        if layer not in unwrap(viewer).layers:
            names = ", ".join(repr(item.name) for item in unwrap(viewer).layers) or "none"
            raise DaclipError(f"no layer named {layer!r} in the viewer; layers: {names}")
        return unwrap(viewer).layers[layer]
    return unwrap(layer)


def layer_source(layer) -> tuple[Any, bool]:
    """``(data, rgb)`` of an image layer: the full-resolution level of a multiscale layer.

    Raises :class:`~daclip_plugin.errors.DaclipError` for anything that is not a restorable
    image (labels, shapes, points, complex or boolean data, ...).
    """
    layer = unwrap(layer)
    if isinstance(layer, Labels) or not isinstance(layer, Image):
        kind = type(layer).__name__.lower()
        raise DaclipError(f"layer {layer.name!r} is a {kind} layer: only image layers can be restored or classified")
    data = layer.data[0] if layer.multiscale else layer.data
    rgb = bool(layer.rgb)
    try:
        stacks.check_stack(data, rgb)
        imaging.check_size(*data.shape[data.ndim - stacks.image_ndim(rgb):][:2])
    except DaclipError as exc:
        raise DaclipError(f"layer {layer.name!r}: {exc}") from exc
    return data, rgb


def current_index(viewer, layer) -> tuple[int, ...]:
    """The leading-axis index of the slice of ``layer`` that ``viewer`` shows now."""
    layer = unwrap(layer)
    data, rgb = layer_source(layer)
    lead = data.ndim - stacks.image_ndim(rgb)
    if lead <= 0:
        return ()
    coords = layer.world_to_data(unwrap(viewer).dims.point)
    return tuple(int(np.clip(np.round(c), 0, n - 1)) for c, n in zip(coords[:lead], data.shape[:lead]))


def check_plane_shown(viewer, layer) -> None:
    """Refuse the shown slice (to restore, or to steer) unless the viewer shows the image plane (the
    last two axes) in 2D: a stack is restored plane by plane, and another view's slice is not one of them."""
    dims = unwrap(viewer).dims
    plane = {dims.ndim - 2, dims.ndim - 1}
    if dims.ndisplay != 2 or set(dims.displayed) != plane:
        view = "a 3D view" if dims.ndisplay != 2 else f"axes {tuple(dims.displayed)}"
        raise DaclipError(
            f"layer {unwrap(layer).name!r}: the shown slice is a plane of its last two axes, but the viewer shows "
            f"{view}: show axes {tuple(sorted(plane))} in 2D, or restore all slices"
        )


@dataclass
class LayerJob:
    """What a run needs from one layer, read on the main thread before the work starts."""

    layer: Image
    data: Any
    rgb: bool
    index: Optional[tuple[int, ...]]  # None: all slices
    value_range: Optional[tuple[float, float]] = None  # None: chosen from the data
    shown: tuple[int, ...] = ()  # the slice the viewer shows

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def slices(self) -> int:
        return len(stacks.slice_indices(tuple(self.data.shape), self.rgb, self.index))

    @property
    def mode(self) -> str:
        return "all" if self.index is None else "current"


def intensity_range(layer, intensity: str = "contrast") -> Optional[tuple[float, float]]:
    """The intensity range of ``layer`` that maps to [0, 1] (see :data:`INTENSITY`)."""
    if intensity not in INTENSITY:
        raise DaclipError(f"intensity must be one of {', '.join(INTENSITY)}; got {intensity!r}")
    layer = unwrap(layer)
    if intensity == "dtype":
        return None
    low, high = (float(v) for v in (layer.contrast_limits if intensity == "contrast" else layer.contrast_limits_range))
    if not low < high:
        raise DaclipError(
            f"layer {layer.name!r} has an empty {intensity} range ({low:g}..{high:g}): choose another intensity range"
        )
    return low, high


def prepare_layer(viewer, layer, slices: str = "all", intensity: str = "contrast") -> LayerJob:
    """Check ``layer`` and read what a run on it needs.

    ``slices``: ``"current"`` or ``"all"``; ``intensity``: see :data:`INTENSITY`.
    """
    if slices not in SLICES:
        raise DaclipError(f"slices must be one of {SLICES}, got {slices!r}")
    layer = find_layer(viewer, layer)
    data, rgb = layer_source(layer)
    shown = current_index(viewer, layer)
    index = shown if slices == "current" and shown else None
    if index is not None:
        check_plane_shown(viewer, layer)
    return LayerJob(layer, data, rgb, index, intensity_range(layer, intensity), shown)


# --------------------------------------------------------------------------- layers out


def result_name(layer) -> str:
    """``"<source name> [restored]"``."""
    return f"{unwrap(layer).name}{RESULT_SUFFIX}"


def _free_result_name(viewer, name: str) -> str:
    """``name``, or ``name (2)``, ``name (3)``, ...: the first that is free or an earlier result."""
    candidates = (name if number == 1 else f"{name} ({number})" for number in itertools.count(1))
    return next(n for n in candidates if n not in viewer.layers or METADATA_KEY in viewer.layers[n].metadata)


def result_metadata(
    source,
    result: stacks.StackResult,
    *,
    restorer: str,
    options: Mapping[str, Any],
    classifier: Optional[str] = None,
    mode: str = "all",
    value_range: Optional[tuple[float, float]] = None,
) -> dict:
    """The result layer's metadata: the source's, plus the run's settings under ``"daclip"``.

    ``probabilities`` are those that steered the restoration (averaged over the slices), or
    the classifier's; ``slice_probabilities`` gives each slice's, and ``conditioning`` says
    whether each slice was steered by its own estimate, by one slice's or by their mean.
    """
    source = unwrap(source)
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
        "device": str(select_device(options["device"])) if "device" in options else None,
        "options": persist.json_safe(dict(options)),
        "slices": mode,
        "offset": list(result.offset),
        "value_range": list(value_range) if value_range is not None else None,
        "classifier": classifier,
        "probabilities": result.mean_probabilities or None,
        **result.steering,
        "version": __version__,
    }
    if len(result.probabilities) > 1:
        record["slice_probabilities"] = {str(list(k)): v for k, v in result.probabilities.items()}
    metadata[METADATA_KEY] = record
    return metadata


def _translate_for(source, offset: Iterable[int]) -> np.ndarray:
    """The translate that puts a block starting at ``offset`` (leading axes) where it was."""
    source = unwrap(source)
    shift = np.zeros(source.ndim)
    offset = list(offset)
    shift[: len(offset)] = offset
    linear = CompositeAffine(
        scale=source.scale, translate=np.zeros(source.ndim), rotate=source.rotate, shear=source.shear, ndim=source.ndim
    ).linear_matrix
    return np.asarray(source.translate, dtype=float) + linear @ shift


def _contrast_limits(data: np.ndarray, value_range: Optional[tuple[float, float]]) -> list[float]:
    if value_range is not None:
        return [float(value_range[0]), float(value_range[1])]
    low, high = float(np.min(data)), float(np.max(data))
    return [low, high] if low < high else [low, low + 1.0]


def write_result(
    viewer, source, result: stacks.StackResult, metadata: Mapping, value_range: Optional[tuple[float, float]] = None
) -> Image:
    """Add the restored data as ``"<source> [restored]"``, or update that layer if it is an earlier result.

    A layer of that name that is not a result of this plugin (the user's own) is never
    touched: the result is then named ``"<source> [restored] (2)"`` (or the next free number).

    The new layer has the source's spatial transform (a single restored slice is placed at
    its slice), units, axis labels, RGB flag and display settings; its contrast limits are
    the ``value_range`` the data was restored in, else the result's own range.
    """
    viewer, source = unwrap(viewer), unwrap(source)
    if result.data is None:
        raise DaclipError("a classification has no image to write")
    name = _free_result_name(viewer, result_name(source))
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
    limits = _contrast_limits(result.data, value_range)
    if not source.rgb:
        display.update(colormap=source.colormap, contrast_limits=limits, gamma=source.gamma)
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
            existing.contrast_limits = limits
        return existing
    position = None
    if existing is not None:
        position = viewer.layers.index(existing)
        viewer.layers.remove(existing)
    layer = viewer.add_image(result.data, name=name, rgb=source.rgb, metadata=dict(metadata), **geometry, **display)
    if position is not None:
        viewer.layers.move(viewer.layers.index(layer), position)
    return layer
