"""The official DA-CLIP weights, registered as named models.

All files live in the Hugging Face repository ``weblzw/daclip-uir-ViT-B-32-irsde`` and are
downloaded only on request (``daclip download NAME``). Their sizes are not recorded here
(``size=None``: unknown until the server is asked). The architectures are named after the
released configs of :mod:`daclip_plugin.checkpoints` (those of the official ``test.yml``
options), so a file of another architecture fails to load with a clear error.
"""

from daclip_plugin.hookspecs import hookimpl
from daclip_plugin.weights import OFFICIAL_REPO, ModelSpec, WeightFile

OFFICIAL_MODELS = (
    ModelSpec(
        name="universal-ir",
        description="official universal restoration: 10 degradations (DA-CLIP ViT-B-32 + IR-SDE UNet)",
        daclip=WeightFile.hub(OFFICIAL_REPO, "daclip_ViT-B-32.pt"),
        unet=WeightFile.hub(OFFICIAL_REPO, "universal-ir.pth"),
        clip_cfg="daclip_ViT-B-32",
        unet_cfg="universal-ir",
    ),
    ModelSpec(
        name="universal-ir-mix",
        description="official universal restoration retrained on mixed degradations (ViT-B-32)",
        daclip=WeightFile.hub(OFFICIAL_REPO, "daclip_ViT-B-32_mix.pt"),
        unet=WeightFile.hub(OFFICIAL_REPO, "universal-ir-mix.pth"),
        clip_cfg="daclip_ViT-B-32",
        unet_cfg="universal-ir",
    ),
    ModelSpec(
        name="wild-ir",
        description="official restoration of real-world ('in the wild') images (DA-CLIP ViT-L-14)",
        daclip=WeightFile.hub(OFFICIAL_REPO, "wild-daclip_ViT-L-14.pt"),
        unet=WeightFile.hub(OFFICIAL_REPO, "wild-ir.pth"),
        clip_cfg="daclip_ViT-L-14",
        unet_cfg="wild-ir",
    ),
)


@hookimpl
def register_models(register):
    for spec in OFFICIAL_MODELS:
        register(spec)
