"""Whether a weight file is the one it should be: SHA-256 against a pinned hash or the Hub's.

The Hub names every file by its hash: the SHA-256 for large (LFS) files, the git blob SHA-1
for small ones; the Hugging Face cache stores a file under that name (``blobs/<hash>``). A
registration can also pin a file's SHA-256 (:attr:`~daclip_plugin.weights.WeightFile.sha256`).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .locate import _find, weights_dir
from .registry import ROLE_LABELS, SOURCE_ENV, ModelSpec, PathLike, WeightFile, get_model

HUB_HASH = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_verified: dict[tuple[str, int, int], str] = {}


def sha256_file(path: PathLike) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path: PathLike) -> str:
    """The git blob SHA-1 of a file (how the Hub names small, non-LFS files)."""
    digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hub_hash_matches(path: PathLike, hub_hash: str) -> bool:
    """Whether ``path`` has the Hub hash ``hub_hash`` (SHA-256, or git blob SHA-1 for 40 digits)."""
    return (git_blob_sha1(path) if len(hub_hash) == 40 else sha256_file(path)) == hub_hash


def cached_sha256(path: PathLike) -> str:
    """:func:`sha256_file`, computed once per file version (path, size, modification time)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    return _verified[key]


def cache_blob_hash(path: PathLike) -> Optional[str]:
    """The Hub hash a Hugging Face cache entry is stored under (``None`` for other files)."""
    target = Path(os.path.realpath(path))
    return target.name if target.parent.name == "blobs" and HUB_HASH.fullmatch(target.name) else None


@dataclass(frozen=True)
class FileCheck:
    """The outcome of checking one file of a model: ``state`` is ok, corrupt, unverified or missing."""

    role: str
    file: WeightFile
    path: Optional[Path]
    state: str
    detail: str
    repair: str = ""  #: the command that replaces a corrupt file where it is looked for first

    @property
    def label(self) -> str:
        return ROLE_LABELS[self.role]


def repair_command(spec: ModelSpec, file: WeightFile, source: Optional[str]) -> str:
    """How to replace a damaged file of ``spec`` found at ``source``: where it is looked for first."""
    if file.embedded:
        return "reinstall daclip-plugin"
    if source == SOURCE_ENV:
        return f"daclip download {spec.name} --dir {weights_dir()} --force"
    return f"daclip download {spec.name} --force"


def check(spec: ModelSpec, role: str, file: WeightFile, cache_dir: Optional[PathLike] = None) -> FileCheck:
    """Check the file of ``role`` where it is found, against its pinned hash or its Hub hash."""
    lookup = _find(file, None, cache_dir)
    if lookup.path is None:
        return FileCheck(role, file, None, "missing", f"not on this computer (daclip download {spec.name})")
    path, repair = lookup.path, repair_command(spec, file, lookup.source)
    if file.sha256 is not None:
        actual = sha256_file(path)
        if actual == file.sha256:
            return FileCheck(role, file, path, "ok", "SHA-256 matches the registration")
        return FileCheck(role, file, path, "corrupt", f"its SHA-256 {actual} differs from the registered {file.sha256}",
                         repair)
    blob = cache_blob_hash(path)
    if blob is not None:
        if hub_hash_matches(path, blob):
            return FileCheck(role, file, path, "ok", "matches the hash the Hub gave it")
        return FileCheck(role, file, path, "corrupt", f"its content does not match the hash it was downloaded as ({blob})",
                         repair)
    return FileCheck(role, file, path, "unverified", "no known hash to compare with")


def verify(name: Union[str, ModelSpec], *, cache_dir: Optional[PathLike] = None) -> list[FileCheck]:
    """Check every file of model ``name`` (see :func:`check`)."""
    spec = get_model(name)
    return [check(spec, role, file, cache_dir) for role, file in spec.files]
