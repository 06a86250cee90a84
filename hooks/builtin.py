"""The built-in DA-CLIP restorers and classifier, registered like any third-party plugin.

``daclip``: DA-CLIP-guided IR-SDE diffusion (100 UNet passes with the official samplers,
10-20 with MaRS; seeded). ``daclip-direct``: DA-CLIP contexts and one pass of a direct
restorer UNet (deterministic), for models with direct restorer weights such as the embedded
``tiny``. Their options are declared here, once; nothing here imports torch. The restorers
are generators (``iter_restore``): a step per network call; their options, device and
precision are checked when the generator is made, before its first step.
"""

from __future__ import annotations

from pathlib import Path

from daclip_plugin import Classifier, Restorer, hookimpl
from daclip_plugin.engine import samplers
from daclip_plugin.engine.devices import DEVICE_HELP, PRECISIONS
from daclip_plugin.options import Option


def _model_options(model: str, unet_help: str = "") -> tuple[Option, ...]:
    """The options naming a model's files (a UNet file only where ``unet_help`` says what it is)."""
    unet = (Option("unet_path", Path, None, unet_help, nullable=True),) if unet_help else ()
    return (
        Option("model", str, model, "a registered model (see `daclip models`)"),
        Option("daclip_path", Path, None, "use this DA-CLIP checkpoint instead of the model's", nullable=True),
        *unet,
        Option("download", bool, False, "download missing weights first"),
        Option("device", str, "auto", DEVICE_HELP),
    )


TILE_SIZE = Option(
    "tile_size", int, None, "UNet tile size in px (None: by the memory budget; 0: never)", nullable=True, minimum=0,
)
MEMORY_BUDGET = Option(
    "memory_budget", int, None,
    "MiB a UNet call may use; larger images are restored in tiles (None: DACLIP_MEMORY_BUDGET, "
    "else 20% of the available memory, at most 512 MiB, on a CPU; 60% of the free memory on a GPU)",
    nullable=True, minimum=1,
)
PRECISION = Option(
    "precision", str, "fp32",
    "UNet arithmetic: fp32 (exact); bf16 on GPUs and on CPUs with bfloat16 instructions (faster, about 1e-2 "
    "of the output's range); tf32 and fp16 on NVIDIA GPUs",
    choices=PRECISIONS,
)
COMPILE = Option(
    "compile", bool, False,
    "compile the UNet with torch.compile (inductor; CUDA graphs on NVIDIA GPUs): the first call of each image or "
    "tile size takes seconds to minutes",
)


def _checked(restorer: Restorer, options: dict) -> dict:
    """Every option's value, checked, and the device able to run the precision (else a DaclipError)."""
    from daclip_plugin.engine.devices import check_precision, select_device

    o = restorer.resolve_options(options)
    check_precision(select_device(o["device"]), o["precision"])
    return o


def _pipeline(model, daclip_path, unet_path, download, device):
    from daclip_plugin.engine import pipeline

    return pipeline.load_pipeline(model, daclip_path=daclip_path, unet_path=unet_path, download=download, device=device)


class DaclipRestorer(Restorer):
    """DA-CLIP-guided IR-SDE diffusion restoration with the official or compatible weights."""

    name = "daclip"
    description = "DA-CLIP-guided IR-SDE diffusion (one UNet pass per sampling step)"
    options = (
        *_model_options("universal-ir", "use this IR-SDE UNet checkpoint instead of the model's"),
        *samplers.sampling_options(),
        Option("seed", int, 0, "random seed: same seed and device, same result (None: fresh randomness)",
               nullable=True, minimum=0, maximum=2**63 - 1),
        TILE_SIZE,
        MEMORY_BUDGET,
        PRECISION,
        COMPILE,
    )

    @staticmethod
    def _load(o):
        return _pipeline(o["model"], o["daclip_path"], o["unet_path"], o["download"], o["device"])

    def estimate(self, image, **options):
        return self._load(self.resolve_options(options)).conditioning(image)

    def iter_restore(self, image, *, estimate=None, **options):
        return self._steps(image, _checked(self, options), estimate)

    def _steps(self, image, o, estimate):
        engine = self._load(o)
        return (yield from engine.iter_restore(
            image, sampler=o["sampler"], sampler_options=samplers.options_for(o), seed=o["seed"],
            tile_size=o["tile_size"], memory_budget=o["memory_budget"], precision=o["precision"], compile=o["compile"],
            estimate=estimate,
        ))


class DaclipDirectRestorer(Restorer):
    """DA-CLIP contexts + one pass of a direct restorer UNet (models with a ``direct`` file)."""

    name = "daclip-direct"
    description = "DA-CLIP-conditioned UNet, one pass per image, deterministic (the embedded 'tiny' model's restorer)"
    options = (
        *_model_options("tiny", "use this direct restorer UNet checkpoint instead of the model's"),
        TILE_SIZE,
        MEMORY_BUDGET,
        PRECISION,
        COMPILE,
    )

    @staticmethod
    def _load(o):
        from daclip_plugin.engine import direct

        return direct.load_model(
            o["model"], daclip_path=o["daclip_path"], unet_path=o["unet_path"], download=o["download"], device=o["device"]
        )

    def estimate(self, image, **options):
        return self._load(self.resolve_options(options)).conditioning(image)

    def iter_restore(self, image, *, estimate=None, **options):
        return self._steps(image, _checked(self, options), estimate)

    def _steps(self, image, o, estimate):
        engine = self._load(o)
        return (yield from engine.iter_restore(
            image, tile_size=o["tile_size"], memory_budget=o["memory_budget"], precision=o["precision"],
            compile=o["compile"], estimate=estimate,
        ))


class DaclipClassifier(Classifier):
    """Zero-shot degradation classification with DA-CLIP's degradation features."""

    name = "daclip"
    description = "DA-CLIP degradation features against the degradation names (or your prompts)"
    options = (
        *_model_options("universal-ir"),  # DA-CLIP only: no UNet file is needed
        Option(
            "prompts", list, None, "degradation names or descriptions to score instead of the 10 official ones", nullable=True
        ),
    )

    def classify(self, image, **options):
        from daclip_plugin.engine import pipeline

        o = self.resolve_options(options)
        extra = {} if o["prompts"] is None else {"prompts": tuple(o["prompts"])}
        classifier = pipeline.load_classifier(
            o["model"], daclip_path=o["daclip_path"], download=o["download"], device=o["device"], **extra
        )
        return pipeline.classify_rgb(classifier, image)


@hookimpl
def register_restorers(register):
    register(DaclipRestorer())
    register(DaclipDirectRestorer())


@hookimpl
def register_classifiers(register):
    register(DaclipClassifier())
