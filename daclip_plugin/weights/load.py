"""Loading a resolved model's files (strictly, through :mod:`daclip_plugin.weights.checkpoints`)."""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from ..errors import CheckpointError, DaclipError
from .find import resolve
from .integrity import cached_sha256, repair_command
from .registry import (
    DEFAULT_MODEL,
    ROLE_LABELS,
    SOURCE_CACHE,
    SOURCE_DIR,
    SOURCE_DOWNLOADED,
    SOURCE_ENV,
    SOURCE_EXPLICIT,
    LoadedModel,
    ModelSpec,
    PathLike,
    ProgressCallback,
    ResolvedModel,
)


def _config(spec: ModelSpec, value: Any, kind: str, what: str, source: Optional[str]) -> Optional[dict]:
    """A config hint: ``None``, a dict, or the name of an architecture in :mod:`daclip_plugin.nn.configs`.

    A file the caller named explicitly gets no hint: its architecture comes from the file.
    """
    from ..nn import configs

    if source == SOURCE_EXPLICIT or value is None:
        return None
    if isinstance(value, Mapping):
        return copy.deepcopy(dict(value))
    if value not in configs.names(kind):
        raise DaclipError(f"model {spec.name!r}: unknown {what} {value!r}; known: {', '.join(configs.names(kind))}")
    return configs.config(kind, value)


def _load_file(loader: Callable[..., Any], path: Path, spec: ModelSpec, role: str, source: str, **kwargs: Any) -> Any:
    hint = ""
    if source in (SOURCE_CACHE, SOURCE_ENV, SOURCE_DOWNLOADED, SOURCE_DIR):
        hint = f" Delete it and run `daclip download {spec.name}` to fetch it again."
    try:
        return loader(path, device=kwargs.pop("device"), **kwargs)
    except CheckpointError as exc:
        if str(path) in str(exc) and not hint:
            raise
        message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        raise CheckpointError(f"{message.rstrip().rstrip('.')}.{hint}") from exc
    except DaclipError:
        raise
    except Exception as exc:  # anything else reading the file: name the file
        raise CheckpointError(
            f"cannot load the {ROLE_LABELS[role]} file {path} of model {spec.name!r}: "
            f"{type(exc).__name__}: {exc}.{hint}"
        ) from exc


def config_hint(resolved: ResolvedModel, role: str) -> Optional[dict]:
    """The architecture the model's registration gives for its ``role`` file (``None``: read it from the file).

    A file the caller named explicitly gets no hint.
    """
    spec, source = resolved.spec, resolved.sources.get(role)
    if role == "daclip":
        return _config(spec, spec.clip_cfg, "daclip", "clip_cfg", source)
    value, what = (spec.unet_cfg, "unet_cfg") if role == "unet" else (spec.direct_cfg, "direct_cfg")
    return _config(spec, value, "unet", what, source)


def _check_pinned(resolved: ResolvedModel, role: str, path: Path, source: str) -> None:
    """A registered file whose SHA-256 is pinned must have it (an explicit path is the caller's)."""
    file = resolved.spec.file(role)
    if file is None or file.sha256 is None or source == SOURCE_EXPLICIT:
        return
    if cached_sha256(path) != file.sha256:
        raise CheckpointError(
            f"the {ROLE_LABELS[role]} file {path} of model {resolved.spec.name!r} is corrupt or was modified: "
            f"its SHA-256 is not the registered {file.sha256}; repair it with `{repair_command(resolved.spec, file, source)}`"
        )


def load_file(resolved: ResolvedModel, role: str, device: Any = "cpu") -> Any:
    """Load the ``role`` file of a resolved model on ``device`` (a DA-CLIP or a conditional UNet), uncached.

    Corrupt or mismatched files raise :class:`~daclip_plugin.errors.CheckpointError` naming
    the file.
    """
    from . import checkpoints

    path, hint, source = resolved.path(role), config_hint(resolved, role), resolved.sources.get(role, "")
    _check_pinned(resolved, role, path, source)
    if role == "daclip":
        return _load_file(checkpoints.load_daclip, path, resolved.spec, role, source, clip_cfg=hint, device=device)
    return _load_file(checkpoints.load_unet, path, resolved.spec, role, source, unet_cfg=hint, device=device)


#: Modules loaded for inference by (role kind, file, device, architecture hint); the newest
#: :data:`KEEP_LOADED` are kept.
_loaded: "OrderedDict[tuple, Any]" = OrderedDict()
KEEP_LOADED = 6


def _file_key(path: Path) -> tuple[str, int, int]:
    if not path.is_file():
        raise DaclipError(f"checkpoint file not found: {path}")
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


def _load_shared(resolved: ResolvedModel, role: str, device: str) -> Any:
    """The inference module of one file, loaded once while the file is unchanged.

    A DA-CLIP keeps the features of the degradation prompts, not its text tower: other
    prompts are encoded by a complete copy loaded for the moment.
    """
    from ..nn.daclip import DEGRADATIONS

    kind = "daclip" if role == "daclip" else "unet"
    hint = config_hint(resolved, role)
    key = (kind, _file_key(resolved.path(role)), device, json.dumps(hint, sort_keys=True, default=str))
    if key in _loaded:
        _loaded.move_to_end(key)
        return _loaded[key]
    module = load_file(resolved, role, device)
    if kind == "daclip" and module.can_encode_prompts:
        module.release_text_tower(keep=[DEGRADATIONS], source=lambda: load_file(resolved, role, device))
    _loaded[key] = module
    while len(_loaded) > KEEP_LOADED:
        _loaded.popitem(last=False)
    return module


def load(
    model: Union[str, ModelSpec, ResolvedModel] = DEFAULT_MODEL,
    device: Any = "cpu",
    *,
    roles: Optional[Sequence[str]] = None,
    daclip_path: Optional[PathLike] = None,
    unet_path: Optional[PathLike] = None,
    direct_path: Optional[PathLike] = None,
    download: bool = False,
    progress: Optional[ProgressCallback] = None,
    cache_dir: Optional[PathLike] = None,
    endpoint: Optional[str] = None,
    shared: bool = True,
) -> LoadedModel:
    """Resolve model ``model`` (see :func:`resolve`) and load its files on ``device``.

    Every resolved file is loaded: the DA-CLIP, the UNet and, when the model has one (or
    ``direct_path`` is given), the direct restorer; ``roles`` limits them (the classifier
    asks for ``("daclip",)`` only). Corrupt or mismatched files raise
    :class:`~daclip_plugin.errors.CheckpointError` naming the file.

    ``shared=True`` (the default) gives the modules every restorer and classifier uses:
    loaded once per file (path, size, modification time), device and architecture, the
    newest :data:`KEEP_LOADED` kept, and a DA-CLIP without its text tower (see
    :meth:`~daclip_plugin.nn.daclip.DaCLIP.release_text_tower`). ``shared=False`` loads
    complete new modules, free to modify (training, weight interpolation).
    """
    if isinstance(model, ResolvedModel):
        resolved = model
    else:
        resolved = resolve(
            model,
            daclip_path=daclip_path,
            unet_path=unet_path,
            direct_path=direct_path,
            roles=roles,
            download=download,
            progress=progress,
            cache_dir=cache_dir,
            endpoint=endpoint,
        )
    device = str(device)
    get = _load_shared if shared else load_file
    modules = {role: get(resolved, role, device) for role in resolved.roles}
    _check_pair(resolved, modules)
    return LoadedModel(modules.get("daclip"), modules.get("unet"), resolved, modules.get("direct"))


def _check_pair(resolved: ResolvedModel, modules: Mapping[str, Any]) -> None:
    """Refuse a UNet whose context does not take its DA-CLIP's features (files of two different models)."""
    daclip = modules.get("daclip")
    for role in ("unet", "direct"):
        unet = modules.get(role)
        width = getattr(unet, "context_dim", 0)
        if daclip is not None and width and width != daclip.embed_dim:
            raise CheckpointError(
                f"the {ROLE_LABELS[role]} file {resolved.path(role)} takes DA-CLIP features of width {width}, but the "
                f"DA-CLIP file {resolved.path('daclip')} gives {daclip.embed_dim}: they belong to different models"
            )
