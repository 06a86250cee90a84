"""The losses of the three stages."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ..engine.direct import direct_restore
from ..engine.sde import IRSDESchedule
from ..nn.daclip import DaCLIP
from ..nn.unet import ConditionalUNet


def daclip_losses(model: DaCLIP, batch: Mapping[str, Tensor], text_tokens: Tensor) -> dict[str, Tensor]:
    """The DA-CLIP stage's loss terms and the batch's degradation accuracy."""
    text = model.encode_text(text_tokens, normalize=True)
    content, degra = model.encode_image(batch["lq_clip"], control=True)
    clean = model.encode_image(batch["gt_clip"])
    label = batch["label"]
    logits = model.logit_scale.exp().clamp(max=100) * F.normalize(degra, dim=-1) @ text.T
    ce = F.cross_entropy(logits, label)
    content, clean = F.normalize(content, dim=-1), F.normalize(clean, dim=-1)
    cosine = (1 - (content * clean.detach()).sum(-1)).mean()
    sim = model.clip.logit_scale.exp().clamp(max=100) * content @ clean.T
    target = torch.arange(sim.shape[0], device=sim.device)
    nce = 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))
    accuracy = (logits.argmax(-1) == label).float().mean()
    return {"loss": ce + cosine + nce, "ce": ce, "cos": cosine, "nce": nce, "acc": accuracy}


def irsde_loss(
    unet: ConditionalUNet, schedule: IRSDESchedule, batch: Mapping[str, Tensor], contexts, autocast
) -> dict[str, Tensor]:
    """The official IR-SDE matching loss: L1(reverse-SDE step mean, optimal reverse step)."""
    gt, mu, t = batch["gt"], batch["lq"], batch["t"]
    x = schedule.add_noise(gt, mu, batch["noise"], t)
    with autocast():
        noise_pred = unet(x, mu, t, text_context=contexts[1], image_context=contexts[0])
    loss = F.l1_loss(schedule.reverse_mean(x, noise_pred.float(), mu, t), schedule.optimal_reverse_mean(x, gt, mu, t))
    return {"loss": loss}


DIRECT_LOSSES = {
    "l1": "L1(restored, gt)",
    "log-l1": "mean over patches of log(L1(restored, gt) + 0.01)",
}
"""Direct-restorer losses and their formulas: ``log-l1`` weighs each patch by the inverse of
its current error, as in an average of PSNRs, so subtle degradations count as much as strong ones."""


def direct_loss(unet: ConditionalUNet, batch: Mapping[str, Tensor], contexts, autocast, kind: str = "l1") -> dict[str, Tensor]:
    """The direct restorer's loss (see :data:`DIRECT_LOSSES`) against the clean patch."""
    with autocast():
        restored = direct_restore(unet, batch["lq"], contexts[1], contexts[0])
    per_patch = (restored.float() - batch["gt"]).abs().mean(dim=(1, 2, 3))
    terms = {"l1": per_patch.mean(), "l1_in": F.l1_loss(batch["lq"], batch["gt"])}
    terms["loss"] = terms["l1"] if kind == "l1" else torch.log(per_patch + 0.01).mean()
    return terms
