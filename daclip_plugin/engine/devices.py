"""Device and precision policy: which device runs the models, and the UNet's arithmetic.

torch is imported inside the functions, so that reading :data:`PRECISIONS` (for menus and
option declarations) costs nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import platform
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Union

from ..errors import DaclipError, InvalidOptionError

if TYPE_CHECKING:
    import torch

#: UNet arithmetic: exact float32 (default), or on GPUs TensorFloat-32 (NVIDIA) or autocast
#: to bfloat16 / float16; on CPUs with bfloat16 instructions, ``bf16`` runs the convolutions
#: and linear layers in bfloat16 and the rest in float32 (see
#: :class:`daclip_plugin.engine.unet_call.BFloat16Products`). DA-CLIP and the sampler's state
#: always stay in float32.
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
#: How much of the free memory a run may plan to use by default: on the CPU a share of the
#: available memory, at most :data:`CPU_BUDGET_CAP`; on a GPU a share of its free memory.
CPU_BUDGET_SHARE, CPU_BUDGET_CAP = 0.2, 512 * 2**20
GPU_BUDGET_SHARE = 0.6
ENV_MEMORY_BUDGET = "DACLIP_MEMORY_BUDGET"
#: Device names the options accept (``cuda:N`` picks one of several GPUs).
DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"
_DEVICE_TYPES = ("cpu", "cuda", "mps")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 convolutions and matrix products natively (AVX-512 BF16, AMX)."""
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_precision(device: "torch.device", precision: str) -> None:
    """Refuse an unknown ``precision``, or one that ``device`` cannot run (see :data:`PRECISIONS`)."""
    if precision not in PRECISIONS:
        raise DaclipError(f"unknown precision {precision!r}; available: {', '.join(PRECISIONS)}")
    if precision in ("tf32", "fp16") and device.type != "cuda":
        raise DaclipError(f"precision {precision!r} needs an NVIDIA GPU; use 'fp32' on {device.type}")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise DaclipError(
            "precision 'bf16' needs a CPU with bfloat16 instructions (AVX-512 BF16 or AMX), which this one lacks; "
            "use 'fp32'"
        )


@contextlib.contextmanager
def unet_precision(device: "torch.device", precision: str):
    """Run the enclosed UNet calls on a GPU at ``precision`` (see :data:`PRECISIONS`): TF32, or autocast.

    On the CPU this changes nothing (its ``bf16`` is :class:`daclip_plugin.engine.unet_call.BFloat16Products`).
    """
    import torch

    check_precision(device, precision)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}
    enabled = precision in autocast and device.type != "cpu"
    try:
        with torch.autocast(device.type, dtype=autocast.get(precision), enabled=enabled):
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def select_device(device: Union[str, "torch.device", None] = "auto") -> "torch.device":
    """``"auto"`` picks CUDA, then Apple's MPS, then the CPU; other names must be available."""
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in _DEVICE_TYPES:
        raise InvalidOptionError(f"unknown device; use {DEVICE_HELP}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DaclipError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DaclipError(f"device {str(device)!r} was asked for, but PyTorch sees {torch.cuda.device_count()} GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DaclipError("device 'mps' was asked for, but it is not available here")
    return device


def parse_size(text: str) -> int:
    """``"1500"`` (MiB), ``"1500M"``, ``"2G"``, ``"2.5GiB"`` -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if match is None:
        raise InvalidOptionError(f"{ENV_MEMORY_BUDGET} must be a size such as 1500, 1500M or 2G (MiB by default); got {text!r}")
    number, unit = float(match.group(1)), match.group(2) or "m"
    size = int(number * 2 ** {"k": 10, "m": 20, "g": 30, "t": 40}[unit])
    if size < 2**20:
        raise InvalidOptionError(f"{ENV_MEMORY_BUDGET} must be at least 1 MiB (as memory_budget >= 1); got {text!r}")
    return size


def available_memory() -> int:
    """Bytes of memory this computer can give now (MemAvailable on Linux), without torch."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30  # unknown: assume a modest computer


def memory_budget(device: "torch.device", budget_mib: Union[int, None] = None) -> int:
    """The bytes a run may plan to use for the UNet's working memory on ``device``.

    ``budget_mib`` if given, else ``DACLIP_MEMORY_BUDGET``, else a safe share of the free
    memory: :data:`CPU_BUDGET_SHARE` of the available memory (at most
    :data:`CPU_BUDGET_CAP`) on the CPU, :data:`GPU_BUDGET_SHARE` of the free memory on a GPU.
    """
    if budget_mib is not None:
        return int(budget_mib) * 2**20
    if os.environ.get(ENV_MEMORY_BUDGET, "").strip():
        return parse_size(os.environ[ENV_MEMORY_BUDGET])
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free * GPU_BUDGET_SHARE)
    return int(min(available_memory() * CPU_BUDGET_SHARE, CPU_BUDGET_CAP))


def menu_devices() -> list[str]:
    """:func:`available_devices`, without importing torch when it is not loaded yet.

    Importing torch takes seconds; a menu must not wait for it. Without it, ``cuda`` is
    offered when the installed PyTorch is a CUDA build and the NVIDIA driver reports a GPU,
    and ``mps`` on Apple silicon.
    """
    if "torch" in sys.modules:
        return available_devices()
    names = ["auto"]
    if _torch_cuda_build() and _cuda_driver_gpus() > 0:
        names.append("cuda")
    if sys.platform == "darwin" and platform.machine() == "arm64":
        names.append("mps")
    return names + ["cpu"]


def _torch_cuda_build() -> bool:
    """Whether the installed PyTorch was built with CUDA (read from its version file)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return False
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return False
    match = re.search(r"^cuda\b[^=]*=\s*(.+)$", text, re.MULTILINE)
    return match is not None and match.group(1).strip() not in ("None", "''", '""')


def _cuda_driver_gpus() -> int:
    """How many GPUs the NVIDIA driver reports (0 without a driver)."""
    names = {"win32": ("nvcuda.dll",), "darwin": ()}.get(sys.platform, ("libcuda.so.1", "libcuda.so"))
    for name in names:
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0:
            return count.value
        return 0
    return 0


def available_devices() -> list[str]:
    """Device names usable here, for menus: always ``auto`` and ``cpu``."""
    import torch

    names = ["auto"]
    if torch.cuda.is_available():
        names.append("cuda")
    if torch.backends.mps.is_available():
        names.append("mps")
    return names + ["cpu"]
