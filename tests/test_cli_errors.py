"""The command line with bad input: one line on stderr, exit code 2 for a user's mistake (1 for a
failure while working), no traceback, no file touched; outputs are planned before any work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from test_cli import INVERT_PLUGIN

from daclip_plugin import cli


@pytest.fixture
def files(tmp_path, install_plugin, fresh_plugins):
    install_plugin("inverter", INVERT_PLUGIN.format(name="invert"))
    fresh_plugins.reload_plugins()
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b").mkdir()
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(tmp_path / "b" / "a.png")
    Image.fromarray(np.full((16, 16, 4), 100, np.uint8)).save(tmp_path / "rgba.png")
    Image.new("L", (12000, 11000)).save(tmp_path / "bomb.png")
    (tmp_path / "existing_restored.png").write_bytes(b"precious")
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(tmp_path / "existing.png")
    (tmp_path / "resume").mkdir()
    (tmp_path / "resume" / "daclip_state.pt").write_bytes(b"\x80\x04 hostile bytes")
    os.chdir(tmp_path)
    return tmp_path


INVERT = ["--restorer", "invert", "--no-classify", "-q"]
CASES = [
    # restore: outputs
    (["restore", "a.png", "-o", "a.png", *INVERT], 2, "refusing to write over the input a.png"),
    (["restore", "a.png", "b/a.png", "-o", "out/", *INVERT], 2, "would both be written to out/a_restored.png"),
    (["restore", "existing.png", *INVERT], 2, "existing_restored.png already exists: use --overwrite"),
    (["restore", "a.png", "b/a.png", "-o", "existing_restored.png", *INVERT], 2, "is a file, but 2 images are given"),
    (["restore", "a.png", "-o", "o.xyz", *INVERT], 2, "unknown image format '.xyz'"),
    (["restore", "rgba.png", "-o", "o.jpg", *INVERT], 2, "a .jpg file cannot hold uint8 data with 4 channel(s)"),
    (["restore", "a.png", "-o", "a.png/x.png", *INVERT], 2, "a.png is not a folder this user may write into"),
    # restore: inputs and options
    (["restore", "missing.png", *INVERT], 2, "no such image file: missing.png"),
    (["restore", "bomb.png", "--max-pixels", "1000000", *INVERT], 2, "declares 12000 x 11000 pixels"),
    (["restore", "a.png", "--model", "tiny", "--no-classify", "-q", "--device", "tpu"], 2, "unknown device"),
    (["restore", "a.png", "--no-classify", "-q", "--seed", str(2**70)], 2, "option 'seed'"),
    (["restore", "a.png", "--model", "tiny", "--device", "cpu", "-q", "--tile-size", "8"], 2, "tile_size must be 0"),
    (["restore", "a.png", "--no-classify", "-q", "--steps", "10"], 2, "applies only with sampler='mars'"),
    (["restore", "a.png", "--restorer", "nope", "-q"], 2, "unknown restorer 'nope'"),
    (["restore", "a.png", "--model", "tiny", "-q", "--prompts", "foggy,sharp"], 2, "--prompts would change nothing"),
    (["restore", "a.png", "--workers", "0", *INVERT], 2, "--workers must be at least 1, not 0"),
    (["restore", "a.png", "-o", "one.png", "--workers", "1", *INVERT], 2, "-o one.png names a file: with --workers"),
    (["restore", "a.png", "--scheduler", "notanaddress", *INVERT], 2, "'notanaddress' is not a Dask scheduler address"),
    # classify
    (["classify", "a.png", "--prompts", ","], 2, "option 'prompts'"),
    (["classify", "a.png", "--prompts", "noisy,noisy"], 2, "option 'prompts'"),
    (["classify", "a.png", "--classifier", "nope"], 2, "unknown classifier 'nope'"),
    (["classify", "missing.png"], 2, "no such image file"),
    # others
    (["samples", "a.png"], 2, "a.png is a file: give a folder"),
    (["make-benchmark", "bench", "--seed", "1", "--size", "100000"], 2, "size <= 4096"),
    (["download", "nope"], 2, "unknown model 'nope'"),
    (["verify", "nope"], 2, "unknown model 'nope'"),
    (["evaluate", "missing-folder", "--restorer", "invert", "-q"], 2, "missing-folder"),
    (["train", "daclip", "--out", "resume", "--resume", "--steps", "1"], 1, "cannot resume from resume/daclip_state.pt"),
]


@pytest.mark.parametrize("argv, code, message", CASES, ids=[" ".join(case[0][:4]) for case in CASES])
def test_bad_input_is_one_line_with_its_exit_code(files, capsys, argv, code, message):
    before = {p: p.read_bytes() for p in files.rglob("*") if p.is_file()}
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("daclip: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err
    after = {p: p.read_bytes() for p in files.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing changed


def test_overwrite_replaces_an_output_but_never_an_input(files, capsys):
    assert cli.main(["restore", "existing.png", *INVERT, "--overwrite"]) == 0
    assert (files / "existing_restored.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["restore", "a.png", "-o", "a.png", *INVERT, "--overwrite"]) == 2


def test_debug_shows_the_traceback(files, capsys):
    with pytest.raises(Exception, match="no such image file"):
        cli.main(["--debug", "restore", "missing.png", *INVERT])


def test_outputs_keep_the_inputs_depth_and_stacks(files, capsys):
    import tifffile

    tifffile.imwrite("float.tif", np.linspace(-500, 500, 256, dtype=np.float32).reshape(16, 16))
    tifffile.imwrite("stack.tif", np.zeros((3, 16, 16), np.uint16), photometric="minisblack")
    Image.fromarray(np.full((16, 16), 1000, np.uint16)).save("gray16.png")
    assert cli.main(["restore", "float.tif", "stack.tif", "gray16.png", "-o", "out", *INVERT]) == 0
    restored = tifffile.imread("out/float_restored.tif")
    assert restored.dtype == np.float32 and restored.min() < -400 and restored.max() > 400  # not clipped to [0, 1]
    assert tifffile.imread("out/stack_restored.tif").shape == (3, 16, 16)
    assert np.asarray(Image.open("out/gray16_restored.png")).dtype == np.uint16


SLOW_WRITE = """
import signal, sys, time
import numpy as np
from daclip_plugin import cli, imagefiles

# Ctrl-C as in a terminal, even when the tests run in a background job (which ignores SIGINT)
signal.signal(signal.SIGINT, signal.default_int_handler)

original = imagefiles._encode
def slow(stream, *args):
    stream.write(b"x" * 1000)
    stream.flush()
    time.sleep(30)  # the signal arrives while the file is half written
    original(stream, *args)
imagefiles._encode = slow
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_write_leaves_no_file(tmp_path, signum):
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "run.py").write_text(SLOW_WRITE)
    process = subprocess.Popen(
        [sys.executable, "run.py", "restore", "a.png", "--restorer", "daclip-direct", "--model", "tiny",
         "--device", "cpu", "--no-classify", "-q", "-o", "out.png"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == (143 if signum == signal.SIGTERM else 130), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "run.py"]  # no partial file, no output
