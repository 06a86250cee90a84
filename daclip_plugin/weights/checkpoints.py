"""Read and write DA-CLIP and conditional-UNet checkpoints in the official formats.

Accepted files: a plain state dict, ``{"state_dict": ...}``, keys prefixed with ``module.``,
and DA-CLIP files without the ``visual.*`` alias of ``clip.visual.*``. Files are always read
with ``torch.load(..., weights_only=True)`` (no pickled code runs) and loaded strictly; any
difference raises :class:`~daclip_plugin.errors.CheckpointError` naming the file.

The architecture comes from, in this order: the ``clip_cfg`` / ``unet_cfg`` argument; a
sidecar JSON next to the checkpoint (same name, suffix ``.json``, holding the config itself
or ``{"clip_cfg": ...}`` / ``{"unet_cfg": ...}``); the tensor shapes. Shapes determine
everything except the number of attention heads in DA-CLIP's two towers: the released
architectures are recognised by their shapes, and otherwise 64-wide heads are assumed (one
head when the width is not a multiple of 64), with a warning. :func:`save_daclip` writes the
sidecar when a model's heads differ from that assumption, so saved files always round-trip.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .. import persist
from ..errors import CheckpointError
from ..nn import configs
from ..nn.daclip import DaCLIP
from ..nn.unet import ConditionalUNet

RELEASED_DACLIP_CONFIGS = {name: configs.config("daclip", name) for name in ("daclip_ViT-B-32", "daclip_ViT-L-14")}
"""open_clip configs of the released DA-CLIP models (the ``_mix`` variant shares ViT-B-32's)."""

RELEASED_UNET_CONFIGS = {name: configs.config("unet", name) for name in ("universal-ir", "wild-ir")}
"""ConditionalUNet configs of the released restoration models."""

_HEAD_WIDTH = 64
_LISTED = 5


def _check_archive(path: Path) -> None:
    """A checkpoint in PyTorch's zip format must pass the archive's CRC checks (torch skips them)."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: the archive is damaged ({exc})") from exc
    if damaged is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: its archive's checksum fails for {damaged!r}")


def safe_load(path: str | os.PathLike):
    """``torch.load(path, weights_only=True)`` on the CPU, quietly: a hostile or foreign file's
    pickle details make torch warn before it refuses; the caller's error says what matters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped from ``{"state_dict": ...}``, ``module.`` removed.

    Damaged archives and tensors holding NaN or infinite values are refused, naming the file.
    """
    path = Path(path)
    _check_archive(path)
    try:
        obj = safe_load(path)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path}: not a plain tensor file (corrupt, or it holds pickled objects, "
            "which are never loaded because they could run code)"
        ) from exc
    except Exception as exc:  # torch raises many types for missing, truncated or corrupt files
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {first_line}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not (isinstance(obj, dict) and obj and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())):
        raise CheckpointError(f"{path} is not a checkpoint: it holds no state dict of tensors")
    broken = [key for key, value in obj.items() if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if broken:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: {len(broken)} tensor(s) hold NaN or infinite values ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''})"
        )
    return {key.removeprefix("module."): value for key, value in obj.items()}


def _shape(state: dict, key: str, ndim: int) -> tuple[int, ...]:
    if key not in state:
        raise KeyError(key)
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise ValueError(f"{key} has shape {list(shape)}, expected {ndim} dimensions")
    return shape


def _count_blocks(state: dict, prefix: str) -> int:
    indices = {key[len(prefix):].split(".")[0] for key in state if key.startswith(prefix)}
    return max((int(i) for i in indices if i.isdigit()), default=-1) + 1


def _assumed_heads(width: int) -> int:
    return width // _HEAD_WIDTH if width % _HEAD_WIDTH == 0 else 1


def infer_clip_cfg(state: dict[str, torch.Tensor]) -> dict:
    """open_clip config of a DA-CLIP state dict, from its shapes (heads assumed 64 wide)."""
    vis = "clip.visual."
    width, _, patch, _ = _shape(state, vis + "conv1.weight", 4)
    grid_tokens = _shape(state, vis + "positional_embedding", 2)[0] - 1
    vision = {
        "image_size": round(grid_tokens**0.5) * patch,
        "layers": _count_blocks(state, vis + "transformer.resblocks."),
        "width": width,
        "patch_size": patch,
        "head_width": width // _assumed_heads(width),
    }
    context_length, text_width = _shape(state, "clip.positional_embedding", 2)
    text = {
        "context_length": context_length,
        "vocab_size": _shape(state, "clip.token_embedding.weight", 2)[0],
        "width": text_width,
        "heads": _assumed_heads(text_width),
        "layers": _count_blocks(state, "clip.transformer.resblocks."),
    }
    for cfg, prefix in ((vision, vis + "transformer."), (text, "clip.transformer.")):
        ratio = _shape(state, prefix + "resblocks.0.mlp.c_fc.weight", 2)[0] / cfg["width"]
        if ratio != 4:
            cfg["mlp_ratio"] = ratio
    return {"embed_dim": _shape(state, "clip.text_projection", 2)[1], "vision_cfg": vision, "text_cfg": text}


def infer_unet_cfg(state: dict[str, torch.Tensor]) -> dict:
    """ConditionalUNet keyword arguments of a UNet state dict, from its keys and shapes."""
    nf, in_channels = _shape(state, "init_conv.weight", 4)[:2]
    depth = _count_blocks(state, "downs.")
    ch_mult = [_shape(state, f"downs.{i}.3.weight", 4)[0] // nf for i in range(max(depth, 1))]
    use_degra = "prompt" in state
    use_image = "mid_attn.fn.fn.proj_in.weight" in state
    if use_degra:
        context_dim = _shape(state, "text_mlp.0.weight", 2)[1]
    elif use_image:
        context_dim = _shape(state, "mid_attn.fn.fn.transformer_blocks.0.attn2.to_k.weight", 2)[1]
    else:
        context_dim = None
    return {
        "in_nc": in_channels // 2,
        "out_nc": _shape(state, "final_conv.weight", 4)[0],
        "nf": nf,
        "ch_mult": ch_mult,
        "context_dim": context_dim,
        "use_degra_context": use_degra,
        "use_image_context": use_image,
        "scale": 0.5 if "downsample.weight" in state else 1,
    }


def _without_heads(cfg: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["vision_cfg"].pop("head_width", None)
    cfg["text_cfg"].pop("heads", None)
    return cfg


def _released_name(cfg: dict) -> str | None:
    """Name of the released DA-CLIP whose shapes ``cfg`` has, if any."""
    shapes = _without_heads(cfg)
    return next((n for n, c in RELEASED_DACLIP_CONFIGS.items() if _without_heads(c) == shapes), None)


def _describe_clip(cfg: dict) -> str:
    name = _released_name(cfg)
    if name:
        return f"DA-CLIP {name}"
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    return (
        f"DA-CLIP (embed_dim {cfg['embed_dim']}; image tower {vision['layers']} layers of width "
        f"{vision['width']}, patch {vision['patch_size']}, {vision['image_size']} px; text tower "
        f"{text['layers']} layers of width {text['width']}, context {text['context_length']}, "
        f"vocabulary {text['vocab_size']})"
    )


def _describe_unet(cfg: dict) -> str:
    name = next((n for n, c in RELEASED_UNET_CONFIGS.items() if c == cfg), None)
    if name:
        return f"ConditionalUNet {name}"
    return "ConditionalUNet(" + ", ".join(f"{k}={v!r}" for k, v in cfg.items()) + ")"


def describe_checkpoint(state: dict[str, torch.Tensor]) -> str:
    """A short human-readable name of the architecture a state dict holds."""
    for infer, describe in ((infer_clip_cfg, _describe_clip), (infer_unet_cfg, _describe_unet)):
        try:
            return describe(infer(state))
        except (KeyError, ValueError, ZeroDivisionError):
            continue
    return f"an unknown model ({len(state)} tensors: {_listing(list(state))})"


def _listing(items: list[str]) -> str:
    more = f" and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
    return ", ".join(items[:_LISTED]) + more


def _sidecar_cfg(path: Path, key: str) -> dict | None:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        content = json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the config {sidecar} of checkpoint {path}: {exc}") from exc
    return content.get(key, content) if isinstance(content, dict) else None


def _infer(path: Path, state: dict, infer: Callable[[dict], dict], kind: str) -> dict:
    try:
        return infer(state)
    except (KeyError, ValueError, ZeroDivisionError) as exc:
        raise CheckpointError(
            f"{path} is not a {kind} checkpoint ({type(exc).__name__}: {exc}); it holds {describe_checkpoint(state)}"
        ) from exc


def _check_fits(path: Path, target: str, expected: dict[str, torch.Tensor], state: dict) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} (expected {list(expected[k].shape)}, found {list(state[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = [
        f"{len(keys)} {what}: {_listing(keys)}"
        for what, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"{path} does not fit {target}; the file holds {describe_checkpoint(state)}. " + "; ".join(problems)
        )


def _build_and_load(path: Path, state: dict, build: Callable[[], nn.Module], device) -> nn.Module:
    """Check ``state`` against the model ``build`` makes, then make it hold ``state``'s tensors.

    The model is built on the meta device and takes the loaded tensors as its own (converted
    to its dtypes where they differ), so loading needs one copy of the weights in memory, not two.
    """
    try:
        with torch.device("meta"):
            model = build()
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise CheckpointError(f"invalid config for {path}: {type(exc).__name__}: {exc}") from exc
    expected = model.state_dict()
    _check_fits(path, describe_checkpoint(expected), expected, state)
    state = {key: value.to(expected[key].dtype) for key, value in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    del state
    if hasattr(model, "rebuild_buffers"):
        model.rebuild_buffers()
    return model.to(device).eval()


def _fill_visual_alias(path: Path, state: dict) -> dict:
    """Add ``visual.*`` (the official alias of ``clip.visual.*``) when the file lacks it."""
    clip_visual = {key.removeprefix("clip."): value for key, value in state.items() if key.startswith("clip.visual.")}
    if not any(key.startswith("visual.") for key in state):
        return {**state, **clip_visual}
    differing = [k for k, v in clip_visual.items() if k in state and not torch.equal(state[k], v)]
    if differing:
        raise CheckpointError(f"{path}: the alias visual.* differs from clip.visual.* at {_listing(differing)}")
    return state


def load_daclip(path: str | os.PathLike, clip_cfg: dict | None = None, device="cpu") -> DaCLIP:
    """Load a DA-CLIP checkpoint strictly, in eval mode, on ``device``."""
    path = Path(path)
    state = read_state_dict(path)
    cfg = clip_cfg if clip_cfg is not None else _sidecar_cfg(path, "clip_cfg")
    if cfg is None:
        cfg = _infer(path, state, infer_clip_cfg, "DA-CLIP")
        if _released_name(cfg) is None:
            warnings.warn(
                f"{path}: the number of attention heads cannot be read from the tensors; assuming heads "
                f"of width {_HEAD_WIDTH}. Pass clip_cfg or a sidecar .json for exact numbers.",
                stacklevel=2,
            )
    state = _fill_visual_alias(path, state)
    return _build_and_load(path, state, lambda: DaCLIP(cfg), device)


def load_unet(path: str | os.PathLike, unet_cfg: dict | None = None, device="cpu") -> ConditionalUNet:
    """Load a conditional-UNet checkpoint strictly, in eval mode, on ``device``."""
    path = Path(path)
    state = read_state_dict(path)
    cfg = unet_cfg if unet_cfg is not None else _sidecar_cfg(path, "unet_cfg")
    if cfg is None:
        cfg = _infer(path, state, infer_unet_cfg, "ConditionalUNet")
    return _build_and_load(path, state, lambda: ConditionalUNet(**cfg), device)


def _save(state: dict, path: Path) -> None:
    with persist.replacing(path) as partial, open(partial, "xb") as stream:
        torch.save(dict(state), stream)  # to a stream: the archive's inner names do not depend on the file name


def save_daclip(model: DaCLIP, path: str | os.PathLike) -> None:
    """Write the official layout (a plain state dict with the ``visual.*`` alias).

    When the model's attention heads differ from those :func:`load_daclip` assumes, its
    config also goes to the sidecar ``.json``, so that the file loads back exactly.
    """
    path = Path(path)
    if not model.has_text_tower:
        raise CheckpointError(f"cannot save {path}: this DA-CLIP's text tower was released after loading")
    state = model.state_dict()
    _save(state, path)
    cfg = infer_clip_cfg(state)
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    vision_heads = model.clip.visual.transformer.resblocks[0].attn.num_heads
    text_heads = model.clip.transformer.resblocks[0].attn.num_heads
    if (vision_heads, text_heads) != (_assumed_heads(vision["width"]), text["heads"]):
        vision["head_width"] = vision["width"] // vision_heads
        text["heads"] = text_heads
        path.with_suffix(".json").write_text(json.dumps({"clip_cfg": cfg}, indent=1))


def save_unet(model: ConditionalUNet, path: str | os.PathLike) -> None:
    """Write the official layout: a plain state dict."""
    _save(model.state_dict(), Path(path))
