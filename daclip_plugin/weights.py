"""Named model weights: the registry, where files are looked for, and downloads on request.

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

Nothing here imports torch, Qt or napari at import time.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from . import plugins
from .errors import Cancelled, CheckpointError, DaclipError, DownloadError, UnknownNameError, WeightsNotFoundError

ENV_WEIGHTS_DIR = "DACLIP_WEIGHTS_DIR"
OFFICIAL_REPO = "weblzw/daclip-uir-ViT-B-32-irsde"
DEFAULT_MODEL = "universal-ir"
OFFLINE_MODEL = "tiny"
"""The embedded model shipped inside the package: it works without any download."""

ROLES = ("daclip", "unet", "direct")
"""The files a model may have: DA-CLIP, the IR-SDE UNet and (optional) the direct restorer UNet."""
ROLE_LABELS = {"daclip": "DA-CLIP", "unet": "UNet", "direct": "direct restorer"}

SOURCE_EXPLICIT = "explicit path"
SOURCE_ENV = ENV_WEIGHTS_DIR
SOURCE_CACHE = "Hugging Face cache"
SOURCE_PACKAGE = "package"
SOURCE_DIR = "folder"
SOURCE_DOWNLOADED = "downloaded"

ProgressCallback = Callable[[int, Optional[int]], None]
"""``progress(bytes_done, bytes_total)``; ``bytes_total`` is ``None`` when the server gives no size."""
StopCallback = Callable[[], bool]
PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------- specifications


@dataclass(frozen=True)
class WeightFile:
    """One weight file: on the Hugging Face Hub (``repo_id``) or inside a Python package (``package``).

    ``size`` is the size in bytes when known (``None``: unknown).
    """

    filename: str
    repo_id: Optional[str] = None
    revision: Optional[str] = None
    size: Optional[int] = None
    package: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.filename or "\\" in self.filename or self.filename.startswith("/"):
            raise ValueError(f"a weight file needs a relative file name, got {self.filename!r}")
        if (self.repo_id is None) == (self.package is None):
            raise ValueError(f"weight file {self.filename!r}: give exactly one of repo_id or package")

    @classmethod
    def hub(cls, repo_id: str, filename: str, *, revision: Optional[str] = None, size: Optional[int] = None) -> "WeightFile":
        """A file of a Hugging Face Hub model repository (downloaded on request)."""
        return cls(filename=filename, repo_id=repo_id, revision=revision, size=size)

    @classmethod
    def in_package(cls, package: str, filename: str, *, size: Optional[int] = None) -> "WeightFile":
        """A file shipped inside the Python package ``package`` (no download needed)."""
        return cls(filename=filename, package=package, size=size)

    @property
    def embedded(self) -> bool:
        """Whether the file ships inside a Python package."""
        return self.package is not None

    def packaged_path(self) -> Path:
        """The path of an embedded file inside its installed package."""
        if self.package is None:
            raise ValueError(f"{self.filename!r} is not shipped inside a package")
        import importlib.resources

        try:
            root = importlib.resources.files(self.package)
        except ModuleNotFoundError as exc:
            raise WeightsNotFoundError(
                f"the package {self.package!r} that should hold {self.filename!r} is not installed"
            ) from exc
        return Path(os.fspath(root.joinpath(self.filename)))

    def describe(self) -> str:
        """Where the file comes from, for messages."""
        if self.package is not None:
            return f"{self.filename} (inside package {self.package})"
        revision = f"@{self.revision}" if self.revision else ""
        return f"{self.filename} (Hugging Face repository {self.repo_id}{revision})"


@dataclass(frozen=True)
class ModelSpec:
    """A named set of DA-CLIP and UNet weights, with architecture hints for loading them.

    ``clip_cfg`` is the open_clip config dict of the DA-CLIP model, or the name of a released
    one in :data:`daclip_plugin.checkpoints.RELEASED_DACLIP_CONFIGS` (``"daclip_ViT-B-32"``);
    ``unet_cfg`` the ``ConditionalUNet`` keyword arguments, or a name in
    :data:`~daclip_plugin.checkpoints.RELEASED_UNET_CONFIGS` (``"universal-ir"``). ``None``
    lets :mod:`daclip_plugin.checkpoints` read the architecture from the file. ``sde`` holds
    the IR-SDE options the UNet was trained with (``None``: the official ones).

    ``direct`` is an optional third file: a one-pass *direct restorer* UNet (same architecture
    family, see :mod:`daclip_plugin.direct`), used by the ``daclip-direct`` restorer;
    ``direct_cfg`` is its architecture hint like ``unet_cfg``. ``restorer`` names the restorer
    the model prefers (``None``: the default ``daclip`` one), e.g. in ``daclip restore``.
    ``clip_view`` is how its DA-CLIP sees an image, as it was trained to: ``"resize"`` (the
    official preprocessing) or ``"tiles"`` (see :func:`daclip_plugin.daclip_model.clip_views`).
    """

    name: str
    description: str
    daclip: WeightFile
    unet: WeightFile
    clip_cfg: Union[str, Mapping[str, Any], None] = field(default=None, hash=False)
    unet_cfg: Union[str, Mapping[str, Any], None] = field(default=None, hash=False)
    sde: Optional[Mapping[str, Any]] = field(default=None, hash=False)
    direct: Optional[WeightFile] = None
    direct_cfg: Union[str, Mapping[str, Any], None] = field(default=None, hash=False)
    restorer: Optional[str] = None
    clip_view: str = "resize"

    @property
    def files(self) -> tuple[tuple[str, WeightFile], ...]:
        """``(("daclip", file), ("unet", file))``, plus ``("direct", file)`` when the model has one."""
        files = (("daclip", self.daclip), ("unet", self.unet))
        return files + ((("direct", self.direct),) if self.direct is not None else ())

    def file(self, role: str) -> Optional[WeightFile]:
        """The file of ``role`` (one of :data:`ROLES`); ``None`` when the model has none."""
        if role not in ROLES:
            raise ValueError(f"unknown weight file role {role!r}; roles: {', '.join(ROLES)}")
        return dict(self.files).get(role)

    @property
    def embedded(self) -> bool:
        """Whether every file ships inside a package: the model works offline."""
        return all(file.embedded for _, file in self.files)


@dataclass(frozen=True)
class ResolvedModel:
    """Local paths of a model's files; ``sources`` says where each was found.

    A role that was not asked for (``resolve(..., roles=...)``) or that the model does not
    have is ``None``.
    """

    spec: ModelSpec
    daclip: Optional[Path]
    unet: Optional[Path]
    sources: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    direct: Optional[Path] = None

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles resolved here, in :data:`ROLES` order."""
        return tuple(role for role in ROLES if getattr(self, role) is not None)

    def path(self, role: str) -> Path:
        if role not in ROLES:
            raise ValueError(f"unknown weight file role {role!r}; roles: {', '.join(ROLES)}")
        path = getattr(self, role)
        if path is None:
            raise DaclipError(f"the {ROLE_LABELS[role]} file of model {self.spec.name!r} was not resolved")
        return path


@dataclass(frozen=True)
class FileStatus:
    """Whether one file of a model is available here, and where."""

    role: str
    file: WeightFile
    path: Optional[Path]
    source: Optional[str]
    size: Optional[int]
    """Bytes on disk when found, else the size the spec gives (``None``: unknown)."""

    @property
    def found(self) -> bool:
        return self.path is not None

    @property
    def cached(self) -> bool:
        """Alias of :attr:`found`: the file is on this computer."""
        return self.found

    @property
    def label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)


@dataclass
class LoadedModel:
    """The loaded modules of a model (``None`` for a role that was not resolved)."""

    daclip: Any
    unet: Any
    resolved: ResolvedModel
    direct: Any = None

    @property
    def spec(self) -> ModelSpec:
        return self.resolved.spec


# --------------------------------------------------------------------------- the registry


def _registry() -> dict[str, plugins.Registered]:
    registry = plugins.models()
    for name, entry in registry.items():
        if not isinstance(entry.component, ModelSpec):
            raise DaclipError(
                f"plugin {entry.plugin!r} registered model {name!r} as a "
                f"{type(entry.component).__name__}, not a daclip_plugin.weights.ModelSpec"
            )
    return registry


def list_models() -> list[ModelSpec]:
    """Every registered model specification, sorted by name."""
    registry = _registry()
    return [registry[name].component for name in sorted(registry)]


def model_plugin(name: str) -> str:
    """The name of the plugin that registered model ``name``."""
    get_model(name)
    return _registry()[name].plugin


def get_model(name: Union[str, ModelSpec]) -> ModelSpec:
    """The model registered as ``name`` (a :class:`ModelSpec` is returned as it is)."""
    if isinstance(name, ModelSpec):
        return name
    registry = _registry()
    if name not in registry:
        available = ", ".join(sorted(registry)) or "none (no plugin registered one)"
        raise UnknownNameError(f"unknown model {name!r}; available: {available}")
    return registry[name].component


# --------------------------------------------------------------------------- finding files


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
        result.looked.append(f"explicit path: {path} (does not exist)")
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


def _offline_hint() -> str:
    names = ", ".join(repr(name) for name in _offline_models())
    return f"The embedded model {names} works offline, without any download."


def models_with(role: str) -> list[str]:
    """Names of the registered models that have a file of ``role`` (e.g. ``"direct"``)."""
    if role not in ROLES:
        raise ValueError(f"unknown weight file role {role!r}; roles: {', '.join(ROLES)}")
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
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise ValueError(f"unknown weight file role(s) {', '.join(map(repr, unknown))}; roles: {', '.join(ROLES)}")
    for role in roles:
        if spec.file(role) is None and explicit.get(role) is None:
            raise _no_such_file(spec, role)
    return [role for role in ROLES if role in roles]


def format_size(size: Optional[int]) -> str:
    """``1234567`` -> ``"1.2 MB"``; ``None`` -> ``"size unknown"``."""
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _not_found(spec: ModelSpec, missing: Sequence[tuple[str, WeightFile, _Lookup]]) -> WeightsNotFoundError:
    what = " and ".join(f"{ROLE_LABELS[role]} file {file.filename!r}" for role, file, _ in missing)
    lines = [f"model {spec.name!r} is missing its {what}."]
    for role, file, lookup in missing:
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
    lines.append(_offline_hint())
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
                raise WeightsNotFoundError(
                    f"the {ROLE_LABELS[role]} file given with {_PATH_OPTIONS[role]}= does not exist: {path}"
                )
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


def _resolved(spec: ModelSpec, paths: Mapping[str, Path], sources: Mapping[str, str]) -> ResolvedModel:
    return ResolvedModel(spec, paths.get("daclip"), paths.get("unet"), dict(sources), paths.get("direct"))


def download(
    name: Union[str, ModelSpec],
    *,
    dir: Optional[PathLike] = None,
    progress: Optional[ProgressCallback] = None,
    should_stop: Optional[StopCallback] = None,
    cache_dir: Optional[PathLike] = None,
    endpoint: Optional[str] = None,
) -> ResolvedModel:
    """Download model ``name``'s files that are not here yet; return where they all are.

    Without ``dir`` the files go to the Hugging Face cache (files already found in
    ``DACLIP_WEIGHTS_DIR`` or the cache are not downloaded again). With ``dir`` they go into
    that folder, under their own names (ready for ``DACLIP_WEIGHTS_DIR=dir``).
    ``progress(bytes_done, bytes_total)`` is called as data arrives (over all files);
    ``should_stop()`` returning true cancels with :class:`~daclip_plugin.errors.Cancelled`.
    """
    spec = get_model(name)
    paths: dict[str, Path] = {}
    sources: dict[str, str] = {}
    todo: list[tuple[str, WeightFile]] = []
    folder = Path(dir).expanduser() if dir is not None else None
    for role, file in spec.files:
        if file.embedded:
            lookup = _find(file, None, cache_dir)
            if lookup.path is None:
                raise _not_found(spec, [(role, file, lookup)])
            paths[role], sources[role] = lookup.path, SOURCE_PACKAGE
        elif folder is not None:
            if (folder / file.filename).is_file():
                paths[role], sources[role] = folder / file.filename, SOURCE_DIR
            else:
                todo.append((role, file))
        else:
            lookup = _find(file, None, cache_dir)
            if lookup.path is not None:
                paths[role], sources[role] = lookup.path, lookup.source or ""
            else:
                todo.append((role, file))
    if todo:
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        fetched = _download_files(
            spec,
            todo,
            local_dir=folder,
            cache_dir=cache_dir,
            endpoint=endpoint,
            progress=progress,
            should_stop=should_stop,
        )
        for role, path in fetched.items():
            paths[role], sources[role] = path, SOURCE_DOWNLOADED
    return _resolved(spec, paths, sources)


# --------------------------------------------------------------------------- downloading


def _callback_tqdm(
    progress: Optional[ProgressCallback], offset: int, total: Optional[int], should_stop: Optional[StopCallback]
):
    """A silent tqdm class that reports ``(offset + bytes of this file, total)`` to ``progress``."""
    from tqdm.std import tqdm

    class CallbackTqdm(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self.done = int(kwargs.get("initial") or 0)
            self._report()

        def update(self, n: float = 1) -> None:
            self.done += int(n)
            self._report()

        def _report(self) -> None:
            if should_stop is not None and should_stop():
                raise Cancelled("download cancelled")
            if progress is not None:
                progress(offset + self.done, total if total is not None else self.total)

    return CallbackTqdm


def hub_endpoint(endpoint: Optional[str] = None) -> str:
    """The Hub address used: ``endpoint`` or huggingface_hub's (``HF_ENDPOINT``, by default huggingface.co)."""
    if endpoint:
        return endpoint.rstrip("/")
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def _file_url(file: WeightFile, endpoint: Optional[str]) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(file.repo_id, file.filename, revision=file.revision, endpoint=hub_endpoint(endpoint))


def _download_error(spec: ModelSpec, role: str, file: WeightFile, endpoint: Optional[str], exc: BaseException) -> DownloadError:
    from huggingface_hub import constants
    from huggingface_hub import errors as hf

    url = _file_url(file, endpoint)
    host = hub_endpoint(endpoint)
    kinds = {cls.__name__ for cls in type(exc).__mro__}  # httpx errors, without importing httpx
    retry = f"Run `daclip download {spec.name}` again to retry."
    if isinstance(exc, hf.OfflineModeIsEnabled) or constants.is_offline_mode():
        reason = "HF_HUB_OFFLINE is set, so nothing may be downloaded; unset it and try again"
    elif isinstance(exc, hf.RemoteEntryNotFoundError):
        reason = f"the file does not exist on the Hub (404 Not Found at {url})"
        retry = f"The registration of {spec.name!r}{_plugin_of(spec)} names a file that the repository does not have."
    elif isinstance(exc, hf.RevisionNotFoundError):
        reason = f"revision {file.revision or 'main'!r} does not exist in repository {file.repo_id}"
        retry = f"The registration of {spec.name!r}{_plugin_of(spec)} names a revision that the repository does not have."
    elif isinstance(exc, hf.RepositoryNotFoundError):
        reason = f"repository {file.repo_id} is not found or not accessible at {host} (a gated or private repository needs `hf auth login`)"
    elif isinstance(exc, hf.LocalEntryNotFoundError) or {"ConnectError", "ConnectTimeout", "ProxyError"} & kinds:
        reason = f"cannot reach {host}: the network is down or blocked (a proxy or firewall?)"
    elif "TimeoutException" in kinds:
        reason = f"{host} stopped answering ({type(exc).__name__}); no partial file was kept"
    elif isinstance(exc, hf.HfHubHTTPError):
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = f"the server answered with an error ({first_line})"
    elif isinstance(exc, (ConnectionError, TimeoutError)) or "httpx" in type(exc).__module__:
        reason = f"the connection to {host} failed or broke off ({type(exc).__name__}: {exc}); no partial file was kept"
    elif isinstance(exc, OSError):
        reason = f"{type(exc).__name__}: {exc}"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return DownloadError(
        f"could not download the {ROLE_LABELS[role]} file {file.filename!r} of model {spec.name!r} "
        f"from {url}: {reason}.\n{retry} {_offline_hint()}"
    )


def _plugin_of(spec: ModelSpec) -> str:
    """`` (by plugin 'x')`` when ``spec`` is the registered one, else ``""``."""
    entry = plugins.models().get(spec.name)
    return f" (by plugin {entry.plugin!r})" if entry is not None and entry.component is spec else ""


def _remote_size(spec: ModelSpec, role: str, file: WeightFile, endpoint: Optional[str]) -> Optional[int]:
    from huggingface_hub import get_hf_file_metadata

    try:
        return get_hf_file_metadata(_file_url(file, endpoint), endpoint=hub_endpoint(endpoint)).size
    except DaclipError:
        raise
    except Exception as exc:
        raise _download_error(spec, role, file, endpoint, exc) from exc


def _download_files(
    spec: ModelSpec,
    files: Sequence[tuple[str, WeightFile]],
    *,
    local_dir: Optional[Path],
    cache_dir: Optional[PathLike],
    endpoint: Optional[str],
    progress: Optional[ProgressCallback],
    should_stop: Optional[StopCallback],
) -> dict[str, Path]:
    from huggingface_hub import hf_hub_download

    use_callback = progress is not None or should_stop is not None
    # Ask the server about every file first, without retries: an unreachable server or a
    # missing file is reported at once (hf_hub_download alone retries for about 20 s), and
    # the sizes give one progress total over all files.
    sizes = [_remote_size(spec, role, file, endpoint) for role, file in files]
    total = sum(sizes) if None not in sizes else None  # type: ignore[arg-type]
    done = 0
    fetched: dict[str, Path] = {}
    for (role, file), size in zip(files, sizes):
        tqdm_class = _callback_tqdm(progress, done, total, should_stop) if use_callback else None
        try:
            path = hf_hub_download(
                file.repo_id,
                file.filename,
                revision=file.revision,
                cache_dir=str(hub_cache_dir(cache_dir)),
                local_dir=str(local_dir) if local_dir is not None else None,
                endpoint=hub_endpoint(endpoint),
                tqdm_class=tqdm_class,
            )
        except DaclipError:
            raise
        except Exception as exc:
            raise _download_error(spec, role, file, endpoint, exc) from exc
        fetched[role] = Path(path)
        done += fetched[role].stat().st_size
    if progress is not None:
        progress(done, total if total is not None else done)
    return fetched


# --------------------------------------------------------------------------- loading


def _config(spec: ModelSpec, value: Any, released: Mapping[str, dict], what: str, source: Optional[str]) -> Optional[dict]:
    """A config hint: ``None``, a dict, or the name of a released config in :mod:`checkpoints`.

    A file the caller named explicitly gets no hint: its architecture comes from the file.
    """
    if source == SOURCE_EXPLICIT or value is None:
        return None
    if isinstance(value, Mapping):
        return copy.deepcopy(dict(value))
    if value not in released:
        raise DaclipError(
            f"model {spec.name!r}: unknown {what} {value!r}; known: {', '.join(sorted(released))}"
        )
    return copy.deepcopy(released[value])


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
    from . import checkpoints

    spec, source = resolved.spec, resolved.sources.get(role)
    if role == "daclip":
        return _config(spec, spec.clip_cfg, checkpoints.RELEASED_DACLIP_CONFIGS, "clip_cfg", source)
    value, what = (spec.unet_cfg, "unet_cfg") if role == "unet" else (spec.direct_cfg, "direct_cfg")
    return _config(spec, value, checkpoints.RELEASED_UNET_CONFIGS, what, source)


def load_file(resolved: ResolvedModel, role: str, device: Any = "cpu") -> Any:
    """Load the ``role`` file of a resolved model on ``device`` (a DA-CLIP or a conditional UNet).

    Corrupt or mismatched files raise :class:`~daclip_plugin.errors.CheckpointError` naming
    the file.
    """
    from . import checkpoints

    path, hint, source = resolved.path(role), config_hint(resolved, role), resolved.sources.get(role, "")
    if role == "daclip":
        return _load_file(checkpoints.load_daclip, path, resolved.spec, role, source, clip_cfg=hint, device=device)
    return _load_file(checkpoints.load_unet, path, resolved.spec, role, source, unet_cfg=hint, device=device)


def load(
    model: Union[str, ModelSpec, ResolvedModel] = DEFAULT_MODEL,
    device: Any = "cpu",
    *,
    daclip_path: Optional[PathLike] = None,
    unet_path: Optional[PathLike] = None,
    direct_path: Optional[PathLike] = None,
    roles: Optional[Sequence[str]] = None,
    download: bool = False,
    progress: Optional[ProgressCallback] = None,
    cache_dir: Optional[PathLike] = None,
    endpoint: Optional[str] = None,
) -> LoadedModel:
    """Resolve model ``model`` (see :func:`resolve`) and load its files on ``device``.

    Every resolved file is loaded: the DA-CLIP, the UNet and, when the model has one (or
    ``direct_path`` is given), the direct restorer; ``roles`` limits them. Corrupt or
    mismatched files raise :class:`~daclip_plugin.errors.CheckpointError` naming the file.
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
    modules = {role: load_file(resolved, role, device) for role in resolved.roles}
    return LoadedModel(modules.get("daclip"), modules.get("unet"), resolved, modules.get("direct"))
