"""The UNet call the restorers make, prepared once for a device and a precision.

``prepare_unet(unet, device, precision)`` returns the callable that the IR-SDE pipeline and
the direct restorer call, so that benchmarks and users time exactly what runs.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from ..nn.unet import ConditionalUNet
from .devices import check_precision, select_device, unet_precision


class PreparedUNet:
    """``(x, cond, t, text_context=..., image_context=...) -> float32 Tensor``: one UNet call without
    gradients at the prepared precision (see :data:`~daclip_plugin.engine.devices.PRECISIONS`)."""

    def __init__(self, unet: ConditionalUNet, device: torch.device, precision: str = "fp32"):
        check_precision(device, precision)
        self.unet, self.device, self.precision = unet, device, precision

    def __call__(
        self, x: Tensor, cond: Tensor, t, *, text_context: Optional[Tensor] = None, image_context: Optional[Tensor] = None
    ) -> Tensor:
        with torch.no_grad(), unet_precision(self.device, self.precision):
            return self.unet(x, cond, t, text_context=text_context, image_context=image_context).float()

    def __repr__(self) -> str:
        return f"PreparedUNet(device={str(self.device)!r}, precision={self.precision!r})"


def prepare_unet(
    unet: ConditionalUNet, device: Union[str, torch.device, None] = "cpu", precision: str = "fp32"
) -> PreparedUNet:
    """The call the restorers make of ``unet`` on ``device`` (``"auto"``: the best available) at ``precision``.

    The UNet is moved to ``device`` and put in eval mode; an unknown precision, or one the
    device cannot run, raises :class:`~daclip_plugin.errors.DaclipError` here, before any work.
    """
    device = select_device(device)
    return PreparedUNet(unet.to(device).eval(), device, precision)
