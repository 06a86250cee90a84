"""The three training stages, each one class: its model, loss, held-out evaluation and provenance.

:func:`daclip_plugin.training.train` runs any of them the same way; a stage-specific choice
lives here and nowhere else.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..engine.pipeline import OFFICIAL_SDE
from ..engine.sde import IRSDESchedule
from ..errors import DaclipError
from ..nn.daclip import DEGRADATIONS, DaCLIP, tokenize
from ..nn.unet import ConditionalUNet
from ..weights.integrity import sha256_file
from .config import TrainConfig
from .evaluate import batch_contexts, eval_pairs, evaluate_daclip, evaluate_saved_unet
from .models import build_daclip, context_dim_of, reloaded_daclip
from .objectives import DIRECT_LOSSES, daclip_losses, direct_loss, irsde_loss


class Stage:
    """What one stage trains and how; :func:`~daclip_plugin.training.train` does the rest."""

    name: str
    #: AdamW's second-moment decay.
    beta2 = 0.99
    #: Whether the model is a UNet trained on patches (with bf16 autocast on GPUs).
    patches = True

    def build_model(self, config: TrainConfig, model_cfg: Optional[dict], device) -> tuple[nn.Module, dict, int]:
        """The model to train (from ``model_cfg`` when resuming), its config and DA-CLIP's input size."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict, autocast) -> dict[str, torch.Tensor]:
        """The loss terms of one batch (``"loss"`` is optimised)."""
        raise NotImplementedError

    def after_step(self, model: nn.Module) -> None:
        """Keep the model's constraints after an optimiser step."""

    def evaluate(self, path: Path, config: TrainConfig, seed: int, device) -> tuple[dict, str]:
        """Held-out evaluation of the saved file at ``path``, and a line summing it up."""
        raise NotImplementedError

    def provenance(self, config: TrainConfig) -> dict:
        """What the stage adds to its ``provenance.json`` entry."""
        return {}


class DaclipStage(Stage):
    """A DA-CLIP from scratch: degradation cross-entropy, content cosine and contrastive terms."""

    name = "daclip"
    beta2 = 0.98
    patches = False

    def build_model(self, config, model_cfg, device):
        cfg = model_cfg or config.clip_cfg
        model = build_daclip(cfg).to(device)
        self.tokens = tokenize(DEGRADATIONS).to(device)
        return model, cfg, model.image_size

    def loss(self, model, batch, autocast):
        return daclip_losses(model, batch, self.tokens)

    def after_step(self, model):
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
            model.clip.logit_scale.clamp_(0, math.log(100))

    def evaluate(self, path, config, seed, device):
        pairs = eval_pairs(config.eval_per_class, 0, seed + 1, config.crop_min, config.crop_max)
        result = evaluate_daclip(reloaded_daclip(path, device), pairs, config.clip_view)
        line = f"held-out accuracy {result['accuracy']:.3f} on {result['n']} crops: " + ", ".join(
            f"{k} {v:.2f}" for k, v in result["per_class"].items()
        )
        return result, line


class UNetStage(Stage):
    """A conditional UNet steered by a trained (frozen) DA-CLIP."""

    def build_model(self, config, model_cfg, device):
        daclip_path = config.daclip_file()
        if not daclip_path.is_file():
            raise DaclipError(
                f"the {self.name} stage needs a trained DA-CLIP: {daclip_path} not found "
                "(train stage daclip first or pass --daclip)"
            )
        self.daclip: DaCLIP = reloaded_daclip(daclip_path, device).requires_grad_(False)
        width = context_dim_of(self.daclip)
        cfg = model_cfg or {**config.unet_cfg, "context_dim": width}
        if cfg["context_dim"] != width:
            raise DaclipError(f"the UNet's context_dim {cfg['context_dim']} does not fit the DA-CLIP's {width}")
        return ConditionalUNet(**cfg).to(device), cfg, self.daclip.image_size

    def contexts(self, batch: dict):
        return batch_contexts(self.daclip, batch["lq_clip"], batch.get("lq_clip_n"))

    def evaluate(self, path, config, seed, device):
        result = evaluate_saved_unet(
            self.name, path, self.daclip, config.eval_per_class, config.eval_size, seed, device, config.clip_view
        )
        line = f"held-out PSNR {result['psnr_in']:.2f} dB -> {result['psnr_out']:.2f} dB on {result['n']} crops: " + ", ".join(
            f"{k} {v['psnr_in']:.1f}->{v['psnr_out']:.1f}" for k, v in result["per_class"].items()
        )
        return result, line

    def provenance(self, config):
        return {"daclip_file": config.daclip_file().name, "daclip_sha256": sha256_file(config.daclip_file())}


class IRSDEStage(UNetStage):
    """The official IR-SDE objective: match the reverse-SDE step to the optimal one."""

    name = "irsde"

    def __init__(self):
        self.schedule = IRSDESchedule.from_config(OFFICIAL_SDE)

    def loss(self, model, batch, autocast):
        return irsde_loss(model, self.schedule, batch, self.contexts(batch), autocast)

    def provenance(self, config):
        return {
            **super().provenance(config),
            "sde": dict(OFFICIAL_SDE),
            "objective": "L1(reverse-SDE step mean from the predicted noise, optimal reverse step), t ~ U{1..T}",
        }


class DirectStage(UNetStage):
    """The one-pass direct restorer: ``restored = lq + unet(lq, lq, 0, contexts)`` against the clean patch."""

    name = "direct"

    def __init__(self, loss: str = "l1"):
        self.kind = loss

    def loss(self, model, batch, autocast):
        return direct_loss(model, batch, self.contexts(batch), autocast, self.kind)

    def provenance(self, config):
        return {
            **super().provenance(config),
            "loss": config.loss,
            "convention": f"restored = lq + unet(xt=lq, cond=lq, time=0, contexts); {DIRECT_LOSSES[config.loss]}",
        }


def stage_for(config: TrainConfig) -> Stage:
    """The stage ``config.stage`` names."""
    if config.stage == "daclip":
        return DaclipStage()
    if config.stage == "irsde":
        return IRSDEStage()
    if config.stage == "direct":
        return DirectStage(config.loss)
    raise DaclipError(f"unknown training stage {config.stage!r}; stages: daclip, irsde, direct")
