"""The DA-CLIP restoration pipeline.

RGB float image -> DA-CLIP (degradation probabilities and the UNet's contexts) -> IR-SDE
sampling with the conditional UNet (optionally in overlapping tiles) -> RGB float image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from .. import imaging, weights
from ..errors import DaclipError, InvalidImageError, InvalidOptionError
from ..imaging import unit_to_uint8
from ..interfaces import Estimate
from ..nn.daclip import DEGRADATIONS, DaCLIP, DegradationClassifier, DegradationEstimate
from ..nn.unet import ConditionalUNet
from ..steps import ProgressCallback, Steps, StopCallback, drive
from . import samplers, tiling
from .devices import memory_budget as memory_budget_bytes
from .devices import select_device
from .heap import reuse_freed_memory
from .sde import IRSDESchedule
from .unet_call import PreparedUNet

#: The IR-SDE options of the released models (``test.yml`` of the official code).
OFFICIAL_SDE = {"max_sigma": 50, "T": 100, "schedule": "cosine", "eps": 0.005}
DEFAULT_OVERLAP = tiling.DEFAULT_OVERLAP


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.size == 0:
        raise InvalidImageError(f"expected a non-empty (H, W, 3) RGB image, got shape {getattr(rgb, 'shape', None)}")
    imaging.check_size(*rgb.shape[:2])
    if not np.isfinite(rgb).all():
        raise InvalidImageError("the image has NaN or infinite values")


def tile_size_for(
    shape, tile_size: Optional[int], overlap: int, unet: ConditionalUNet, memory_budget: Optional[int] = None
) -> tuple[int, int]:
    """The tiles of ``unet``'s calls on an image of ``shape`` (see :func:`daclip_plugin.engine.tiling.resolve_tile_size`).

    ``tile_size=None`` decides by ``memory_budget`` (MiB; ``None``: see
    :func:`daclip_plugin.engine.devices.memory_budget`). Errors are :class:`InvalidOptionError`.
    """
    device = next(unet.parameters()).device
    budget = memory_budget_bytes(device, memory_budget) if tile_size is None else 0
    try:
        return tiling.resolve_tile_size(shape, tile_size, overlap, unet.working_bytes_per_pixel(), budget)
    except ValueError as exc:
        raise InvalidOptionError(str(exc)) from None


class ConditionedModel:
    """A DA-CLIP model and a UNet conditioned on its contexts: the shared part of the restorers.

    Images are ``float32`` ``(H, W, 3)`` RGB arrays in ``[0, 1]``
    (see :func:`daclip_plugin.imaging.normalize` for other inputs).
    """

    def __init__(
        self, daclip: DaCLIP, unet: ConditionalUNet, prompts: Sequence[str] = DEGRADATIONS, clip_view: str = "resize"
    ):
        self.daclip = daclip.eval()
        self.unet = unet.eval()
        self.prompts = tuple(prompts)
        self.classifier = DegradationClassifier(self.daclip, self.prompts, view=clip_view)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def estimate(self, rgb: np.ndarray) -> DegradationEstimate:
        """One DA-CLIP pass: degradation probabilities and the UNet's contexts."""
        _check_rgb(rgb)
        return self.classifier.estimate(unit_to_uint8(rgb))

    def classify(self, rgb: np.ndarray) -> dict[str, float]:
        """Probability of each degradation prompt."""
        return classify_rgb(self.classifier, rgb)

    def conditioning(self, rgb: np.ndarray) -> Estimate:
        """:meth:`estimate` as a restorer's :class:`~daclip_plugin.interfaces.Estimate` (contexts on the CPU)."""
        found = self.estimate(rgb)
        contexts = {"degradation": found.degra_context.cpu(), "image": found.image_context.cpu()}
        return Estimate(found.as_dict(), contexts)

    def contexts(self, rgb: np.ndarray, estimate: Optional[Estimate] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The UNet's ``(degradation, image)`` contexts on its device: from ``estimate``, or one DA-CLIP pass."""
        if estimate is None:
            found = self.estimate(rgb)
            return found.degra_context, found.image_context
        _check_rgb(rgb)
        degradation, image = (estimate.contexts.get(key) for key in ("degradation", "image"))
        model = self.daclip.logit_scale  # the device and dtype of DA-CLIP's own contexts
        expected = (1, self.classifier.text_features.shape[-1])
        if not all(torch.is_tensor(c) and tuple(c.shape) == expected for c in (degradation, image)):
            raise DaclipError(
                f"this estimate does not fit the model: it needs DA-CLIP contexts of shape {expected} "
                "(an estimate made by a DA-CLIP restorer with the same model)"
            )
        return degradation.to(model.device, model.dtype), image.to(model.device, model.dtype)


class DaclipPipeline(ConditionedModel):
    """A loaded DA-CLIP model and IR-SDE restoration UNet, ready to classify and restore images."""

    def __init__(
        self,
        daclip: DaCLIP,
        unet: ConditionalUNet,
        schedule: Optional[IRSDESchedule] = None,
        prompts: Sequence[str] = DEGRADATIONS,
        clip_view: str = "resize",
    ):
        super().__init__(daclip, unet, prompts, clip_view)
        self.schedule = schedule if schedule is not None else IRSDESchedule.from_config(OFFICIAL_SDE)

    def restore(
        self,
        rgb: np.ndarray,
        *,
        progress: Optional[ProgressCallback] = None,
        should_stop: Optional[StopCallback] = None,
        **settings,
    ) -> np.ndarray:
        """:meth:`iter_restore` run to its end: ``progress(calls, total)`` after every network
        call, ``should_stop()`` polled before each one (see :func:`daclip_plugin.steps.drive`)."""
        return drive(self.iter_restore(rgb, **settings), progress, should_stop)

    @torch.no_grad()
    def iter_restore(
        self,
        rgb: np.ndarray,
        *,
        sampler: str = samplers.DEFAULT_SAMPLER,
        sampler_options: Optional[Mapping[str, Any]] = None,
        seed: Optional[int] = 0,
        tile_size: Optional[int] = None,
        tile_overlap: int = DEFAULT_OVERLAP,
        memory_budget: Optional[int] = None,
        precision: str = "fp32",
        compile: bool = False,
        estimate: Optional[Estimate] = None,
    ) -> Steps[np.ndarray]:
        """Restore ``rgb`` by IR-SDE sampling: yields a step per network call, returns a ``float32`` image in ``[0, 1]``.

        ``sampler`` names a sampler of :mod:`daclip_plugin.engine.samplers`, and ``sampler_options``
        its own options (MaRS: ``steps``, ``solver``, ``order``, ``time_schedule``, ...).
        ``seed`` makes the run reproducible on a given device (``None``: fresh randomness).
        ``tile_size`` bounds the UNet's input (``None``: tiles only when one call would need
        more than ``memory_budget`` MiB, see :func:`tile_size_for`; ``0``: never). ``precision`` is one of :data:`PRECISIONS`;
        ``compile`` compiles the UNet (see :func:`~daclip_plugin.engine.unet_call.compiled_forward`).
        ``estimate`` (see :meth:`conditioning`) steers the UNet instead of a DA-CLIP pass over ``rgb``.
        """
        sample = samplers.get(sampler).load()
        call = PreparedUNet(self.unet, self.device, precision, compile)  # an impossible precision fails before any work
        device = self.device
        with reuse_freed_memory(device):
            contexts = self.contexts(rgb, estimate)
            lq = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
            tile, overlap = tile_size_for(lq.shape[-2:], tile_size, tile_overlap, self.unet, memory_budget)
            noise_fn = self._noise_fn(call, lq, contexts, tile, overlap)
            generator = torch.Generator(device=device)
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(int(seed))
            out = yield from sample(noise_fn, lq, self.schedule, generator=generator, **dict(sampler_options or {}))
            return out.clamp_(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()

    @staticmethod
    def _noise_fn(call: PreparedUNet, lq: torch.Tensor, contexts: tuple[torch.Tensor, torch.Tensor], tile: int, overlap: int):
        degradation, image = contexts

        def predict(x, cond, t):
            return call(x, cond, t, text_context=degradation, image_context=image)

        if not tile:
            return lambda x, t: predict(x, lq, t)
        return lambda x, t: tiling.apply_tiled(lambda xs, cs: predict(xs, cs, t), x, lq, tile, overlap)


def load_pipeline(
    model: str = weights.DEFAULT_MODEL,
    *,
    daclip_path: Optional[Union[str, Path]] = None,
    unet_path: Optional[Union[str, Path]] = None,
    download: bool = False,
    progress: Optional[ProgressCallback] = None,
    device: Union[str, torch.device, None] = "auto",
    prompts: Sequence[str] = DEGRADATIONS,
) -> DaclipPipeline:
    """The pipeline of a registered model (see :func:`daclip_plugin.weights.resolve`) on ``device``.

    Explicit file paths override the model's own. The modules are the shared ones of
    :func:`daclip_plugin.weights.load`, loaded once per file and device. ``download=True`` fetches missing files, reporting
    ``progress(bytes_done, bytes_total)``.
    """
    loaded = weights.load(
        model, select_device(device), roles=("daclip", "unet"), daclip_path=daclip_path, unet_path=unet_path,
        download=download, progress=progress,
    )
    sde = IRSDESchedule.from_config(loaded.spec.sde or OFFICIAL_SDE)
    return DaclipPipeline(loaded.daclip, loaded.unet, sde, tuple(prompts), loaded.spec.clip_view)


def load_classifier(
    model: str = weights.DEFAULT_MODEL,
    *,
    daclip_path: Optional[Union[str, Path]] = None,
    download: bool = False,
    progress: Optional[ProgressCallback] = None,
    device: Union[str, torch.device, None] = "auto",
    prompts: Sequence[str] = DEGRADATIONS,
) -> DegradationClassifier:
    """The degradation classifier of a registered model: its DA-CLIP file only (no UNet is resolved or loaded)."""
    loaded = weights.load(
        model, select_device(device), roles=("daclip",), daclip_path=daclip_path, download=download, progress=progress
    )
    return DegradationClassifier(loaded.daclip, tuple(prompts), view=loaded.spec.clip_view)


def classify_rgb(classifier: DegradationClassifier, rgb: np.ndarray) -> dict[str, float]:
    """``classifier``'s probabilities for a float RGB image in [0, 1] (checked first)."""
    _check_rgb(rgb)
    return classifier.estimate(unit_to_uint8(rgb)).as_dict()
