"""Finding a model's files for use: located on this computer, or downloaded on request.

Sits above :mod:`.locate` (where files are looked for) and :mod:`.hub` (downloads), which
use neither this module nor each other's callers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from ..errors import WeightsNotFoundError
from .hub import _download_files
from .locate import _PATH_OPTIONS, _find, _Lookup, _not_found, _resolved, _wanted_roles
from .registry import (
    DEFAULT_MODEL,
    ROLE_LABELS,
    SOURCE_DOWNLOADED,
    SOURCE_EXPLICIT,
    ModelSpec,
    PathLike,
    ProgressCallback,
    ResolvedModel,
    StopCallback,
    WeightFile,
    get_model,
)


def resolve(
    name: Union[str, ModelSpec] = DEFAULT_MODEL,
    *,
    daclip_path: Optional[PathLike] = None,
    unet_path: Optional[PathLike] = None,
    direct_path: Optional[PathLike] = None,
    roles: Optional[Sequence[str]] = None,
    download: bool = False,
    progress: Optional[ProgressCallback] = None,
    should_stop: Optional[StopCallback] = None,
    cache_dir: Optional[PathLike] = None,
    endpoint: Optional[str] = None,
) -> ResolvedModel:
    """Local paths of model ``name``'s files, downloading missing ones only if ``download``.

    ``roles`` limits the files to those roles (e.g. ``("daclip", "direct")``; default: every
    file of the model, plus ``direct_path`` when given). Asking for a role the model has no
    file for, without an explicit path, is a
    :class:`~daclip_plugin.errors.WeightsNotFoundError` that names the models that have one.

    Raises :class:`~daclip_plugin.errors.WeightsNotFoundError` naming every place looked at
    and the command that downloads the model, or
    :class:`~daclip_plugin.errors.DownloadError` when a requested download fails.
    """
    spec = get_model(name)
    explicit = {"daclip": daclip_path, "unet": unet_path, "direct": direct_path}
    paths: dict[str, Path] = {}
    sources: dict[str, str] = {}
    missing: list[tuple[str, WeightFile, _Lookup]] = []
    for role in _wanted_roles(spec, roles, explicit):
        file = spec.file(role)
        if file is None:  # no registered file: only the explicit path (given, see _wanted_roles)
            path = Path(explicit[role]).expanduser()
            if not path.is_file():
                what = "is a folder, not a file" if path.is_dir() else "does not exist"
                raise WeightsNotFoundError(f"the {ROLE_LABELS[role]} file given with {_PATH_OPTIONS[role]}= {what}: {path}")
            paths[role], sources[role] = path, SOURCE_EXPLICIT
            continue
        lookup = _find(file, explicit[role], cache_dir)
        if lookup.path is not None:
            paths[role], sources[role] = lookup.path, lookup.source or ""
        else:
            missing.append((role, file, lookup))
    downloadable = all(file.repo_id is not None and not lookup.explicit_missing for _, file, lookup in missing)
    if missing and not (download and downloadable):
        raise _not_found(spec, missing)
    if missing:
        fetched = _download_files(
            spec,
            [(role, file) for role, file, _ in missing],
            local_dir=None,
            cache_dir=cache_dir,
            endpoint=endpoint,
            progress=progress,
            should_stop=should_stop,
        )
        for role, path in fetched.items():
            paths[role], sources[role] = path, SOURCE_DOWNLOADED
    return _resolved(spec, paths, sources)
