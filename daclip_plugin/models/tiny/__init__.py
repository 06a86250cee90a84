"""The embedded ``tiny`` model: weight files only, registered by ``daclip_plugin.hooks.models``.

``daclip_tiny.pt``
    a small DA-CLIP (ViT 112 px / 16 px patches, 4 layers, width 128; 64-d embeddings), official
    layout, float16;
``irsde_tiny.pth``
    the conditional UNet (nf 32, ch_mult 1-2-2-3) trained with the official IR-SDE objective;
``direct_tiny.pth``
    the same UNet architecture trained as a one-pass direct restorer
    (:mod:`daclip_plugin.engine.direct`), used by the ``daclip-direct`` restorer;
``provenance.json``
    how each file was trained (command, seed, steps, data, hardware, held-out evaluation,
    SHA-256 of each file), written by :mod:`daclip_plugin.training`.

Resolve them with ``daclip_plugin.weights.resolve("tiny")``; no download is ever needed.
"""

from ...nn import configs

#: The architecture of ``daclip_tiny.pt`` (``nn/model_configs/daclip/tiny.json``).
TINY_CLIP_CFG = configs.config("daclip", "tiny")
#: The architecture of both embedded UNets (``nn/model_configs/unet/tiny.json``).
TINY_UNET_CFG = configs.config("unet", "tiny")
