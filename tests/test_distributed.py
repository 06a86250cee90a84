"""Restoring on Dask: a real LocalCluster of worker processes and the embedded model."""

from __future__ import annotations

import contextlib
import os
import signal

import distributed as distributed_lib
import numpy as np
import pytest

from daclip_plugin import api, batch, cli, distributed, imagefiles, outputs
from daclip_plugin.errors import InvalidImageError, OutputError

TINY = {"model": "tiny", "device": "cpu"}


@pytest.fixture(scope="module")
def client():
    cluster = distributed_lib.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                           env={"OMP_NUM_THREADS": "1"})
    with cluster, distributed_lib.Client(cluster) as dask_client:
        yield dask_client


def write_images(folder, count: int, size: int = 48, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        image = (rng.random((size, size + 8, 3)) * 200 + rng.random((1, 1, 3)) * 55).astype(np.uint8)
        paths.append(imagefiles.write_image(folder / f"img{k}.png", image))
    return paths


def in_process(path, out_folder) -> np.ndarray:
    """The same file restored in this process, with the workers' one torch thread.

    (Float sums split over a different number of threads round differently: a handful of
    pixels may then differ by one level.)
    """
    header = imagefiles.probe(path)
    (item,) = outputs.plan([path], [header], os.path.join(out_folder, ""))
    with one_thread():
        batch.restore_file(item, "daclip-direct", TINY, None, {})
    return imagefiles.read_image(item.target)


@contextlib.contextmanager
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def no_partials(folder) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".partial")]


def test_results_equal_the_in_process_ones_and_a_corrupt_file_is_reported(client, tmp_path):
    inputs = write_images(tmp_path / "in", 3)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    seen = []
    results = distributed.restore_files(tmp_path / "in", tmp_path / "out", client=client, progress=lambda *a: seen.append(a),
                                        **TINY)
    by_name = {os.path.basename(r.source): r for r in results}
    assert [os.path.basename(r.source) for r in results] == ["broken.png", "img0.png", "img1.png", "img2.png"]
    assert by_name["broken.png"].status == "failed" and "broken.png" in by_name["broken.png"].error
    assert [done for done, total, _ in seen] == [1, 2, 3, 4] and {total for _, total, _ in seen} == {4}
    for path in inputs:
        result = by_name[path.name]
        assert result.status == "restored" and result.seconds > 0
        assert set(result.probabilities) == set(api.classify(imagefiles.read_image(path), **TINY))
        values = list(result.probabilities.values())
        assert values == sorted(values, reverse=True)  # most likely first, as classify gives them
        np.testing.assert_array_equal(imagefiles.read_image(result.target), in_process(path, tmp_path / "local"))
    # again: the outputs exist, so every file is skipped; overwrite=... does them again
    again = distributed.restore_files(tmp_path / "in" / "img*.png", tmp_path / "out", client=client, **TINY)
    assert [r.status for r in again] == ["skipped"] * 3
    with pytest.raises(OutputError, match="exists"):
        distributed.restore_files(inputs[:1], tmp_path / "out", client=client, existing="error", **TINY)
    assert no_partials(tmp_path)


def test_a_worker_killed_mid_run_still_gives_every_output(tmp_path):
    inputs = write_images(tmp_path / "in", 6, size=160)
    cluster = distributed_lib.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    killed = []
    with cluster, distributed_lib.Client(cluster) as dask_client:
        pids = dask_client.run(os.getpid)

        def kill_a_busy_worker(done, total, result):
            if killed:
                return
            busy = [address for address, keys in dask_client.processing().items() if keys and address in pids]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])

        results = distributed.restore_files(inputs, tmp_path / "out", client=dask_client, progress=kill_a_busy_worker,
                                            classifier=None, **TINY)
    assert killed, "no worker was busy to kill"
    assert [r.status for r in results] == ["restored"] * 6
    for path, result in zip(inputs, results):
        np.testing.assert_array_equal(imagefiles.read_image(result.target), in_process(path, tmp_path / "local"))
    assert no_partials(tmp_path)


def test_restore_array_matches_slice_by_slice_restoration(client):
    stack = np.random.default_rng(4).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    lazy = distributed.restore_array(stack, rgb=True, **TINY)
    assert lazy.shape == stack.shape and lazy.dtype == stack.dtype and lazy.numblocks[0] == 5
    with one_thread():
        expected = np.stack([api.restore(image, **TINY) for image in stack])
        np.testing.assert_array_equal(lazy[2].compute(scheduler="sync"), expected[2])  # one slice, as napari asks
    np.testing.assert_array_equal(client.compute(lazy).result(), expected)


def test_restore_array_of_floats_uses_one_range_for_the_whole_stack():
    import dask.array as da

    stack = np.random.default_rng(5).random((3, 40, 40), dtype=np.float32) * 7 - 2
    lazy = distributed.restore_array(da.from_array(stack, chunks=(2, 20, 40)), **TINY)
    result = lazy.compute(scheduler="sync")
    expected = np.stack([api.restore(s, value_range=(float(stack.min()), float(stack.max())), **TINY) for s in stack])
    np.testing.assert_array_equal(result, expected)
    rgba = np.concatenate([np.stack([stack] * 3, -1), np.full(stack.shape + (1,), 255, np.float32)], -1)
    result = distributed.restore_array(rgba, rgb=True, **TINY).compute(scheduler="sync")  # alpha leaves the range alone
    colour = (float(stack.min()), float(stack.max()))
    np.testing.assert_array_equal(result, np.stack([api.restore(s, value_range=colour, **TINY) for s in rgba]))
    with pytest.raises(InvalidImageError, match="needs a stack"):
        distributed.restore_array(stack[0], **TINY)
    with pytest.raises(InvalidImageError, match="empty"):
        distributed.restore_array(np.zeros((0, 16, 16)), **TINY)
    with pytest.raises(InvalidImageError, match="look like colour pixels: pass rgb=True"):
        distributed.restore_array(np.zeros((2, 16, 16, 3), np.uint8), **TINY)
    with pytest.raises(InvalidImageError, match="complex data"):
        distributed.restore_array(np.zeros((2, 16, 16), np.complex64), **TINY)
    stack[1, 3, 3] = np.nan
    with pytest.raises(InvalidImageError, match="NaN or infinite values"):
        distributed.restore_array(stack, **TINY)


def test_cli_workers(tmp_path, capsys):
    write_images(tmp_path / "in", 2)
    code = cli.main(["restore", str(tmp_path / "in"), "--workers", "2", "-o", str(tmp_path / "out"), "--model", "tiny",
                     "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0_restored.png", "img1_restored.png"]
    assert out.count("-> ") == 2
    # a second run refuses existing outputs unless told to skip or overwrite them
    assert cli.main(["restore", str(tmp_path / "in" / "*.png"), "--workers", "1", "-o", str(tmp_path / "out"), "-q"]) == 2
    assert cli.main(["restore", str(tmp_path / "in" / "*.png"), "--workers", "1", "-o", str(tmp_path / "out"), "-q",
                     "--skip-existing"]) == 0
    assert capsys.readouterr().out.count("skipped") == 2


def test_inputs_from_folders_and_patterns(tmp_path):
    write_images(tmp_path / "a", 2)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    found = batch.find_inputs([str(tmp_path / "a"), str(tmp_path / "a" / "img0.png"), str(tmp_path / "a" / "*.png")])
    assert [p.name for p in found] == ["img0.png", "img1.png"]
    with pytest.raises(InvalidImageError, match="no file matches"):
        batch.find_inputs([str(tmp_path / "*.tif")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidImageError, match="holds no images"):
        batch.find_inputs([str(tmp_path / "empty")])
