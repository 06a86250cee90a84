"""The memory budget: where it comes from, and how it decides the UNet's tiles."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import tiny_engine, tiny_models

from daclip_plugin.engine import devices
from daclip_plugin.engine.pipeline import tile_size_for
from daclip_plugin.engine.tiling import budget_tile
from daclip_plugin.errors import InvalidOptionError

CPU = devices.select_device("cpu")


@pytest.mark.parametrize("text, mib", [("1500", 1500), ("1500M", 1500), ("2G", 2048), (" 2.5 GiB ", 2560),
                                       ("512mb", 512), ("1t", 2**20), ("4096k", 4)])
def test_sizes_are_read_in_mib_by_default(text, mib):
    assert devices.parse_size(text) == mib * 2**20


@pytest.mark.parametrize("text", ["", "lots", "-5", "2X", "1.5.5G", "0", "100k"])
def test_bad_sizes_are_refused_naming_the_variable(text):
    with pytest.raises(InvalidOptionError, match="DACLIP_MEMORY_BUDGET"):
        devices.parse_size(text)


def test_the_budget_comes_from_the_option_then_the_environment_then_free_memory(monkeypatch):
    monkeypatch.delenv(devices.ENV_MEMORY_BUDGET, raising=False)
    default = devices.memory_budget(CPU)
    assert 0 < default <= devices.CPU_BUDGET_CAP
    assert default <= devices.available_memory() * devices.CPU_BUDGET_SHARE + 1
    monkeypatch.setenv(devices.ENV_MEMORY_BUDGET, "3G")
    assert devices.memory_budget(CPU) == 3 * 2**30
    assert devices.memory_budget(CPU, 100) == 100 * 2**20  # the option wins
    monkeypatch.setenv(devices.ENV_MEMORY_BUDGET, "plenty")
    with pytest.raises(InvalidOptionError, match="DACLIP_MEMORY_BUDGET"):
        devices.memory_budget(CPU)


def test_tiles_follow_the_budget_of_the_unet():
    _, unet = tiny_models()
    per_pixel = unet.working_bytes_per_pixel()
    fits = 600 * 400 * per_pixel / 2**20
    assert tile_size_for((400, 600), None, 64, unet, memory_budget=int(fits) + 1) == (0, 64)
    tile, _ = tile_size_for((400, 600), None, 64, unet, memory_budget=int(fits) // 4)
    assert tile == budget_tile(int(fits) // 4 * 2**20, per_pixel) < 400
    assert tile_size_for((400, 600), 0, 64, unet, memory_budget=1) == (0, 64)  # an explicit size wins
    with pytest.raises(InvalidOptionError, match="at most 4096"):
        tile_size_for((40000, 40000), 32, 64, unet)


@pytest.mark.parametrize("restorer", ["sampling", "direct"])
def test_a_small_budget_restores_in_the_tiles_it_implies(restorer):
    engine = tiny_engine(restorer)
    image = np.random.default_rng(3).random((150, 140, 3), dtype=np.float32)
    budget = 1  # MiB: tiles of the smallest size, 128 px
    tiled = engine.restore(image, memory_budget=budget)
    np.testing.assert_array_equal(tiled, engine.restore(image, tile_size=128))
    assert not np.array_equal(tiled, engine.restore(image, tile_size=0))
    np.testing.assert_array_equal(engine.restore(image, memory_budget=4096), engine.restore(image, tile_size=0))


LOAD_CHILD = """
import re, sys, torch
from daclip_plugin.weights.checkpoints import load_unet
def status(key):
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) restarts from the current size
before = status("VmRSS")
model = load_unet(sys.argv[1])
print(status("VmHWM") - before)
"""


def test_loading_a_checkpoint_holds_one_copy_of_its_weights(tmp_path):
    """The model takes the loaded tensors as its own: about 1x the file in memory, not 2x."""
    import subprocess
    import sys

    import torch

    from daclip_plugin.nn.unet import ConditionalUNet
    from daclip_plugin.weights.checkpoints import RELEASED_UNET_CONFIGS, save_unet

    path = tmp_path / "universal-ir.pth"
    save_unet(ConditionalUNet(**RELEASED_UNET_CONFIGS["universal-ir"]), path)
    size = path.stat().st_size
    torch.set_num_threads(1)
    grew = int(subprocess.run([sys.executable, "-c", LOAD_CHILD, str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[-1])
    assert size * 0.9 < grew < size * 1.35, (grew / 2**20, size / 2**20)
