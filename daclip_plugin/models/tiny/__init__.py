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

#: The architecture of ``daclip_tiny.pt``: 64-wide heads in both towers (what the checkpoint
#: loader assumes without a sidecar), 112 px input, 49 patches of 16 px; 5.2 M parameters,
#: 10.5 MB in fp16.
TINY_CLIP_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 112, "layers": 4, "width": 128, "patch_size": 16, "head_width": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 3},
}
#: The architecture of both embedded UNets (``context_dim``: the DA-CLIP's ``embed_dim``);
#: 3.0 M parameters, 6.0 MB in fp16.
TINY_UNET_CFG = {
    "in_nc": 3,
    "out_nc": 3,
    "nf": 32,
    "ch_mult": [1, 2, 2, 3],
    "context_dim": 64,
    "use_degra_context": True,
    "use_image_context": True,
    "scale": 1,
}
