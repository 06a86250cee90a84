"""A direct (one network call) restorer built from DA-CLIP and the conditional UNet.

The IR-SDE restorer needs 100 UNet passes and a well-trained noise predictor; at the small
scale of the embedded model a *direct* restorer is far more effective: the same
:class:`~daclip_plugin.nn.unet.ConditionalUNet` architecture, conditioned on the same DA-CLIP
contexts, trained to output the restored image in one call.

Convention (shared by training and inference, see :func:`direct_restore`)::

    restored = lq + unet(xt=lq, cond=lq, time=DIRECT_TIME,
                         text_context=degra_context, image_context=image_context)

The UNet's first input channels (``xt - cond``) are then zero and it predicts the residual
``gt - lq``; ``DIRECT_TIME`` is the constant timestep ``0``. The contexts are DA-CLIP's
content and degradation features of the whole low-quality image (``encode_image(...,
control=True)``, unnormalised), exactly as the IR-SDE pipeline computes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import WeightsNotFoundError
from ..interfaces import Estimate
from ..nn.daclip import DEGRADATIONS
from ..nn.unet import ConditionalUNet
from ..steps import ProgressCallback, Step, Steps, StopCallback, drive
from . import tiling
from .heap import reuse_freed_memory
from .pipeline import DEFAULT_OVERLAP, ConditionedModel, tile_size_for
from .unet_call import PreparedUNet

#: The timestep the direct restorer passes to the UNet (a constant: there is no diffusion).
DIRECT_TIME = 0


def direct_restore(
    unet: ConditionalUNet,
    lq: Tensor,
    degra_context: Optional[Tensor],
    image_context: Optional[Tensor],
) -> Tensor:
    """The direct restorer's output for a batch ``lq`` (B, 3, H, W): ``lq`` + predicted residual.

    Not clamped (training takes its L1 loss on this); :class:`DirectRestorer` clamps to [0, 1].
    """
    residual = unet(lq, lq, DIRECT_TIME, text_context=degra_context, image_context=image_context)
    return lq + residual.to(lq.dtype)


class DirectRestorer(ConditionedModel):
    """DA-CLIP contexts + one conditional-UNet pass: ``restore(rgb) -> rgb``.

    Images are ``float32`` ``(H, W, 3)`` RGB arrays in ``[0, 1]``. ``classify`` gives the
    DA-CLIP degradation probabilities of the same pass.
    """

    name = "daclip-direct"
    description = "DA-CLIP-conditioned UNet, one pass (the small embedded model's fast restorer)"

    def restore(
        self,
        rgb: np.ndarray,
        *,
        progress: Optional[ProgressCallback] = None,
        should_stop: Optional[StopCallback] = None,
        **settings,
    ) -> np.ndarray:
        """:meth:`iter_restore` run to its end: ``progress(passes, total)`` after every UNet
        pass (one per tile), ``should_stop()`` polled before each one."""
        return drive(self.iter_restore(rgb, **settings), progress, should_stop)

    @torch.no_grad()
    def iter_restore(
        self,
        rgb: np.ndarray,
        *,
        tile_size: Optional[int] = None,
        tile_overlap: int = DEFAULT_OVERLAP,
        memory_budget: Optional[int] = None,
        precision: str = "fp32",
        compile: bool = False,
        estimate: Optional[Estimate] = None,
    ) -> Steps[np.ndarray]:
        """Restore ``rgb`` in one UNet pass: yields a step per tile, returns a ``float32`` image in ``[0, 1]``.

        ``tile_size`` bounds the UNet's input (``None``: tiles only when the pass would need
        more than ``memory_budget`` MiB, which also bounds how long one step takes; ``0``:
        never). ``precision`` is one of :data:`~daclip_plugin.engine.devices.PRECISIONS`; ``compile``
        compiles the UNet (see :func:`~daclip_plugin.engine.unet_call.compiled_forward`).
        ``estimate`` steers the UNet instead of a DA-CLIP pass over ``rgb``.
        """
        call = PreparedUNet(self.unet, self.device, precision, compile)  # an impossible precision fails before any work
        with reuse_freed_memory(self.device):
            degra, content = self.contexts(rgb, estimate)
            tile_size, tile_overlap = tile_size_for(rgb.shape[:2], tile_size, tile_overlap, self.unet, memory_budget)
            dtype = next(self.unet.parameters()).dtype
            lq = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
            lq = lq.to(self.device, dtype)
            degra, content = degra.to(dtype), content.to(dtype)

            def residual(x: Tensor, _cond: Tensor) -> Tensor:
                return direct_restore(call, x, degra, content) - x

            if tile_size:
                out = (yield from tiling.iter_tiled(residual, lq, lq, tile_size, tile_overlap)).add_(lq)
            else:
                out = direct_restore(call, lq, degra, content)
                yield Step(1, 1)
            return out.clamp_(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()


def load_model(
    model: str = "tiny",
    *,
    daclip_path: Optional[Union[str, Path]] = None,
    unet_path: Optional[Union[str, Path]] = None,
    download: bool = False,
    progress: Optional[ProgressCallback] = None,
    device: Union[str, torch.device, None] = "auto",
    prompts: Sequence[str] = DEGRADATIONS,
) -> DirectRestorer:
    """The direct restorer of a registered model: its DA-CLIP and its ``direct`` file.

    ``unet_path`` overrides the model's direct restorer UNet (and lets a model without one,
    e.g. an official release, be used with a direct UNet of the same context width);
    ``daclip_path`` its DA-CLIP. Files are found through :func:`daclip_plugin.weights.resolve`
    (``download=True`` fetches missing ones) and loaded once per file and device.
    """
    from .. import weights
    from .devices import select_device

    spec = weights.get_model(model)
    if spec.direct is None and unet_path is None:
        others = ", ".join(repr(name) for name in weights.models_with("direct")) or "none is registered"
        raise WeightsNotFoundError(
            f"model {spec.name!r} has no direct restorer weights, so restorer {DirectRestorer.name!r} cannot use it. "
            f"Models with direct restorer weights: {others}. Use restorer 'daclip' (IR-SDE diffusion) with "
            f"{spec.name!r}, or give a direct restorer UNet with unet_path=."
        )
    loaded = weights.load(
        spec, select_device(device), roles=("daclip", "direct"), daclip_path=daclip_path, direct_path=unet_path,
        download=download, progress=progress,
    )
    return DirectRestorer(loaded.daclip, loaded.direct, prompts, spec.clip_view)
