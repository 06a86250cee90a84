"""Writing what the package keeps: files that appear complete or not at all, values as strict JSON.

Every file the package writes for users (images, checkpoints, reports, provenance, training
states, settings) goes through :func:`replacing`: written beside its place, then renamed into
it, so an interrupted or failed write never leaves a half-written file where a complete one
is expected.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import secrets
from pathlib import Path
from typing import Any, Iterator, Mapping, Union

import numpy as np

#: The ending of the hidden file a write goes to before it is renamed into place.
PARTIAL = ".partial"


def nearest_existing(path: Union[str, os.PathLike]) -> Path:
    """``path`` or its nearest existing ancestor: where creating the rest of ``path`` starts."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@contextlib.contextmanager
def replacing(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """A new hidden file beside ``path`` to write: renamed to ``path`` when the block ends, removed if it fails."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: Union[str, os.PathLike], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`replacing`."""
    path = Path(path)
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return path


def remove_partials(path: Union[str, os.PathLike]) -> None:
    """Remove what writes of ``path`` by killed processes left beside it (half-written files)."""
    path = Path(path)
    if path.parent.is_dir():
        for partial in path.parent.glob(f".{glob.escape(path.name)}.*{PARTIAL}"):
            partial.unlink(missing_ok=True)


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON data: non-finite floats become ``None``, NumPy scalars Python ones,
    tuples lists, mapping keys text, anything else (paths, ...) its text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return str(value)
