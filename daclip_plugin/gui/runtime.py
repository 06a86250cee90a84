"""Process-level care for running PyTorch inside napari, and napari's proxies."""

from __future__ import annotations

import os
import sys


def avoid_llvm_clash() -> None:
    """Keep PyTorch from importing Triton into a process whose OpenGL driver loaded LLVM.

    napari draws with OpenGL; Mesa's drivers (llvmpipe software rendering, radeonsi) load the
    system ``libLLVM``, and importing Triton afterwards (PyTorch imports it through
    torchvision/open_clip) crashes the whole process with a segmentation fault, because
    Triton's own LLVM symbols clash with it. Triton only serves ``torch.compile`` kernels,
    which DA-CLIP does not use, so when that LLVM is already loaded and Triton is not, Triton
    is marked unavailable (PyTorch then treats it as not installed). Set
    ``DACLIP_ALLOW_TRITON=1`` to skip this.
    """
    if "triton" in sys.modules or os.environ.get("DACLIP_ALLOW_TRITON", "") not in ("", "0"):
        return
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            clash = any("libLLVM" in line for line in maps)
    except OSError:  # not Linux: no such clash known
        return
    if clash:
        sys.modules["triton"] = None  # type: ignore[assignment]


def unwrap(obj):
    """napari hands plugins proxies of its objects; use the objects themselves."""
    return getattr(obj, "__wrapped__", obj)


def shorten(name: str, limit: int = 24) -> str:
    """``name``, or its start and end around an ellipsis when longer than ``limit`` (ends tell files apart)."""
    half = (limit - 1) // 2
    return name if len(name) <= limit else f"{name[:half]}\u2026{name[-half:]}"
