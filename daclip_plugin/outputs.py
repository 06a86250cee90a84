"""Where a run's results go, decided and checked before any work.

Each input gets a target (and, on request, a side-by-side picture). Before anything is
restored, the plan refuses: a target that is an input, two results for one file, a file that
exists (unless overwriting is asked for), a format that cannot hold the result, and a folder
that cannot be written to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .errors import OutputError
from .imagefiles import TIFF, Header, format_problem, written_channels
from .persist import nearest_existing

RESTORED = "_restored"
COMPARE = "_compare.png"


@dataclass(frozen=True)
class Output:
    """The files one input leads to."""

    source: Path
    target: Path
    compare: Optional[Path]

    def written(self) -> bool:
        """Whether every file of this output exists (a finished earlier run)."""
        return self.target.exists() and (self.compare is None or self.compare.exists())


def default_suffix(source: Path, header: Header) -> str:
    """The result's format: the input's for TIFF, PNG for 8- and 16-bit images, TIFF for the rest."""
    if source.suffix.lower() in TIFF:
        return source.suffix.lower()
    if header.frames > 1 or header.dtype.kind == "f" or header.dtype.itemsize > 2:
        return ".tif"
    return ".png"


def plan(
    sources: Sequence[Path],
    headers: Sequence[Header],
    output: Optional[str],
    *,
    overwrite: bool = False,
    side_by_side: bool = False,
) -> list[Output]:
    """The outputs of restoring ``sources`` (with their ``headers``) into ``output``.

    ``output``: ``None`` (next to each input, ``NAME_restored.EXT``), a folder (an existing
    one, one ending in ``/``, or any path when there are several inputs), or a file.
    """
    folder = None
    if output is not None:
        target = Path(output).expanduser()
        if target.is_dir() or output.endswith(("/", os.sep)):
            folder = target
        elif len(sources) > 1:
            if target.exists():
                raise OutputError(f"-o {output} is a file, but {len(sources)} images are given: name a folder")
            folder = target
    outputs = []
    for source, header in zip(sources, headers):
        if output is None or folder is not None:
            base = (folder or source.parent) / f"{source.stem}{RESTORED}{default_suffix(source, header)}"
        else:
            base = Path(output).expanduser()
        problem = format_problem(base.suffix, header.dtype, written_channels(header.channels, base.suffix), header.frames)
        if problem:
            raise OutputError(f"cannot write the result of {source} to {base}: {problem}")
        compare = base.with_name(base.stem + COMPARE) if side_by_side else None
        outputs.append(Output(source, base, compare))
    _check(outputs, overwrite)
    return outputs


def _check(outputs: list[Output], overwrite: bool) -> None:
    inputs = {os.path.realpath(item.source): item.source for item in outputs}
    claimed: dict[str, Path] = {}
    for item in outputs:
        for path in (item.target, item.compare):
            if path is None:
                continue
            real = os.path.realpath(path)
            if real in inputs:
                raise OutputError(f"refusing to write over the input {inputs[real]}: choose another output with -o")
            if real in claimed:
                raise OutputError(
                    f"{claimed[real]} and {item.source} would both be written to {path}: "
                    "restore them into different folders (-o)"
                )
            claimed[real] = item.source
            if path.exists() and not overwrite:
                raise OutputError(f"{path} already exists: use --overwrite to replace it, or choose another output")
            check_writable(path)


def check_writable(path: Path) -> None:
    """Refuse ``path`` unless a file may be created there (its nearest existing folder is writable)."""
    folder = nearest_existing(path.parent)  # it must allow creating the rest
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {folder} is not a folder this user may write into")
