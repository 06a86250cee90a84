"""Downloads from the Hugging Face Hub (or a mirror named by ``HF_ENDPOINT``), on request only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

from .. import plugins
from ..errors import Cancelled, DaclipError, DownloadError
from .locate import _find, _not_found, offline_hint, _resolved, hub_cache_dir
from .registry import (
    ROLE_LABELS, SOURCE_DIR, SOURCE_DOWNLOADED, SOURCE_PACKAGE, ModelSpec, PathLike, ProgressCallback, ResolvedModel,
    StopCallback, WeightFile, get_model,
)

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
        f"from {url}: {reason}.\n{retry} {offline_hint()}"
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
