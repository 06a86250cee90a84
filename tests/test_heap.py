"""Freed memory is kept for reuse while a CPU restoration runs, and handed back when it ends."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from engine_helpers import tiny_engine

from daclip_plugin.engine import heap

MIB = 2**20
needs_glibc = pytest.mark.skipif(not heap.managed(), reason="glibc's malloc settings (Linux with glibc only)")


def resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def freed_block_stays() -> bool:
    """Whether 96 MiB, written and freed, still count in this process's resident memory."""
    block = np.ones(96 * MIB, dtype=np.uint8)
    written = resident()
    del block
    return written - resident() < 32 * MIB


@needs_glibc
def test_freed_memory_is_kept_inside_and_returned_after():
    assert not freed_block_stays()  # glibc's default: a block this large is returned on free
    with heap.reuse_freed_memory(torch.device("cpu")):
        assert heap.holders() == 1
        assert freed_block_stays()
        kept = resident()
    assert heap.holders() == 0
    assert resident() < kept - 64 * MIB  # returned to the system at the end
    assert not freed_block_stays()


@needs_glibc
def test_nested_and_concurrent_blocks_release_when_the_last_one_ends():
    entered, release = threading.Event(), threading.Event()

    def other_restoration():
        with heap.reuse_freed_memory():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other_restoration)
    thread.start()
    assert entered.wait(10)
    with heap.reuse_freed_memory(torch.device("cpu")):
        with heap.reuse_freed_memory(torch.device("cpu")):
            assert heap.holders() == 3
        assert freed_block_stays()
    assert heap.holders() == 1 and freed_block_stays()  # the other thread's restoration still runs
    release.set()
    thread.join()
    assert heap.holders() == 0 and not freed_block_stays()


def test_gpu_blocks_change_nothing():
    with heap.reuse_freed_memory(torch.device("meta")):
        assert heap.holders() == 0


@needs_glibc
def test_the_users_own_malloc_tuning_or_switch_is_respected():
    code = "from daclip_plugin.engine import heap; print(heap.managed())"
    for setting in ({"MALLOC_TRIM_THRESHOLD_": "1000000"}, {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"},
                    {"DACLIP_REUSE_MEMORY": "0"}):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **setting}, capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip() == "False", setting


@pytest.mark.parametrize("restorer", ["sampling", "direct"])
def test_cpu_restorations_hold_it_while_they_run(restorer):
    model = tiny_engine(restorer)
    image = np.random.default_rng(1).random((72, 40, 3), dtype=np.float32)
    steps = model.iter_restore(image, tile_size=32)  # several steps either way
    next(steps)
    assert heap.holders() == (1 if heap.managed() else 0)
    steps.close()  # cancelled between steps
    assert heap.holders() == 0
    model.restore(image)
    assert heap.holders() == 0
