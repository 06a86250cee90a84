"""A 4096 x 4096 image, file to file, in bounded memory (peak resident memory of a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from daclip_plugin import imagefiles
from daclip_plugin.models.tiny import TINY_UNET_CFG
from daclip_plugin.nn.unet import ConditionalUNet
from daclip_plugin.weights import checkpoints

CHILD = """
import json, resource, sys
from daclip_plugin import cli
code = cli.main(sys.argv[1:])
print(json.dumps({"code": code, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@pytest.mark.slow
def test_a_4096_px_16_bit_tiff_is_restored_within_3_gb_and_keeps_its_depth(tmp_path):
    """The whole path at full size (read, normalise, DA-CLIP, UNet tiles, write) with the default budget.

    The UNet is a narrow one of the embedded model's kind (random weights, an eighth of its
    width, its levels at half resolution as in wild-ir), so the check takes about a minute
    rather than many: the full-size arrays are the same, and the budget bounds any UNet's
    tiles alike.
    """
    torch.manual_seed(0)
    narrow = ConditionalUNet(**{**TINY_UNET_CFG, "nf": 8, "ch_mult": [1, 4, 4, 4], "scale": 0.5}).eval()
    checkpoints.save_unet(narrow, tmp_path / "narrow.pth")
    rows = np.linspace(0, 60000, 4096, dtype=np.float32)
    image = (rows[:, None, None] * 0.5 + rows[None, :, None] * 0.4 + np.array([0, 1000, 2000], np.float32))
    imagefiles.write_image(tmp_path / "big.tif", image.astype(np.uint16))
    del image
    argv = ["restore", str(tmp_path / "big.tif"), "-o", str(tmp_path / "out.tif"), "--restorer", "daclip-direct",
            "--model", "tiny", "--unet-path", str(tmp_path / "narrow.pth"), "--device", "cpu", "-q"]
    result = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    assert report["peak_mib"] < 3 * 1024, report
    restored = imagefiles.read_image(tmp_path / "out.tif")
    assert restored.shape == (4096, 4096, 3) and restored.dtype == np.uint16
