"""The official DA-CLIP weights and the embedded ``tiny`` model, registered as named models.

The official files live in the Hugging Face repository ``weblzw/daclip-uir-ViT-B-32-irsde`` and are
downloaded only on request (``daclip download NAME``). Their sizes are not recorded here
(``size=None``: unknown until the server is asked). The architectures are named after the
released configs of :mod:`daclip_plugin.weights.checkpoints` (those of the official ``test.yml``
options), so a file of another architecture fails to load with a clear error.

``tiny`` ships inside the package (``daclip_plugin.models.tiny``, about 22 MB in float16):
a small DA-CLIP, an IR-SDE UNet and a direct (one-pass) restorer UNet trained by
:mod:`daclip_plugin.training` on synthetic degradations (see ``provenance.json`` there). It
works offline and prefers the fast ``daclip-direct`` restorer. Its files' SHA-256 are pinned:
a modified or damaged file is refused when loaded (and reported by ``daclip verify tiny``). Its DA-CLIP was trained on
unresized 112 px crops, so it sees images as unresized tiles (``clip_view="tiles"``).
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

TINY_PACKAGE = "daclip_plugin.models.tiny"
TINY_MODEL = ModelSpec(
    name="tiny",
    description=(
        "small embedded model, works offline: tiny DA-CLIP + one-pass direct restorer "
        "(also an IR-SDE UNet); trained on synthetic degradations, far weaker than the official models"
    ),
    daclip=WeightFile.in_package(
        TINY_PACKAGE, "daclip_tiny.pt", sha256="88b1bee21957831609c44517f0cb4a017408c4b843a64efaac87d5db483cfa74"
    ),
    unet=WeightFile.in_package(
        TINY_PACKAGE, "irsde_tiny.pth", sha256="3c7243932bfa47cf3f3ad97d9b09acec627c354c0d217c8a8aa7cab74fc3a30c"
    ),
    direct=WeightFile.in_package(
        TINY_PACKAGE, "direct_tiny.pth", sha256="f9589bc9cb9686d6b137229d493dddab983561efac1dcf26b1977c7db19b232b"
    ),
    clip_cfg="tiny",
    unet_cfg="tiny",
    direct_cfg="tiny",
    restorer="daclip-direct",
    clip_view="tiles",
)


@hookimpl
def register_models(register):
    for spec in OFFICIAL_MODELS:
        register(spec)
    register(TINY_MODEL)
