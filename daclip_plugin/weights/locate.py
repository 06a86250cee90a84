"""Where a model's files are: an explicit path, ``DACLIP_WEIGHTS_DIR``, the Hugging Face cache,
or (only on request) a download."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from ..errors import DaclipError, WeightsNotFoundError
from .registry import (
    ENV_WEIGHTS_DIR,
    OFFLINE_MODEL,
    ROLE_LABELS,
    ROLES,
    SOURCE_CACHE,
    SOURCE_ENV,
    SOURCE_EXPLICIT,
    SOURCE_PACKAGE,
    FileStatus,
    ModelSpec,
    PathLike,
    ResolvedModel,
    WeightFile,
    check_roles,
    format_size,
    get_model,
    list_models,
)


def hub_cache_dir(cache_dir: Optional[PathLike] = None) -> Path:
    """The Hugging Face cache folder used (``cache_dir`` or huggingface_hub's ``HF_HUB_CACHE``)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


def weights_dir() -> Optional[Path]:
    """The folder named by ``DACLIP_WEIGHTS_DIR``, or ``None`` when it is not set."""
    value = os.environ.get(ENV_WEIGHTS_DIR, "").strip()
    return Path(value).expanduser() if value else None


def _cached_path(file: WeightFile, cache_dir: Optional[PathLike]) -> Optional[Path]:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        file.repo_id, file.filename, cache_dir=str(hub_cache_dir(cache_dir)), revision=file.revision
    )
    if isinstance(found, str) and Path(found).is_file():
        return Path(found)
    return None


@dataclass
class _Lookup:
    path: Optional[Path] = None
    source: Optional[str] = None
    looked: list[str] = field(default_factory=list)
    explicit_missing: bool = False


def _find(file: WeightFile, explicit: Optional[PathLike], cache_dir: Optional[PathLike]) -> _Lookup:
    """Look for ``file`` without touching the network; record every place looked at."""
    result = _Lookup()
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_file():
            return _Lookup(path, SOURCE_EXPLICIT)
        result.looked.append(f"explicit path: {path} ({'a folder, not a file' if path.is_dir() else 'does not exist'})")
        result.explicit_missing = True
        return result
    result.looked.append("explicit path: none given")
    if file.embedded:
        path = file.packaged_path()
        if path.is_file():
            return _Lookup(path, SOURCE_PACKAGE)
        result.looked.append(f"inside package {file.package}: {path} (missing: reinstall the package)")
        return result
    folder = weights_dir()
    if folder is None:
        result.looked.append(f"{ENV_WEIGHTS_DIR}: not set")
    else:
        path = folder / file.filename
        if path.is_file():
            return _Lookup(path, SOURCE_ENV)
        result.looked.append(f"{ENV_WEIGHTS_DIR}: {path} (not there)")
    cached = _cached_path(file, cache_dir)
    if cached is not None:
        return _Lookup(cached, SOURCE_CACHE)
    result.looked.append(f"{SOURCE_CACHE}: {hub_cache_dir(cache_dir)} (not there)")
    return result


def _offline_models() -> list[str]:
    try:
        names = [spec.name for spec in list_models() if spec.embedded]
    except DaclipError:
        names = []
    return names or [OFFLINE_MODEL]


def offline_hint() -> str:
    names = ", ".join(repr(name) for name in _offline_models())
    return f"The embedded model {names} works offline, without any download."


def models_with(role: str) -> list[str]:
    """Names of the registered models that have a file of ``role`` (e.g. ``"direct"``)."""
    check_roles(role)
    return [spec.name for spec in list_models() if spec.file(role) is not None]


_PATH_OPTIONS = {"daclip": "daclip_path", "unet": "unet_path", "direct": "direct_path"}


def _no_such_file(spec: ModelSpec, role: str) -> WeightsNotFoundError:
    others = ", ".join(repr(name) for name in models_with(role)) or "none is registered"
    return WeightsNotFoundError(
        f"model {spec.name!r} has no {ROLE_LABELS[role]} file. Models that have one: {others}. "
        f"Choose one of them, or give the file with {_PATH_OPTIONS[role]}=."
    )


def _wanted_roles(spec: ModelSpec, roles: Optional[Sequence[str]], explicit: Mapping[str, Any]) -> list[str]:
    """The roles to resolve: ``roles`` (checked), or every file of ``spec`` (plus an explicit direct file)."""
    if roles is None:
        wanted = [role for role, _ in spec.files]
        if explicit.get("direct") is not None and "direct" not in wanted:
            wanted.append("direct")
        return wanted
    check_roles(*roles)
    for role in roles:
        if spec.file(role) is None and explicit.get(role) is None:
            raise _no_such_file(spec, role)
    return [role for role in ROLES if role in roles]


def _not_found(spec: ModelSpec, missing: Sequence[tuple[str, WeightFile, _Lookup]]) -> WeightsNotFoundError:
    what = " and ".join(f"{ROLE_LABELS[role]} file {file.filename!r}" for role, file, _ in missing)
    lines = [f"model {spec.name!r} is missing its {what}."]
    for _role, file, lookup in missing:
        lines.append(f"Looked for {file.describe()} in:")
        lines.extend(f"  - {place}" for place in lookup.looked)
    if any(lookup.explicit_missing for _, _, lookup in missing):
        lines.append("Check the explicit path, or leave it out to use the registered files.")
    elif all(file.repo_id is not None for _, file, _ in missing):
        sizes = [file.size for _, file, _ in missing]
        total = format_size(sum(sizes)) if None not in sizes else "size unknown"
        lines.append(
            f"Download it ({total}) with:  daclip download {spec.name}\n"
            f"(in Python: daclip_plugin.weights.download({spec.name!r}), or pass download=True), "
            f"or put the files into the folder named by {ENV_WEIGHTS_DIR}."
        )
    lines.append(offline_hint())
    return WeightsNotFoundError("\n".join(lines))


def status(name: Union[str, ModelSpec], *, cache_dir: Optional[PathLike] = None) -> list[FileStatus]:
    """For each file of model ``name``: whether it is on this computer, where, and its size."""
    spec = get_model(name)
    result = []
    for role, file in spec.files:
        lookup = _find(file, None, cache_dir)
        size = lookup.path.stat().st_size if lookup.path is not None else file.size
        result.append(FileStatus(role, file, lookup.path, lookup.source, size))
    return result


#: The words for where a model's files are, in ``daclip models`` and in the widget's model menu.
BUILT_IN, READY, NOT_DOWNLOADED = "built in", "ready", "not downloaded"


def file_availability(item: FileStatus) -> str:
    """:data:`BUILT_IN` (shipped in a package), :data:`READY` (found on this computer) or :data:`NOT_DOWNLOADED`."""
    if not item.found:
        return NOT_DOWNLOADED
    return BUILT_IN if item.source == SOURCE_PACKAGE else READY


def availability(name: Union[str, ModelSpec], *, cache_dir: Optional[PathLike] = None) -> str:
    """Whether model ``name`` can run here: ``"built in"``, ``"ready"`` or ``"not downloaded, 1.2 GB"``."""
    files = status(name, cache_dir=cache_dir)
    missing = [item for item in files if not item.found]
    if not missing:
        return BUILT_IN if all(file_availability(item) == BUILT_IN for item in files) else READY
    sizes = [item.size for item in missing]
    return NOT_DOWNLOADED + (f", {format_size(sum(sizes))}" if None not in sizes else "")


def _resolved(spec: ModelSpec, paths: Mapping[str, Path], sources: Mapping[str, str]) -> ResolvedModel:
    return ResolvedModel(spec, paths.get("daclip"), paths.get("unet"), dict(sources), paths.get("direct"))
