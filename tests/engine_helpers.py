"""Small randomly initialised DA-CLIP and UNet models for fast engine tests."""

from __future__ import annotations

import torch

from daclip_plugin.nn.daclip import DaCLIP
from daclip_plugin.nn.unet import ConditionalUNet

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_UNET = {
    "in_nc": 3, "out_nc": 3, "nf": 32, "ch_mult": [1, 2], "context_dim": 32,
    "use_degra_context": True, "use_image_context": True,
}
TINY_SDE = {"max_sigma": 50, "T": 6, "schedule": "cosine", "eps": 0.005}


def tiny_models(seed: int = 0) -> tuple[DaCLIP, ConditionalUNet]:
    """A DA-CLIP and a UNet with random weights (the controller's zero layers made non-zero)."""
    torch.manual_seed(seed)
    daclip, unet = DaCLIP(TINY_CLIP), ConditionalUNet(**TINY_UNET)
    with torch.no_grad():
        for linear in daclip.visual_control.transformer.zero_modules:
            linear.weight.normal_(0, 0.02)
        unet.final_conv.weight.mul_(0.1)
    return daclip.eval(), unet.eval()


def tiny_engine(kind: str):
    """A built-in engine on :func:`tiny_models`: ``"sampling"`` (the IR-SDE pipeline) or ``"direct"`` (one pass)."""
    from daclip_plugin.engine.direct import DirectRestorer
    from daclip_plugin.engine.pipeline import DaclipPipeline
    from daclip_plugin.engine.sde import IRSDESchedule

    daclip, unet = tiny_models()
    if kind == "direct":
        return DirectRestorer(daclip, unet)
    return DaclipPipeline(daclip, unet, IRSDESchedule.from_config(TINY_SDE))
