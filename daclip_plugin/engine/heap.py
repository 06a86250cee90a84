"""Reusing freed memory while restorations run on the CPU (glibc's malloc settings).

A UNet call allocates and frees tensors of tens of MiB. glibc serves allocations above its
mmap threshold (which it raises by itself to at most 32 MiB) with fresh pages from the
kernel, zeroed on first touch, and returns them on free; with the released UNets that is
about a sixth of a 512 px call (``benchmarks/bench_unet_call.py --candidates freed``). While a
restoration runs, :func:`reuse_freed_memory` makes glibc keep freed blocks for the next
allocations instead. When the last running restoration ends, the freed memory goes back
to the system (``malloc_trim``) and the thresholds are set to the values glibc's own
adjustment settles on.

The gain is in the main thread (the command line). Other threads (the napari panel's
workers, Dask's) allocate from glibc's per-thread heaps, which keep freed blocks of up to
64 MiB by themselves: there this changes little (``bench_unet_call.py --in-thread``).

Nothing changes on other systems (macOS, Windows, musl), on GPUs (PyTorch caches their
memory itself), where the user tunes malloc through its environment variables, or with
``DACLIP_REUSE_MEMORY=0``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import threading
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import torch

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
#: While restoring: blocks up to 1 GiB come from reusable memory, and up to 2 GiB of freed
#: memory may stay in the process.
KEEP = {M_MMAP_THRESHOLD: 2**30, M_TRIM_THRESHOLD: 2**31 - 1}
#: Afterwards: the largest thresholds glibc's own adjustment reaches (32 MiB, twice that).
SETTLED = {M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 64 * 2**20}
ENV_SWITCH = "DACLIP_REUSE_MEMORY"
#: The user's own malloc tuning, which is left alone.
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

_lock = threading.Lock()
_holders = 0


@functools.lru_cache(maxsize=None)
def _glibc() -> Optional[ctypes.CDLL]:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if any(name in os.environ for name in USER_SETTINGS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "no", "false", "off"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes, libc.malloc_trim.argtypes = [ctypes.c_int, ctypes.c_int], [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def managed() -> bool:
    """Whether :func:`reuse_freed_memory` changes anything in this process (glibc, no user tuning)."""
    return _glibc() is not None


def holders() -> int:
    """How many :func:`reuse_freed_memory` blocks are running now (in all threads)."""
    return _holders


def _apply(libc: ctypes.CDLL, settings: dict[int, int]) -> None:
    for option, value in settings.items():
        libc.mallopt(option, value)


@contextlib.contextmanager
def reuse_freed_memory(device: Optional["torch.device"] = None):
    """Keep freed memory for reuse inside the block when ``device`` is the CPU (``None``: the CPU).

    Blocks may nest and run in several threads at once; when the last one ends, the kept
    memory is returned to the system.
    """
    libc = _glibc() if device is None or device.type == "cpu" else None
    if libc is None:
        yield
        return
    global _holders
    with _lock:
        _holders += 1
        if _holders == 1:
            _apply(libc, KEEP)
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                _apply(libc, SETTLED)
                libc.malloc_trim(0)
