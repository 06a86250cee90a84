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


class SDETable:
    """The IR-SDE coefficients by timestep as tensors, for batches with one ``t`` per sample."""

    def __init__(self, schedule: IRSDESchedule, device="cpu"):
        ts = range(1, schedule.T + 1)
        coefficients = [schedule.posterior_coefficients(t) for t in ts]
        pad = [0.0]
        as_tensor = lambda values: torch.tensor(values, dtype=torch.float32, device=device)  # noqa: E731
        self.schedule = schedule
        self.a = as_tensor(pad + [a for a, _ in coefficients])
        self.b = as_tensor(pad + [b for _, b in coefficients])
        self.decay = torch.exp(-schedule.thetas_cumsum * schedule.dt).to(device)
        self.sigma_bar = schedule.sigma_bars.to(device)
        self.theta = schedule.thetas.to(device)
        self.sigma2 = (schedule.sigmas**2).to(device)
        self.dt = schedule.dt

    def _at(self, values: Tensor, t: Tensor) -> Tensor:
        return values[t][:, None, None, None]

    def forward_state(self, gt: Tensor, mu: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = mu + (gt - mu) exp(-thetas_cumsum[t] dt) + sigma_bar[t] noise``."""
        return mu + (gt - mu) * self._at(self.decay, t) + self._at(self.sigma_bar, t) * noise

    def reverse_mean(self, x: Tensor, noise_pred: Tensor, mu: Tensor, t: Tensor) -> Tensor:
        """Mean of the reverse-SDE step from ``x_t`` given the predicted noise (no dispersion)."""
        score = -noise_pred / self._at(self.sigma_bar, t)
        drift = (self._at(self.theta, t) * (mu - x) - self._at(self.sigma2, t) * score) * self.dt
        return x - drift

    def optimum(self, x: Tensor, gt: Tensor, mu: Tensor, t: Tensor) -> Tensor:
        """The optimal reverse step: mean of ``x_{t-1}`` given ``x_t`` and ``x_0 = gt``."""
        return self._at(self.a, t) * (x - mu) + self._at(self.b, t) * (gt - mu) + mu


def irsde_loss(unet: ConditionalUNet, table: SDETable, batch: Mapping[str, Tensor], contexts, autocast) -> dict[str, Tensor]:
    """The official IR-SDE matching loss: L1(reverse-SDE step mean, optimal reverse step)."""
    gt, mu, t = batch["gt"], batch["lq"], batch["t"]
    x = table.forward_state(gt, mu, t, batch["noise"])
    with autocast():
        noise_pred = unet(x, mu, t, text_context=contexts[1], image_context=contexts[0])
    loss = F.l1_loss(table.reverse_mean(x, noise_pred.float(), mu, t), table.optimum(x, gt, mu, t))
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
