"""The UNet call the restorers make, prepared once for a device and a precision.

``prepare_unet(unet, device, precision)`` returns the callable that the IR-SDE pipeline and
the direct restorer call, so that benchmarks and users time exactly what runs. On a CPU the
call runs in the channels-last memory format (oneDNN's fast layout for convolutions; the
channel norms then take one fused pass), and its ``bf16`` precision runs the convolutions
and linear layers in bfloat16 (:class:`BFloat16Products`).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from ..errors import DaclipError
from ..nn.unet import ConditionalUNet
from .devices import check_precision, select_device, unet_precision


class BFloat16Products(TorchFunctionMode):
    """Convolutions and linear layers in bfloat16, everything else in float32 (a CPU precision).

    Their inputs are rounded to bfloat16 and their outputs returned as float32, so that the
    norms, softmaxes, residual sums and the sampler see float32; weights are rounded once and
    kept for the next calls. With the released UNets at 256 px this is about 1.5x faster
    than float32 on CPUs with bfloat16 instructions, at 7e-3 of the output's largest value;
    bfloat16 autocast is faster still but rounds the norms and residual sums too, ten times
    the error (``benchmarks/bench_unet_call.py``, with ``--candidates``).
    """

    PRODUCTS = (F.conv2d, F.linear)

    def __init__(self) -> None:
        super().__init__()
        #: the rounded copy of each parameter met so far, by id (the parameter is kept with it,
        #: so that its id cannot be reused)
        self._rounded: dict[int, tuple[Tensor, Tensor, int]] = {}

    def _weight(self, tensor: Optional[Tensor]) -> Optional[Tensor]:
        if tensor is None:
            return None
        kept = self._rounded.get(id(tensor))
        if kept is not None and kept[0] is tensor and kept[0]._version == kept[2]:
            return kept[1]
        memory = torch.channels_last if tensor.ndim == 4 else torch.contiguous_format
        rounded = tensor.detach().to(torch.bfloat16).contiguous(memory_format=memory)
        if isinstance(tensor, torch.nn.Parameter):  # weights of the model: rounded once
            self._rounded[id(tensor)] = (tensor, rounded, tensor._version)
        return rounded

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func not in self.PRODUCTS or args[0].dtype != torch.float32:  # every other operation: as it is
            return func(*args, **(kwargs or {}))
        kwargs = dict(kwargs or {})
        x, weight, *rest = args
        if rest:
            rest[0] = self._weight(rest[0])  # the bias
        elif "bias" in kwargs:
            kwargs["bias"] = self._weight(kwargs["bias"])
        return func(x.to(torch.bfloat16), self._weight(weight), *rest, **kwargs).float()


class PreparedUNet:
    """``(x, cond, t, text_context=..., image_context=...) -> float32 Tensor``: one UNet call without
    gradients at the prepared precision (see :data:`~daclip_plugin.engine.devices.PRECISIONS`),
    compiled by ``torch.compile`` if asked (see :func:`prepare_unet`)."""

    def __init__(self, unet: ConditionalUNet, device: torch.device, precision: str = "fp32", compile: bool = False):
        check_precision(device, precision)
        self.unet, self.device, self.precision, self.compiled = unet, device, precision, bool(compile)
        self._format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        if device.type == "cpu":
            unet.to(memory_format=torch.channels_last)  # the same weights, laid out for oneDNN
        self._products = BFloat16Products() if device.type == "cpu" and precision == "bf16" else None
        if compile and self._products is not None:
            raise DaclipError("compile=True does not combine with precision 'bf16' on a CPU: choose one of them")
        self._forward = compiled_forward(unet, device) if compile else unet
        # CUDA graphs replay into the same output memory: each result is copied out
        self._graphs = compile and device.type == "cuda"

    def __call__(
        self, x: Tensor, cond: Tensor, t, *, text_context: Optional[Tensor] = None, image_context: Optional[Tensor] = None
    ) -> Tensor:
        x, cond = x.contiguous(memory_format=self._format), cond.contiguous(memory_format=self._format)
        if self.compiled:  # a number would be compiled in as a constant: one compilation per timestep
            t = torch.as_tensor(t, device=self.device).reshape(-1).float()
        products = self._products if self._products is not None else contextlib.nullcontext()
        with torch.no_grad(), unet_precision(self.device, self.precision), products:
            if self._graphs:
                torch.compiler.cudagraph_mark_step_begin()
            try:
                out = self._forward(x, cond, t, text_context=text_context, image_context=image_context)
            except Exception as exc:
                if self.compiled and _compiler_failed(exc):
                    reason = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
                    raise DaclipError(f"torch.compile could not compile the UNet ({reason}); "
                                      "run without compile (same numbers, no compiler needed)") from exc
                raise
            return out.to(torch.float32, memory_format=torch.contiguous_format, copy=self._graphs)

    def __repr__(self) -> str:
        compiled = ", compile=True" if self.compiled else ""
        return f"PreparedUNet(device={str(self.device)!r}, precision={self.precision!r}{compiled})"


def _compiler_failed(exc: Exception) -> bool:
    """Whether ``exc`` is torch.compile's backend failing (no C++ compiler, no Triton, ...)."""
    from torch._dynamo.exc import BackendCompilerFailed

    return isinstance(exc, BackendCompilerFailed)


class _CompiledForwards(dict):
    """The compiled forwards kept with a UNet, by device; copies of the UNet start without them."""

    def __deepcopy__(self, memo) -> "_CompiledForwards":
        return _CompiledForwards()

    def __reduce__(self):
        return _CompiledForwards, ()


def compiled_forward(unet: ConditionalUNet, device: torch.device) -> Callable:
    """``torch.compile(unet)`` for ``device``, made once per UNet and kept with it (restorations
    reuse the compilations of earlier ones): inductor's kernels, and on NVIDIA GPUs CUDA graphs
    (``mode="reduce-overhead"``). Each image (tile) size and precision compiles once, on its
    first call."""
    kept = unet.__dict__.setdefault("_compiled_forwards", _CompiledForwards())  # not in the state dict
    compiled = kept.get(str(device))
    if compiled is None or compiled._orig_mod is not unet:  # (a shallow copy shares the attribute)
        mode = "reduce-overhead" if device.type == "cuda" else None
        compiled = kept[str(device)] = torch.compile(unet, mode=mode, dynamic=False)
    return compiled


def prepare_unet(
    unet: ConditionalUNet, device: Union[str, torch.device, None] = "cpu", precision: str = "fp32", compile: bool = False
) -> PreparedUNet:
    """The call the restorers make of ``unet`` on ``device`` (``"auto"``: the best available) at ``precision``.

    The UNet is moved to ``device`` and put in eval mode (on a CPU, also into the
    channels-last memory format: the same values); an unknown precision, or one the device
    cannot run, raises :class:`~daclip_plugin.errors.DaclipError` here, before any work.
    ``compile=True`` runs it through :func:`compiled_forward` (the first call of each size
    takes seconds to minutes; on a CPU it is no faster than the eager call in this project's
    benchmarks, and does not combine with ``bf16``).
    """
    device = select_device(device)
    return PreparedUNet(unet.to(device).eval(), device, precision, compile)
