"""Building, initialising and optimising the models being trained."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DaclipError
from ..nn.daclip import DaCLIP
from ..weights import checkpoints
from .records import weights_record


def training_device(name: str) -> torch.device:
    from ..engine.devices import select_device

    device = select_device(name)
    if device.type == "mps":  # not tested for training
        return torch.device("cpu")
    return device


def lr_factor(step: int, progress: float, warmup: int, final: float = 0.01) -> float:
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    cosine = final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return warm * cosine


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay, seen = [], [], set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if param.ndim >= 2 and "embedding" not in name and weight_decay > 0:
            decay.append(param)
        else:
            no_decay.append(param)
    groups = [{"params": no_decay, "weight_decay": 0.0}]
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    return groups


def to_device(batch: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def build_daclip(clip_cfg: dict) -> DaCLIP:
    return DaCLIP(copy.deepcopy(clip_cfg))


def context_dim_of(model: DaCLIP) -> int:
    return int(model.clip.text_projection.shape[1])


def resample_patch_kernel(weight: Tensor, size: int) -> Tensor:
    """A patch-embedding kernel for ``size`` px patches from one for ``k`` px patches.

    Its low-pass part sees a ``size / k`` times larger image as the given kernel sees the
    image shrunk by that factor (box average); its high-pass part (zero mean over every
    ``size / k`` square cell) is random, at the scale of a fresh initialisation: a zero
    high-pass part would get no gradient from zero-mean detail such as noise, so the new
    kernel could never learn to see what the old resolution hid.
    """
    old = weight.shape[-1]
    if size % old:
        raise DaclipError(f"cannot resample a {old} px patch embedding to {size} px patches")
    factor = size // old
    low = weight.repeat_interleave(factor, 2).repeat_interleave(factor, 3) / factor**2
    fresh = torch.empty_like(low)
    nn.init.kaiming_uniform_(fresh, a=math.sqrt(5))  # nn.Conv2d's default
    cells = F.avg_pool2d(fresh, factor).repeat_interleave(factor, 2).repeat_interleave(factor, 3)
    return low + (fresh - cells)


def initialise_from(model: nn.Module, path: Path) -> dict:
    """Load the weights of a saved model of the same stage into ``model`` (fine-tuning).

    Every tensor must fit, except a DA-CLIP's patch embeddings, which are resampled to the
    model's patch size (:func:`resample_patch_kernel`): a 112 px, 16 px-patch DA-CLIP then
    starts a 224 px, 32 px-patch one. Returns what provenance records of the start.
    """
    path = Path(path)
    if not path.is_file():
        raise DaclipError(f"--init: {path} not found")
    try:
        saved = load_daclip_quietly(path) if isinstance(model, DaCLIP) else checkpoints.load_unet(path)
    except DaclipError as error:
        raise DaclipError(f"--init: {path} does not hold the same kind of model: {error}") from error
    source, target = saved.float().state_dict(), model.state_dict()
    if set(source) != set(target):
        raise DaclipError(f"--init: {path} does not hold the same kind of model (its tensors have other names)")
    loaded = {}
    for key, value in target.items():
        tensor = source[key]
        if tensor.shape != value.shape and key.endswith("conv1.weight") and tensor.shape[:2] == value.shape[:2]:
            tensor = resample_patch_kernel(tensor, value.shape[-1])
        if tensor.shape != value.shape:
            raise DaclipError(f"--init: {key} is {tuple(tensor.shape)} in {path}, the model needs {tuple(value.shape)}")
        loaded[key] = tensor
    model.load_state_dict(loaded)
    return weights_record(path)


def autocast_factory(device: torch.device, enabled: bool) -> Callable:
    if device.type == "cuda" and enabled:
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return lambda: torch.autocast(device.type, enabled=False)


def load_daclip_quietly(path, device="cpu") -> DaCLIP:
    """:func:`~daclip_plugin.weights.checkpoints.load_daclip` without the attention-heads warning.

    The embedded models use the heads the loader assumes (64-wide), so the warning that the
    heads cannot be read from the tensors is noise for them.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*number of attention heads cannot be read.*")
        return checkpoints.load_daclip(path, device=device)


def reloaded_daclip(path, device) -> DaCLIP:
    """The saved DA-CLIP as inference sees it (loaded back from the file, float32, eval mode)."""
    return load_daclip_quietly(path, device=device).float().eval()
