"""Architectures as data: the JSON files of ``nn/model_configs/``, read by kind and name.

``daclip/<name>.json`` holds an open_clip CLIP config (``embed_dim``, ``vision_cfg``,
``text_cfg``) for :class:`~daclip_plugin.nn.daclip.DaCLIP`; ``unet/<name>.json`` the keyword
arguments of :class:`~daclip_plugin.nn.unet.ConditionalUNet`.

- ``daclip/daclip_ViT-B-32``, ``daclip/daclip_ViT-L-14``: the released DA-CLIPs (the ``_mix``
  release shares ViT-B-32's architecture);
- ``unet/universal-ir``, ``unet/wild-ir``: the released restoration UNets (wild-ir works at
  half resolution, ``scale`` 0.5);
- ``daclip/tiny``: the embedded DA-CLIP (ViT 112 px, 16 px patches, 4 layers of width 128,
  64-d embeddings; 64-wide heads, what the checkpoint loader assumes; 5.2 M parameters);
- ``unet/tiny``: both embedded UNets (nf 32, ch_mult 1-2-2-3, 64-d contexts; 3.0 M parameters).

Every call returns a fresh copy, free to modify.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from ..errors import UnknownNameError

KINDS = ("daclip", "unet")


def names(kind: str) -> tuple[str, ...]:
    """The architecture names of ``kind`` (``"daclip"`` or ``"unet"``)."""
    return tuple(sorted(entry.name[: -len(".json")] for entry in _folder(kind).iterdir() if entry.name.endswith(".json")))


def config(kind: str, name: str) -> dict:
    """The architecture ``name`` of ``kind`` as a new dict."""
    return json.loads(_text(kind, name))


@lru_cache(maxsize=None)
def _text(kind: str, name: str) -> str:
    if name not in names(kind):
        raise UnknownNameError(f"no {kind} architecture named {name!r}; known: {', '.join(names(kind))}")
    return _folder(kind).joinpath(f"{name}.json").read_text()


def _folder(kind: str):
    if kind not in KINDS:
        raise UnknownNameError(f"unknown architecture kind {kind!r}; kinds: {', '.join(KINDS)}")
    return resources.files(__package__).joinpath("model_configs", kind)
