"""Named model weights: the registry, where files are looked for, downloads on request, checkpoint I/O.

Imports :mod:`daclip_plugin.nn` and the core (``errors``, ``plugins``, ``interfaces``) only.

Plugins register :class:`ModelSpec` objects through the ``register_models`` hook (the official
DA-CLIP releases come from the built-in plugin ``daclip_plugin.hooks.models``). Each model
names two files, the DA-CLIP checkpoint and the restoration UNet (IR-SDE), and optionally a
third, a direct (one-pass) restorer UNet, on the Hugging Face Hub or inside a Python package.

A Hub file is looked for, in this order:

1. the explicit path the caller gave (``daclip_path=`` / ``unet_path=``); if it does not
   exist that is an error, nothing else is tried;
2. the folder named by the environment variable ``DACLIP_WEIGHTS_DIR`` (file name inside it);
3. the Hugging Face cache (``HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``);
4. a download into that cache, **only on request**: ``download=True``, :func:`download` or
   ``daclip download NAME``. Nothing is ever downloaded silently.

A file shipped inside a Python package (:meth:`WeightFile.in_package`) needs no download: an
explicit path overrides it, otherwise the file inside the installed package is used.

Downloads go through :func:`huggingface_hub.hf_hub_download`: the data is written to a
temporary file next to the cache entry and moved into place only once complete, so a broken
connection never leaves a partial file where the complete one is expected; a connection that
drops mid-file is resumed (HTTP ``Range``) a few times within the same call.

The package: :mod:`.registry` (specifications), :mod:`.locate` (where files are looked
for), :mod:`.hub` (downloads), :mod:`.find` (a model's files, found or downloaded),
:mod:`.integrity` (hashes), :mod:`.checkpoints` (safe strict file I/O) and :mod:`.load`
(loading). Nothing here imports torch, Qt or napari at import time.
"""

from .find import resolve
from .hub import download, hub_endpoint
from .load import config_hint, load, load_file
from .locate import (
    BUILT_IN,
    NOT_DOWNLOADED,
    READY,
    availability,
    file_availability,
    hub_cache_dir,
    models_with,
    status,
    weights_dir,
)
from .registry import (
    DEFAULT_MODEL,
    ENV_WEIGHTS_DIR,
    OFFICIAL_REPO,
    OFFLINE_MODEL,
    ROLE_LABELS,
    ROLES,
    SOURCE_CACHE,
    SOURCE_DIR,
    SOURCE_DOWNLOADED,
    SOURCE_ENV,
    SOURCE_EXPLICIT,
    SOURCE_PACKAGE,
    FileStatus,
    LoadedModel,
    ModelSpec,
    ResolvedModel,
    WeightFile,
    format_size,
    get_model,
    list_models,
    model_plugin,
)

__all__ = [
    "BUILT_IN", "NOT_DOWNLOADED", "READY", "availability", "file_availability",
    "DEFAULT_MODEL", "ENV_WEIGHTS_DIR", "OFFICIAL_REPO", "OFFLINE_MODEL", "ROLES", "ROLE_LABELS", "SOURCE_CACHE",
    "SOURCE_DIR", "SOURCE_DOWNLOADED", "SOURCE_ENV", "SOURCE_EXPLICIT", "SOURCE_PACKAGE", "FileStatus", "LoadedModel",
    "ModelSpec", "ResolvedModel", "WeightFile", "config_hint", "download", "format_size", "get_model", "hub_cache_dir",
    "hub_endpoint", "list_models", "load", "load_file", "model_plugin", "models_with", "resolve", "status",
    "weights_dir",
]
