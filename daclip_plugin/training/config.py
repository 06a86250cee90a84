"""What a training stage is told: :class:`TrainConfig`, its presets and the files it writes."""

from __future__ import annotations

import argparse
import copy
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from ..errors import DaclipError
from ..models.tiny import TINY_CLIP_CFG, TINY_UNET_CFG
from ..nn.daclip import CLIP_VIEWS
from .data import parse_weights, sampling_weights
from .objectives import DIRECT_LOSSES

STAGES = ("daclip", "irsde", "direct")


FILE_NAMES = {"daclip": "daclip_tiny.pt", "irsde": "irsde_tiny.pth", "direct": "direct_tiny.pth"}
LOG_NAME = "train_log.jsonl"
PROVENANCE_NAME = "provenance.json"

#: Defaults per preset and stage. ``cpu``: minutes on two cores; ``gpu``: one H100.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {
        "daclip": {"steps": 200, "batch": 16, "lr": 1e-3, "workers": 0, "eval_per_class": 10},
        "irsde": {"steps": 200, "batch": 8, "patch": 48, "lr": 5e-4, "workers": 0, "eval_per_class": 1, "eval_size": 64},
        "direct": {"steps": 200, "batch": 8, "patch": 48, "lr": 5e-4, "workers": 0, "eval_per_class": 2, "eval_size": 64},
    },
    "gpu": {
        "daclip": {"max_minutes": 2.0, "batch": 128, "lr": 1e-3, "workers": 14, "eval_per_class": 40},
        "irsde": {"max_minutes": 2.0, "batch": 32, "patch": 96, "lr": 5e-4, "workers": 14, "eval_per_class": 4, "eval_size": 128},
        "direct": {
            "max_minutes": 2.25,
            "batch": 32,
            "patch": 96,
            "lr": 5e-4,
            "workers": 14,
            "eval_per_class": 4,
            "eval_size": 128,
        },
    },
}


def flag(default: Any, help: str, **argparse_options: Any) -> Any:
    """A :class:`TrainConfig` field that ``daclip train`` offers as ``--name-with-dashes``."""
    return field(default=default, metadata={"flag": {"help": help, **argparse_options}})


@dataclass
class TrainConfig:
    """Everything one stage needs. ``None`` fields take the preset's value for the stage.

    A field made with :func:`flag` is also a ``daclip train`` option (see :func:`add_flags`):
    a new option is one line here.
    """

    stage: str
    out: Path
    preset: str = flag("cpu", "defaults of the options below (default: cpu)", choices=tuple(PRESETS))
    steps: Optional[int] = flag(None, "total training steps (counted across --resume)")
    max_minutes: Optional[float] = flag(None, "total training time (counted across --resume)")
    batch: Optional[int] = flag(None, "samples per step")
    patch: Optional[int] = flag(None, "UNet training patch size (irsde, direct)")
    lr: Optional[float] = flag(None, "peak learning rate")
    workers: Optional[int] = flag(None, "data loader processes")
    device: str = flag("auto", "auto (default), cpu, cuda, cuda:1, ...")
    seed: int = flag(0, "random seed (default 0)")
    resume: bool = flag(False, "continue from DIR/STAGE_state.pt")
    daclip: Optional[Path] = flag(None, "the trained DA-CLIP (default: DIR/daclip_tiny.pt)", metavar="FILE")
    init: Optional[Path] = flag(None, "start from these weights (a saved model of the same stage)", metavar="FILE")
    crop_min: Optional[int] = flag(None, "smallest training crop (default: the DA-CLIP input size)", metavar="PX")
    crop_max: Optional[int] = flag(None, "largest training crop (default: crop-min + 64)", metavar="PX")
    scale_min: float = 0.5
    warmup: int = 100
    weight_decay: Optional[float] = None
    grad_clip: float = 1.0
    checkpoint_every: int = flag(500, "save the training state every N steps", metavar="N")
    log_every: int = 25
    print_seconds: float = 15.0
    eval_per_class: Optional[int] = flag(None, "held-out evaluation crops per degradation", metavar="N")
    eval_size: Optional[int] = flag(None, "held-out evaluation crop size (irsde, direct)", metavar="PX")
    save_dtype: str = "float16"
    amp: bool = True
    clip_view: str = flag(
        "resize",
        "how the DA-CLIP sees an image: resize (official, default) or tiles (unresized tiles of its input size)",
        choices=CLIP_VIEWS,
    )
    loss: str = flag(
        "l1",
        "direct stage only: l1 (default) or log-l1 (mean of log per-patch L1: weighs subtle degradations like strong ones)",
        choices=tuple(DIRECT_LOSSES),
    )
    degradation_weights: Optional[dict] = flag(
        None,
        "sample these degradations W times as often (others 1; 0 leaves one out), e.g. raindrop=4",
        metavar="NAME=W,...",
        type=parse_weights,
    )
    clip_cfg: dict = field(default_factory=lambda: copy.deepcopy(TINY_CLIP_CFG))
    unet_cfg: dict = field(default_factory=lambda: copy.deepcopy(TINY_UNET_CFG))
    command: Optional[list] = None
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise DaclipError(f"unknown training stage {self.stage!r}; choose one of {', '.join(STAGES)}")
        if self.preset not in PRESETS:
            raise DaclipError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        self.out = Path(self.out)
        for key, value in PRESETS[self.preset][self.stage].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.patch is None:
            self.patch = 48
        if self.eval_size is None:
            self.eval_size = 128
        if self.weight_decay is None:
            self.weight_decay = 0.05 if self.stage == "daclip" else 0.0
        if self.eval_per_class is None:
            self.eval_per_class = 0
        if self.steps is not None and self.steps < 0:
            raise DaclipError("--steps must be >= 0")
        # the UNet stages learn the DA-CLIP input size when they load the DA-CLIP
        self.resolve_crops(int(self.clip_cfg["vision_cfg"]["image_size"]) if self.stage == "daclip" else None)
        if self.clip_view not in CLIP_VIEWS:
            raise DaclipError(f"unknown DA-CLIP view {self.clip_view!r}; choose one of {', '.join(CLIP_VIEWS)}")
        if self.loss not in DIRECT_LOSSES:
            raise DaclipError(f"unknown direct-restorer loss {self.loss!r}; choose one of {', '.join(DIRECT_LOSSES)}")
        if self.loss != "l1" and self.stage != "direct":
            raise DaclipError(f"--loss {self.loss} is for the direct stage; the {self.stage} stage has its own objective")
        self.degradation_weights = sampling_weights(self.degradation_weights)
        if self.save_dtype not in ("float16", "float32"):
            raise DaclipError("save_dtype must be float16 or float32")

    def resolve_crops(self, clip_size: Optional[int]) -> None:
        """Fill unset crop sizes from the DA-CLIP input size, if known (``clip_size ..
        clip_size + 64``: the CLIP resize then changes a crop little; a larger ``crop_max``
        also shows the models the stronger downscaling of larger images), and check the
        sizes set so far."""
        if clip_size is not None:
            if self.crop_min is None:
                self.crop_min = min(int(clip_size), self.crop_max or int(clip_size))
            if self.crop_max is None:
                self.crop_max = self.crop_min + 64
        low, high = self.crop_min, self.crop_max
        if (low is not None and low < 1) or (high is not None and high < (low or 1)):
            raise DaclipError(f"need 1 <= crop_min <= crop_max, got {low}, {high}")
        if self.stage != "daclip" and low is not None and self.patch > low:
            raise DaclipError(f"the patch ({self.patch}) must not exceed the smallest context crop ({self.crop_min})")

    def file(self, stage: Optional[str] = None) -> Path:
        return self.out / FILE_NAMES[stage or self.stage]

    def state_file(self) -> Path:
        return self.out / f"{self.stage}_state.pt"

    def daclip_file(self) -> Path:
        return Path(self.daclip) if self.daclip is not None else self.file("daclip")

    def to_json(self) -> dict:
        data = asdict(self)
        data["out"] = str(self.out)
        data["daclip"] = None if self.daclip is None else str(self.daclip)
        data["init"] = None if self.init is None else str(self.init)
        return data


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``daclip train``'s arguments: the stage, ``--out`` and every :func:`flag` field."""
    parser.add_argument("stage", choices=STAGES, help="what to train")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the models, state, log and provenance.json")
    hints = typing.get_type_hints(TrainConfig)
    for item in fields(TrainConfig):
        options = dict(item.metadata.get("flag", {}))
        if not options:
            continue
        name = "--" + item.name.replace("_", "-")
        kind = hints[item.name]
        if kind is bool:
            parser.add_argument(name, action="store_true", help=options["help"])
            continue
        if "type" not in options and "choices" not in options:
            options["type"] = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        parser.add_argument(name, default=None, **options)


def config_from_args(args: argparse.Namespace, command: Optional[list] = None) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``daclip train`` arguments (options not given keep their defaults)."""
    given = {
        item.name: value
        for item in fields(TrainConfig)
        if "flag" in item.metadata and (value := getattr(args, item.name, None)) is not None and value is not False
    }
    return TrainConfig(args.stage, Path(args.out), command=command, **given)
