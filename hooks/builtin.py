"""The built-in DA-CLIP restorers and classifier, registered like any third-party plugin.

``daclip``: DA-CLIP-guided IR-SDE diffusion (100 UNet passes, seeded). ``daclip-direct``:
DA-CLIP contexts and one pass of a direct restorer UNet (deterministic), for models with
direct restorer weights such as the embedded ``tiny``.
"""

from __future__ import annotations

from typing import Optional, Sequence

from daclip_plugin import Classifier, Restorer, hookimpl


def _pipeline(model, daclip_path, unet_path, download, device, prompts=None):
    from daclip_plugin import pipeline

    extra = {} if prompts is None else {"prompts": tuple(prompts)}
    return pipeline.load_pipeline(
        model, daclip_path=daclip_path, unet_path=unet_path, download=download, device=device, **extra
    )


class DaclipRestorer(Restorer):
    """DA-CLIP-guided IR-SDE diffusion restoration with the official or compatible weights."""

    name = "daclip"
    description = "DA-CLIP-guided IR-SDE diffusion (one UNet pass per sampling step)"

    def restore(
        self,
        image,
        *,
        progress=None,
        should_stop=None,
        model: str = "universal-ir",
        daclip_path: Optional[str] = None,
        unet_path: Optional[str] = None,
        download: bool = False,
        device: str = "auto",
        sampler: str = "posterior",
        seed: Optional[int] = 0,
        tile_size: Optional[int] = None,
        precision: str = "fp32",
    ):
        engine = _pipeline(model, daclip_path, unet_path, download, device)
        return engine.restore(
            image, sampler=sampler, seed=seed, tile_size=tile_size, precision=precision,
            progress=progress, should_stop=should_stop,
        )


class DaclipDirectRestorer(Restorer):
    """DA-CLIP contexts + one pass of a direct restorer UNet (models with a ``direct`` file)."""

    name = "daclip-direct"
    description = "DA-CLIP-conditioned UNet, one pass per image, deterministic (the embedded 'tiny' model's restorer)"

    def restore(
        self,
        image,
        *,
        progress=None,
        should_stop=None,
        model: str = "tiny",
        daclip_path: Optional[str] = None,
        unet_path: Optional[str] = None,
        download: bool = False,
        device: str = "auto",
        tile_size: Optional[int] = None,
    ):
        from daclip_plugin import direct

        restorer = direct.load_model(
            model, daclip_path=daclip_path, unet_path=unet_path, download=download, device=device
        )
        return restorer.restore(image, tile_size=tile_size, progress=progress, should_stop=should_stop)


class DaclipClassifier(Classifier):
    """Zero-shot degradation classification with DA-CLIP's degradation features."""

    name = "daclip"
    description = "DA-CLIP degradation features against the degradation names (or your prompts)"

    def classify(
        self,
        image,
        *,
        model: str = "universal-ir",
        daclip_path: Optional[str] = None,
        unet_path: Optional[str] = None,
        download: bool = False,
        device: str = "auto",
        prompts: Optional[Sequence[str]] = None,
    ):
        return _pipeline(model, daclip_path, unet_path, download, device, prompts).classify(image)


@hookimpl
def register_restorers(register):
    register(DaclipRestorer())
    register(DaclipDirectRestorer())


@hookimpl
def register_classifiers(register):
    register(DaclipClassifier())
