"""Restore folders of files and nD stacks on Dask (``dask.distributed``): one machine or a cluster.

:func:`restore_files` submits one task per file. A worker reads its file, restores it and
writes the result atomically; only paths and a small :class:`~daclip_plugin.batch.FileResult`
travel through the scheduler. Each worker process keeps its loaded models (the engine's
model cache) for every task it runs. :func:`restore_array` turns an nD stack into a lazy
dask array that restores one slice per task, which napari can show directly.

Where the work runs: the ``client`` given; else the cluster at ``scheduler`` or at Dask's
``DASK_SCHEDULER_ADDRESS``; else a :class:`~distributed.LocalCluster` of worker processes
(one thread each) sized to this machine, started for the call and closed again.
Needs the ``distributed`` extra: ``pip install "daclip-plugin[distributed]"``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from . import api, batch, imagefiles, imaging, outputs, persist, stacks
from .batch import FileResult
from .engine.devices import available_memory
from .errors import DaclipError, InvalidImageError, InvalidOptionError
from .options import of as options_of

#: The memory one local worker is planned with (a model, a large image and the UNet's budget).
WORKER_MEMORY = 3 * 2**30
#: What to do with outputs that exist: keep them (and skip the input), replace them, or refuse.
EXISTING = ("skip", "overwrite", "error")

FileProgress = Callable[[int, int, FileResult], None]
#: The environment of the local cluster's worker processes that this module sets.
SPAWN_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")


def local_workers() -> int:
    """Worker processes a local cluster gets: one per core, as many as the free memory holds."""
    return max(1, min(os.cpu_count() or 1, available_memory() // WORKER_MEMORY))


@contextlib.contextmanager
def connect(client=None, *, workers: Optional[int] = None, scheduler: Optional[str] = None) -> Iterator[Any]:
    """The Dask client to work with (see the module docstring). A local cluster started here
    gives each worker its share of the cores, and is closed on exit."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise DaclipError('Dask is not installed: pip install "daclip-plugin[distributed]"') from exc
    if client is not None:
        yield client
        return
    if workers is not None and workers < 1:
        raise InvalidOptionError(f"workers must be at least 1, got {workers}")
    address = scheduler or (None if workers else dask.config.get("scheduler-address", None))
    if address:
        try:
            remote = Client(address)
        except (ValueError, TypeError) as exc:  # not an address
            raise InvalidOptionError(f"{address!r} is not a Dask scheduler address (tcp://HOST:PORT): {exc}") from None
        except OSError as exc:  # nobody answers there
            raise DaclipError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        with remote:
            yield remote
        return
    count = workers or local_workers()
    threads = max(1, (os.cpu_count() or 1) // count)  # the cores, shared
    # Dask's worker defaults suit many small NumPy tasks, not a few large torch ones: one
    # thread, and glibc's memory trimmed at 64 KiB (every large tensor then costs fresh pages:
    # restorations measured 2-3x slower). Each worker gets its share of the cores instead. Dask
    # prefers these variables from this process's environment and leaves them set in it, so
    # they are held aside while the cluster runs.
    held = {name: os.environ.pop(name) for name in SPAWN_VARIABLES if name in os.environ}
    spawn = {f"distributed.nanny.pre-spawn-environ.{name}": threads for name in SPAWN_VARIABLES[:3]}
    spawn["distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"] = None
    try:
        with dask.config.set(spawn), LocalCluster(
            n_workers=count, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
        ) as cluster, Client(cluster) as local:
            yield local
    finally:
        for name in SPAWN_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update(held)


def _restore_task(item: outputs.Output, restorer: str, options: dict, classifier, classify_options: dict,
                  max_pixels: Optional[int]) -> FileResult:
    """Run on a worker: restore one file; its errors become a failed result, never a lost run."""
    try:
        return batch.restore_file(item, restorer, options, classifier, classify_options, max_pixels=max_pixels)
    except Exception as exc:  # one bad file must not stop the others
        message = str(exc) if isinstance(exc, DaclipError) else f"{type(exc).__name__}: {exc}"
        return FileResult(str(item.source), None, "failed", error=message)


def _remove_partials(planned: Sequence[outputs.Output]) -> None:
    """Remove what a killed worker left half-written beside its targets (their finished files are whole)."""
    for item in planned:
        for target in (item.target, item.compare):
            if target is not None:
                persist.remove_partials(target)


def restore_files(
    inputs: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]],
    out_dir: Union[str, os.PathLike, None] = None,
    *,
    client=None,
    workers: Optional[int] = None,
    scheduler: Optional[str] = None,
    restorer: Optional[str] = None,
    classifier: Optional[str] = api.DEFAULT_CLASSIFIER,
    existing: str = "skip",
    side_by_side: bool = False,
    retries: int = 2,
    max_pixels: Optional[int] = None,
    progress: Optional[FileProgress] = None,
    **options,
) -> list[FileResult]:
    """Restore image files (files, folders, glob patterns) into ``out_dir``, one Dask task per file.

    ``out_dir`` ``None`` writes ``NAME_restored.EXT`` next to each input. ``restorer``
    defaults to the ``model``'s preferred one; ``options`` go to it (and to ``classifier``,
    which reports probabilities for restorers without their own estimate). ``existing``:
    ``"skip"`` inputs whose outputs exist (re-running finishes an interrupted run),
    ``"overwrite"`` them, or ``"error"``. A file that fails is reported in its result while
    the others finish; a task whose worker died is re-run up to ``retries`` times.
    ``progress(done, total, result)`` is called as files complete. Returns one result per
    input, in input order.
    """
    if existing not in EXISTING:
        raise InvalidOptionError(f"existing must be one of {', '.join(EXISTING)}; got {existing!r}")
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    sources = batch.find_inputs([str(item) for item in items])
    restorer = restorer or api.preferred_restorer(options.get("model"))
    for_restorer, for_classifier = api.split_options(options, restorer, classifier)
    for_restorer = dict(options_of(api.get_restorer(restorer)).check(f"restorer {restorer!r}", for_restorer))
    results: dict[Path, FileResult] = {}
    readable, headers = [], []
    for source in sources:
        try:
            headers.append(imagefiles.probe(source, max_pixels=max_pixels))
            readable.append(source)
        except DaclipError as exc:
            results[source] = FileResult(str(source), None, "failed", error=str(exc))
    target = None if out_dir is None else os.path.join(os.fspath(out_dir), "")
    planned = outputs.plan(readable, headers, target, overwrite=existing != "error", side_by_side=side_by_side)
    todo = []
    for item in planned:
        if existing == "skip" and item.written():
            results[item.source] = FileResult(str(item.source), str(item.target), "skipped")
        else:
            todo.append(item)
    total, finished = len(sources), 0
    report = progress or (lambda done, total, result: None)
    for result in list(results.values()):  # decided without work: failed to open, or skipped
        finished += 1
        report(finished, total, result)
    if not todo:
        return [results[source] for source in sources]
    try:
        with connect(client, workers=workers, scheduler=scheduler) as dask_client:
            from distributed import as_completed

            futures = {
                dask_client.submit(_restore_task, item, restorer, for_restorer, classifier, for_classifier, max_pixels,
                                   retries=retries, pure=False): item
                for item in todo
            }
            for future in as_completed(futures):
                item = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # the task's worker died more often than retries allow
                    result = FileResult(str(item.source), None, "failed", error=f"{type(exc).__name__}: {exc}")
                results[item.source] = result
                finished += 1
                report(finished, total, result)
    finally:
        _remove_partials(todo)
    return [results[source] for source in sources]


def _restore_block(block: np.ndarray, restorer: str, spatial: int, options: dict) -> np.ndarray:
    """Run on a worker: restore the one slice a block of :func:`restore_array` holds."""
    image = block.reshape(block.shape[-spatial:])
    return api.restore(image, restorer, **options).reshape(block.shape)


def restore_array(
    array,
    *,
    rgb: bool = False,
    restorer: Optional[str] = None,
    value_range: Optional[Sequence[float]] = None,
    **options,
):
    """A lazy dask array restoring every slice of the nD stack ``array`` (NumPy or dask), one task per slice.

    The last two axes (three with ``rgb``: the last holds the colour) are the image; the
    others index slices. Nothing runs until the result is computed (by napari as it shows a
    slice, or by ``.compute()``), on the active Dask client or Dask's default scheduler.
    ``value_range`` is the intensity range mapped to [0, 1], the same for every slice: by
    default the dtype's for 8- and 16-bit data, else the range of the whole stack's colour (computed
    here). Each slice is steered by its own DA-CLIP estimate. The result has ``array``'s
    shape and dtype.
    """
    import dask.array as da

    data = array if isinstance(array, da.Array) else da.from_array(np.asarray(array))
    spatial = 3 if rgb else 2
    if data.ndim < spatial + 1:
        raise InvalidImageError(
            f"restore_array needs a stack: at least {spatial + 1} axes ({'slices, H, W, 3' if rgb else 'slices, H, W'}); "
            f"got shape {data.shape} (use daclip_plugin.restore for one image)"
        )
    stacks.check_stack(data, rgb)
    height, width = data.shape[data.ndim - spatial:][:2]
    if not rgb and data.shape[-1] in (3, 4) and min(height, width) < imaging.MIN_SIDE:
        raise InvalidImageError(f"slices of shape {data.shape[-2:]} look like colour pixels: pass rgb=True")
    restorer = restorer or api.preferred_restorer(options.get("model"))
    options = dict(options_of(api.get_restorer(restorer)).check(f"restorer {restorer!r}", options))
    if value_range is None:
        colour = imaging.colour_of(data, rgb)
        low, high = da.compute(colour.min(), colour.max())
        if data.dtype.kind == "f" and not (np.isfinite(low) and np.isfinite(high)):
            raise InvalidImageError("the stack has NaN or infinite values; replace them first")
        value_range = imaging.value_range_of(np.array([low, high], dtype=data.dtype))
    options["value_range"] = imaging.check_value_range(value_range)
    leading = data.ndim - spatial
    data = data.rechunk((1,) * leading + data.shape[leading:])
    return data.map_blocks(_restore_block, restorer=restorer, spatial=spatial, options=options, dtype=data.dtype,
                           token=f"daclip-restore-{restorer}")
