"""Downloads from the Hugging Face Hub (or a mirror named by ``HF_ENDPOINT``), on request only.

Nothing the server says is trusted before it is checked. A file's metadata must be that of
a Hub file (its ETag a SHA-256 or git SHA-1 digest, its commit a 40-digit hash) before
anything is written; every path written must lie inside the cache (or the chosen folder);
the data is written beside its destination, checked against the ETag's hash (and the
registration's pinned SHA-256, if any), and only then moved into place. A connection that
breaks off is resumed with HTTP ``Range`` a few times within the call; a download that
fails leaves no partial file. Files land in the Hugging Face cache's own layout
(``blobs/``, ``snapshots/``, ``refs/``), where huggingface_hub finds them too.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from .. import plugins
from ..errors import Cancelled, DaclipError, DownloadError, OutputError
from ..persist import nearest_existing
from .integrity import HUB_HASH, hub_hash_matches, sha256_file
from .locate import _find, _not_found, _resolved, hub_cache_dir, offline_hint
from .registry import (
    ROLE_LABELS,
    SOURCE_DIR,
    SOURCE_DOWNLOADED,
    SOURCE_PACKAGE,
    ModelSpec,
    PathLike,
    ProgressCallback,
    ResolvedModel,
    StopCallback,
    WeightFile,
    format_size,
    get_model,
)

COMMIT = re.compile(r"[0-9a-f]{40}")
#: Attempts at one file within a call (each resumes where the last one broke off).
ATTEMPTS = 5
#: Seconds to wait before the attempt ``k`` (k = 1, 2, ...).
RETRY_WAIT: Callable[[int], float] = lambda attempt: min(0.5 * 2 ** (attempt - 1), 4.0)  # noqa: E731


def download(
    name: Union[str, ModelSpec],
    *,
    dir: Optional[PathLike] = None,
    force: bool = False,
    progress: Optional[ProgressCallback] = None,
    should_stop: Optional[StopCallback] = None,
    cache_dir: Optional[PathLike] = None,
    endpoint: Optional[str] = None,
) -> ResolvedModel:
    """Download model ``name``'s files that are not here yet; return where they all are.

    Without ``dir`` the files go to the Hugging Face cache (files already found in
    ``DACLIP_WEIGHTS_DIR`` or the cache are not downloaded again). With ``dir`` they go into
    that folder, under their own names (ready for ``DACLIP_WEIGHTS_DIR=dir``). ``force``
    downloads every Hub file again (replacing what is there: a repair).
    ``progress(bytes_done, bytes_total)`` is called as data arrives (over all files);
    ``should_stop()`` returning true cancels with :class:`~daclip_plugin.errors.Cancelled`.
    """
    spec = get_model(name)
    paths: dict[str, Path] = {}
    sources: dict[str, str] = {}
    todo: list[tuple[str, WeightFile]] = []
    folder = Path(dir).expanduser() if dir is not None else None
    if folder is not None:
        _check_folder(folder)
    for role, file in spec.files:
        if file.embedded:
            lookup = _find(file, None, cache_dir)
            if lookup.path is None:
                raise _not_found(spec, [(role, file, lookup)])
            paths[role], sources[role] = lookup.path, SOURCE_PACKAGE
        elif force:
            todo.append((role, file))
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
        fetched = _download_files(
            spec, todo, local_dir=folder, cache_dir=cache_dir, endpoint=endpoint, progress=progress,
            should_stop=should_stop,
        )
        for role, path in fetched.items():
            paths[role], sources[role] = path, SOURCE_DOWNLOADED
    return _resolved(spec, paths, sources)


# --------------------------------------------------------------------------- the server


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
        reason = (
            f"repository {file.repo_id} is not found or not accessible at {host} "
            "(a gated or private repository needs `hf auth login`)"
        )
    elif isinstance(exc, hf.LocalEntryNotFoundError) or {"ConnectError", "ConnectTimeout", "ProxyError"} & kinds:
        reason = f"cannot reach {host}: the network is down or blocked (a proxy or firewall?)"
    elif "TimeoutException" in kinds:
        reason = f"{host} stopped answering ({type(exc).__name__}); no partial file was kept"
    elif isinstance(exc, hf.HfHubHTTPError):
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = f"the server answered with an error ({first_line})"
    elif isinstance(exc, (ConnectionError, TimeoutError)) or "httpx" in type(exc).__module__:
        reason = f"the connection to {host} failed or broke off ({type(exc).__name__}: {exc}); no partial file was kept"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return DownloadError(
        f"could not download the {ROLE_LABELS[role]} file {file.filename!r} of model {spec.name!r} "
        f"from {url}: {reason}. {retry} {offline_hint()}".strip()
    )


def _plugin_of(spec: ModelSpec) -> str:
    """`` (by plugin 'x')`` when ``spec`` is the registered one, else ``""``."""
    entry = plugins.models().get(spec.name)
    return f" (by plugin {entry.plugin!r})" if entry is not None and entry.component is spec else ""


@dataclass(frozen=True)
class _Remote:
    """What the server says of one file, checked: where to get it, its hash, commit and size."""

    url: str
    etag: str
    commit: str
    size: int  #: announced (or pinned): no more is ever written


def _metadata(spec: ModelSpec, role: str, file: WeightFile, endpoint: Optional[str]) -> _Remote:
    """Ask the server about a file (no retries: a missing file or server is reported at once)."""
    from huggingface_hub import get_hf_file_metadata

    url = _file_url(file, endpoint)
    try:
        meta = get_hf_file_metadata(url, endpoint=hub_endpoint(endpoint))
    except Exception as exc:
        raise _download_error(spec, role, file, endpoint, exc) from exc
    etag, commit = (meta.etag or "").lower(), (meta.commit_hash or "").lower()
    size = meta.size if isinstance(meta.size, int) and meta.size >= 0 else file.size
    if not HUB_HASH.fullmatch(etag) or not COMMIT.fullmatch(commit) or size is None or size != (file.size or size):
        raise DownloadError(
            f"refusing the {ROLE_LABELS[role]} file {file.filename!r} of model {spec.name!r}: the answer of "
            f"{hub_endpoint(endpoint)} is not that of a Hugging Face Hub (ETag {meta.etag!r}, commit "
            f"{meta.commit_hash!r}, size {meta.size!r}); nothing was written. Check HF_ENDPOINT."
        )
    return _Remote(url, etag, commit, size)


def _inside(root: Path, path: Path) -> Path:
    """``path``, after checking that it resolves inside ``root``."""
    resolved = Path(os.path.realpath(path))
    if not resolved.is_relative_to(Path(os.path.realpath(root))):
        raise DownloadError(f"refusing to write {path}: it lies outside {root}")
    return path


def _transfer(remote: _Remote, partial: Path, report: Callable[[int], None], should_stop: Optional[StopCallback]) -> None:
    """Fetch ``remote`` into ``partial``, resuming with ``Range`` when a connection breaks off."""
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    failure: Optional[BaseException] = None
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(RETRY_WAIT(attempt))
        if partial.is_symlink():  # not ours: never written through
            partial.unlink()
        have = partial.stat().st_size if partial.exists() else 0
        if have == remote.size:
            return
        headers = build_hf_headers()
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with get_session().stream(
                "GET", remote.url, headers=headers, follow_redirects=True, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT
            ) as response:
                hf_raise_for_status(response)
                if have and response.status_code != 206:  # the server ignored the Range: start over
                    have = 0
                    report(-partial.stat().st_size)
                with open(partial, "ab" if have else "wb") as handle:
                    for chunk in response.iter_bytes():  # as it arrives: a break keeps what came
                        if should_stop is not None and should_stop():
                            raise Cancelled("download cancelled")
                        have += len(chunk)
                        if have > remote.size:
                            raise DownloadError(f"{remote.url} sent more than the {remote.size} bytes it announced; "
                                                "nothing was kept. Check HF_ENDPOINT.")
                        handle.write(chunk)
                        report(len(chunk))
        except (Cancelled, DaclipError):
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):  # this computer's side: no retry
                raise DownloadError(f"cannot write {partial.parent}: {exc.strerror}; nothing was kept") from None
            failure = exc
            continue
        except Exception as exc:
            if _is_http_error(exc):
                raise
            failure = exc  # a broken or stalled connection: resume
            continue
        if partial.stat().st_size == remote.size:
            return
    raise failure if failure is not None else ConnectionError("the server sent less data than it announced")


def _is_http_error(exc: BaseException) -> bool:
    from huggingface_hub import errors as hf

    return isinstance(exc, hf.HfHubHTTPError)


def _check_content(spec: ModelSpec, role: str, file: WeightFile, remote: _Remote, partial: Path) -> None:
    """Refuse data whose hash is not the one the server announced (or the registration pins)."""
    size = partial.stat().st_size
    problem = None
    if size != remote.size:
        problem = f"it has {size} bytes, the server announced {remote.size}"
    elif not hub_hash_matches(partial, remote.etag):
        problem = f"its content does not match the hash the server announced ({remote.etag})"
    elif file.sha256 is not None and sha256_file(partial) != file.sha256:
        problem = f"its SHA-256 differs from the one pinned in the registration of {spec.name!r}"
    if problem:
        raise DownloadError(
            f"the {ROLE_LABELS[role]} file {file.filename!r} of model {spec.name!r} arrived corrupt from "
            f"{remote.url}: {problem}; nothing was kept. Run `daclip download {spec.name}` again to retry."
        )


# --------------------------------------------------------------------------- placing files


def _storage(file: WeightFile, cache_dir: Optional[PathLike]) -> tuple[Path, Path]:
    """The cache folder of the file's repository, and the cache root."""
    from huggingface_hub.file_download import repo_folder_name

    root = hub_cache_dir(cache_dir)
    return _inside(root, root / repo_folder_name(repo_id=file.repo_id, repo_type="model")), root


def _place_in_cache(file: WeightFile, remote: _Remote, blob: Path, storage: Path) -> Path:
    """Link ``snapshots/<commit>/<file>`` to the blob and record the revision's commit."""
    pointer = _inside(storage, storage / "snapshots" / remote.commit / file.filename)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except OSError:  # no symlinks here (Windows without developer mode): a copy
        shutil.copyfile(blob, pointer)
    revision = file.revision or "main"
    if revision != remote.commit:
        ref = _inside(storage, storage / "refs" / revision)
        ref.parent.mkdir(parents=True, exist_ok=True)
        partial = ref.with_name(f".{ref.name}.{os.getpid()}.incomplete")
        partial.write_text(remote.commit)
        os.replace(partial, ref)
    return pointer


def _fetch_one(spec, role, file, remote, local_dir, cache_dir, report, should_stop) -> Path:
    """Download one checked file to its place; nothing partial is left if it fails."""
    from filelock import FileLock

    if local_dir is not None:
        local_dir.mkdir(parents=True, exist_ok=True)
        target = _inside(local_dir, local_dir / file.filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        lock_path, storage = local_dir / f".{file.filename.replace('/', '_')}.lock", None
    else:
        storage, root = _storage(file, cache_dir)
        target = _inside(storage, storage / "blobs" / remote.etag)
        lock_path = _inside(root, root / ".locks" / storage.name / f"{remote.etag}.lock")
    partial = target.with_name(f".{target.name}.incomplete" if local_dir is not None else f"{target.name}.incomplete")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        try:
            _transfer(remote, partial, report, should_stop)
            _check_content(spec, role, file, remote, partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target if storage is None else _place_in_cache(file, remote, target, storage)


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
    # Every file's metadata is checked first: nothing is written for a model whose server
    # answers wrongly for any of its files, and the sizes give one progress total.
    remotes = [_metadata(spec, role, file, endpoint) for role, file in files]
    total = sum(remote.size for remote in remotes)
    _check_space(local_dir if local_dir is not None else hub_cache_dir(cache_dir), total)
    done = [0]

    def report(count: int) -> None:
        done[0] += count
        if progress is not None:
            progress(done[0], total)

    if should_stop is not None and should_stop():
        raise Cancelled("download cancelled")
    fetched: dict[str, Path] = {}
    for (role, file), remote in zip(files, remotes):
        try:
            fetched[role] = _fetch_one(spec, role, file, remote, local_dir, cache_dir, report, should_stop)
        except DaclipError:
            raise
        except Exception as exc:
            raise _download_error(spec, role, file, endpoint, exc) from exc
    if progress is not None:
        progress(done[0], total)
    return fetched


def _check_folder(folder: Path) -> None:
    """Refuse a ``dir`` that is a file or cannot be written into, before the server is asked anything."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise OutputError(f"cannot download into {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot download into {folder}: {existing} is not a folder this user may write into")


def _check_space(folder: Path, needed: int) -> None:
    """Refuse a download that cannot fit in ``folder``'s file system (before any byte is fetched)."""
    free = shutil.disk_usage(nearest_existing(folder)).free
    if free < needed:
        raise DownloadError(
            f"not enough space for the download in {folder}: it needs {format_size(needed)}, "
            f"{format_size(free)} are free there"
        )
