"""One training stage from start to end (:func:`train`) and its command line."""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
import torch

from .. import persist
from ..errors import CheckpointError, DaclipError
from ..nn.daclip import DEGRADATIONS
from ..weights import checkpoints
from ..weights.integrity import sha256_file
from .config import LOG_NAME, TrainConfig, config_from_args
from .data import DegradationSamples, batches, train_images
from .models import (
    autocast_factory,
    initialise_from,
    lr_factor,
    param_groups,
    to_device,
    training_device,
)
from .records import TrainingLog, environment, save_model, write_provenance
from .stages import stage_for


def train(config: TrainConfig) -> dict:
    """Run one stage; returns its provenance entry (also written to ``provenance.json``)."""
    wall_start = time.monotonic()
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    device = training_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed training shapes; matmuls stay strict fp32 (no TF32)
    log = TrainingLog(out / LOG_NAME, config.stage, config.quiet, config.print_seconds)
    stage = config.stage

    state = None
    if config.resume and config.state_file().is_file():
        try:
            state = checkpoints.safe_load(config.state_file())
        except Exception as exc:  # not a state this code wrote: never unpickled beyond plain data
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise CheckpointError(f"cannot resume from {config.state_file()}: {type(exc).__name__}: {first_line}") from exc
        if not isinstance(state, dict) or not {"stage", "seed", "step"} <= set(state):
            raise CheckpointError(f"cannot resume from {config.state_file()}: it is not a training state")
        if state.get("stage") != stage:
            raise DaclipError(f"{config.state_file()} holds stage {state.get('stage')!r}, not {stage!r}")
    elif config.resume:
        log.say(f"no saved state at {config.state_file()}: starting from scratch")
    seed = int(state["seed"]) if state else config.seed
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)

    stage_impl = stage_for(config)
    model, model_cfg, clip_size = stage_impl.build_model(config, state["model_cfg"] if state else None, device)
    config.resolve_crops(clip_size)
    init = state.get("init") if state else None  # what the run started from, kept across resumes
    if config.init is not None and not state:
        init = initialise_from(model, config.init)
        log.say(f"initialised from {config.init}")
    model.train()

    optimizer = torch.optim.AdamW(
        param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, stage_impl.beta2)
    )
    step, train_seconds, resumed_from = 0, 0.0, None
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, train_seconds, resumed_from = int(state["step"]), float(state["train_seconds"]), int(state["step"])
    loss_tail: list[float] = list(state.get("loss_tail", [])) if state else []

    images, image_info = train_images(seed)
    dataset = DegradationSamples(
        images,
        stage=stage,
        seed=seed,
        clip_size=clip_size,
        crop_min=config.crop_min,
        crop_max=config.crop_max,
        scale_min=config.scale_min,
        patch=config.patch,
        clip_view=config.clip_view,
        weights=config.degradation_weights,
    )
    autocast = autocast_factory(device, config.amp)
    max_seconds = None if config.max_minutes is None else config.max_minutes * 60
    n_params = sum(p.numel() for p in model.parameters())

    def progress() -> float:
        fractions = []
        if config.steps is not None:
            fractions.append(step / max(config.steps, 1))
        if max_seconds is not None:
            fractions.append(train_seconds / max(max_seconds, 1e-9))
        return max(fractions) if fractions else 0.0

    def done() -> bool:
        return (config.steps is not None and step >= config.steps) or (max_seconds is not None and train_seconds >= max_seconds)

    def save_state() -> None:
        payload = {
            "stage": stage,
            "seed": seed,
            "step": step,
            "train_seconds": train_seconds,
            "model_cfg": model_cfg,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "loss_tail": loss_tail[-200:],
            "init": init,
        }
        with persist.replacing(config.state_file()) as partial, open(partial, "xb") as stream:
            torch.save(payload, stream)

    log.write(
        {
            "event": "start",
            "step": step,
            "resumed_from": resumed_from,
            "device": str(device),
            "params": n_params,
            "batch": config.batch,
            "patch": config.patch if stage_impl.patches else None,
            "seed": seed,
        }
    )
    log.say(
        f"{'resuming at' if state else 'starting at'} step {step} on {device}: {n_params / 1e6:.2f} M parameters, "
        f"batch {config.batch}"
        + (f", patch {config.patch}" if stage_impl.patches else "")
        + (f", up to {config.steps} steps" if config.steps is not None else "")
        + (f", up to {config.max_minutes:g} min" if max_seconds is not None else "")
    )

    window: dict[str, float] = {}
    window_count = 0
    loader = None
    interrupted = False
    if not done():
        loader = batches(dataset, config.batch, step, config.workers, pin=device.type == "cuda")
        iterator = iter(loader)
        segment_start = time.monotonic()
        base_seconds = train_seconds
        try:
            while not done():
                batch = to_device(next(iterator), device)
                factor = lr_factor(step, progress(), config.warmup)
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * factor
                terms = stage_impl.loss(model, batch, autocast)
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                stage_impl.after_step(model)
                step += 1
                for key, value in terms.items():
                    window[key] = window.get(key, 0.0) + value.detach()
                window_count += 1
                train_seconds = base_seconds + time.monotonic() - segment_start
                if step % config.log_every == 0 or done():
                    means = {k: float(v) / window_count for k, v in window.items()}
                    if not all(math.isfinite(v) for v in means.values()):
                        raise DaclipError(f"{stage}: the loss became non-finite at step {step}: {means}")
                    loss_tail.append(means["loss"])
                    log.write(
                        {
                            "step": step,
                            **means,
                            "lr": config.lr * factor,
                            "train_s": round(train_seconds, 2),
                            "samples_per_s": round(step * config.batch / max(train_seconds, 1e-9), 1),
                        }
                    )
                    log.say(
                        f"step {step}  "
                        + "  ".join(f"{k} {v:.4g}" for k, v in means.items())
                        + f"  lr {config.lr * factor:.2e}  {train_seconds:.0f}s",
                        force=False,
                    )
                    window, window_count = {}, 0
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    save_state()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            del iterator, loader
    save_state()
    log.write({"event": "checkpoint", "step": step, "train_s": round(train_seconds, 2)})
    if interrupted:
        log.say(f"interrupted at step {step}; state saved to {config.state_file()} (continue with --resume)")
        raise KeyboardInterrupt

    # -- save the model and evaluate it ---------------------------------------------------
    model.eval()
    path = config.file()
    save_model(model, path, config.save_dtype)
    eval_start = time.monotonic()
    evaluation = None
    if config.eval_per_class:
        evaluation, summary = stage_impl.evaluate(path, config, seed, device)
        log.say(summary)
        evaluation["seconds"] = round(time.monotonic() - eval_start, 2)
        log.write({"event": "eval", "step": step, **evaluation})

    final_loss = float(np.mean(loss_tail[-4:])) if loss_tail else None
    entry = {
        "command": config.command if config.command is not None else list(sys.argv),
        "seed": seed,
        "steps": step,
        "resumed_from": resumed_from,
        "batch": config.batch,
        "patch": config.patch if stage_impl.patches else None,
        "crop": [config.crop_min, config.crop_max],
        "clip_view": config.clip_view,
        "scale_min": config.scale_min,
        "lr": config.lr,
        "warmup": config.warmup,
        "weight_decay": config.weight_decay,
        "grad_clip": config.grad_clip,
        "optimizer": "AdamW",
        "amp": "bf16 autocast (UNet only)" if (device.type == "cuda" and config.amp and stage_impl.patches) else "off (fp32)",
        "train_seconds": round(train_seconds, 2),
        "wall_seconds": round(time.monotonic() - wall_start, 2),
        "samples": step * config.batch,
        "final_loss": final_loss,
        "model_cfg": model_cfg,
        "parameters": n_params,
        "file": path.name,
        "file_bytes": path.stat().st_size,
        "file_dtype": config.save_dtype,
        "file_sha256": sha256_file(path),
        "clean_images": image_info,
        "degradations": list(DEGRADATIONS),
        **({"degradation_weights": config.degradation_weights} if config.degradation_weights else {}),
        "eval": evaluation,
        "config": config.to_json(),
        **environment(device),
    }
    if init is not None:
        entry["init"] = init
    entry.update(stage_impl.provenance(config))
    write_provenance(out, stage, entry)
    log.write(
        {"event": "end", "step": step, "train_s": round(train_seconds, 2), "wall_s": entry["wall_seconds"], "file": path.name}
    )
    log.say(
        f"done: {step} steps in {train_seconds:.0f}s, final loss {final_loss}, saved {path} ({entry['file_bytes'] / 1e6:.2f} MB)"
    )
    return entry


def main_from_args(args) -> int:
    """Run ``daclip train`` from its parsed arguments (see ``daclip train --help``)."""
    command = ["daclip", *sys.argv[1:]] if sys.argv and sys.argv[0].endswith("daclip") else list(sys.argv)
    config = config_from_args(args, command)
    entry = train(config)
    summary = {"stage": args.stage, "file": str(config.file()), "steps": entry["steps"], "final_loss": entry["final_loss"]}
    if entry["eval"]:
        summary["eval"] = {k: v for k, v in entry["eval"].items() if k in ("accuracy", "psnr_in", "psnr_out", "n")}
    print(json.dumps(summary))
    return 0
