"""Held-out evaluation of trained models (classification accuracy, restoration PSNR)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..data import degradations, sources
from ..engine.direct import DirectRestorer
from ..engine.pipeline import OFFICIAL_SDE, DaclipPipeline
from ..engine.sde import IRSDESchedule
from ..evaluation import psnr
from ..imaging import unit_to_uint8
from ..nn.daclip import DEGRADATIONS, DaCLIP, DegradationClassifier
from ..nn.unet import ConditionalUNet
from ..weights import checkpoints
from .data import STAGE_CODES, random_crop


def eval_pairs(per_class: int, size: int, seed: int, crop_min: Optional[int] = None, crop_max: Optional[int] = None):
    """Held-out pairs ``(gt, lq, label)`` from ``clean_images("eval")``, ``per_class`` per type.

    Crops are ``size`` px square, or of random size in ``crop_min..crop_max`` when given.
    """
    images = list(sources.clean_images("eval").values())
    pairs = []
    for label, name in enumerate(DEGRADATIONS):
        for k in range(per_class):
            rng = np.random.default_rng([seed, STAGE_CODES["eval"], label, k])
            low, high = (crop_min, crop_max) if crop_min is not None else (size, size)
            clean = random_crop(images, rng, low, high, 1.0)
            pairs.append((clean, degradations.degrade(clean, name, rng), label))
    return pairs


@torch.no_grad()
def evaluate_daclip(model: DaCLIP, pairs, clip_view: str = "resize") -> dict:
    """Degradation classification accuracy (the zero-shot classifier of inference) on ``pairs``."""
    model.eval()
    classifier = DegradationClassifier(model, DEGRADATIONS, view=clip_view)
    predictions = [int(classifier.probabilities(unit_to_uint8(lq)).argmax()) for _, lq, _ in pairs]
    labels = [label for _, _, label in pairs]
    per_class = {
        name: float(np.mean([p == i for p, label in zip(predictions, labels) if label == i]))
        for i, name in enumerate(DEGRADATIONS)
    }
    accuracy = float(np.mean([p == label for p, label in zip(predictions, labels)]))
    return {"accuracy": accuracy, "per_class": per_class, "n": len(pairs), "images": list(sources.EVAL_IMAGES)}


@torch.no_grad()
def batch_contexts(daclip: DaCLIP, lq_clip: Tensor, counts: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """The UNet contexts of a batch of DA-CLIP inputs, ``(B, 3, R, R)``; for tiles,
    ``(B, N, 3, R, R)`` with ``counts`` (``B``) real tiles each, the mean over an item's tiles."""
    if counts is None:
        content, degra = daclip.encode_image(lq_clip, control=True)
        return content.float(), degra.float()
    counts = counts.to(lq_clip.device)
    real = torch.arange(lq_clip.shape[1], device=lq_clip.device)[None] < counts[:, None]
    owner = torch.arange(lq_clip.shape[0], device=lq_clip.device)[:, None].expand_as(real)[real]
    features = daclip.encode_image(lq_clip[real], control=True)
    scale = 1.0 / counts.float()[:, None]
    return tuple(
        torch.zeros(lq_clip.shape[0], f.shape[1], device=f.device).index_add_(0, owner, f.float()) * scale for f in features
    )


@torch.no_grad()
def evaluate_restorer(stage: str, daclip: DaCLIP, unet: ConditionalUNet, pairs, seed: int = 0, clip_view: str = "resize") -> dict:
    """PSNR of the input and of the restored image against the clean one, per degradation.

    The restorers of inference do the work: :class:`~daclip_plugin.engine.direct.DirectRestorer`
    for the ``direct`` stage, :class:`~daclip_plugin.engine.pipeline.DaclipPipeline` (the
    official posterior sampler, seeded per crop) for ``irsde``.
    """
    unet.eval()
    schedule = IRSDESchedule.from_config(OFFICIAL_SDE)
    if stage == "direct":
        restorer = DirectRestorer(daclip, unet, DEGRADATIONS, clip_view)
        restore = lambda lq, k: restorer.restore(lq)  # noqa: E731
    else:
        pipeline = DaclipPipeline(daclip, unet, schedule, DEGRADATIONS, clip_view)
        restore = lambda lq, k: pipeline.restore(lq, sampler="posterior", seed=seed + k)  # noqa: E731
    results = [(label, psnr(lq, gt), psnr(restore(lq, k), gt)) for k, (gt, lq, label) in enumerate(pairs)]
    per_class = {}
    for i, name in enumerate(DEGRADATIONS):
        rows = [(a, b) for label, a, b in results if label == i]
        if rows:
            per_class[name] = {"psnr_in": float(np.mean([a for a, _ in rows])), "psnr_out": float(np.mean([b for _, b in rows]))}
    return {
        "psnr_in": float(np.mean([a for _, a, _ in results])) if results else None,
        "psnr_out": float(np.mean([b for _, _, b in results])) if results else None,
        "per_class": per_class,
        "n": len(results),
        "images": list(sources.EVAL_IMAGES),
        "sampler": None if stage == "direct" else f"posterior, T={schedule.T}",
    }


def evaluate_saved_unet(
    stage: str, path: Path, daclip: DaCLIP, per_class: int, size: int, seed: int, device, clip_view: str
) -> dict:
    """:func:`evaluate_restorer` of the UNet saved at ``path`` (loaded back as inference
    does) on ``per_class`` held-out crops per degradation from seed ``seed + 1``."""
    pairs = eval_pairs(per_class, size, seed + 1)
    unet = checkpoints.load_unet(path, device=device).float()
    return evaluate_restorer(stage, daclip, unet, pairs, seed=seed, clip_view=clip_view)
