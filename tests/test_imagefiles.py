"""Image files keep their depth, sample format, frames, transparency and orientation; writes are
atomic, keep the usual permissions and refuse formats that would lose data."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from daclip_plugin import imagefiles
from daclip_plugin.errors import DaclipError, InvalidImageError

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "name, data",
    [
        ("gray16.png", RNG.integers(0, 65536, (9, 11), dtype=np.uint16)),
        ("rgb16.png", RNG.integers(0, 65536, (9, 11, 3), dtype=np.uint16)),
        ("rgba16.png", RNG.integers(0, 65536, (9, 11, 4), dtype=np.uint16)),
        ("rgb8.png", RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)),
        ("float.tif", RNG.uniform(-500, 500, (9, 11)).astype(np.float32)),
        ("rgb-float.tif", RNG.uniform(-1, 3, (9, 11, 3)).astype(np.float64)),
        ("int32.tif", RNG.integers(-2**31, 2**31 - 1, (9, 11), dtype=np.int32)),
        ("big-endian.tif", RNG.integers(0, 65536, (9, 11), dtype=np.uint16).astype(">u2")),
    ],
)
def test_round_trips_keep_every_value(tmp_path, name, data):
    path = imagefiles.write_image(tmp_path / name, data)
    back = imagefiles.read_image(path)
    assert back.shape == data.shape and back.dtype.newbyteorder("=") == data.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, data)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_stack_round_trips_as_tiff_pages(tmp_path):
    data = RNG.integers(0, 4096, (5, 12, 10), dtype=np.uint16)
    imagefiles.write_image(tmp_path / "stack.tif", data, frames=5)
    picture = imagefiles.read_picture(tmp_path / "stack.tif")
    assert picture.frames == 5 and picture.stack
    np.testing.assert_array_equal(picture.data, data)
    assert imagefiles.probe(tmp_path / "stack.tif") == imagefiles.Header(5, 1, np.dtype(np.uint16))
    with pytest.raises(InvalidImageError, match="holds 5 frames"):
        imagefiles.read_image(tmp_path / "stack.tif")


def test_an_animated_gif_is_read_as_frames(tmp_path):
    frames = [Image.fromarray(np.full((8, 8), 40 * k, np.uint8)).convert("P") for k in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    picture = imagefiles.read_picture(tmp_path / "anim.gif")
    assert picture.frames == 3 and picture.data.shape[:3] == (3, 8, 8)


def test_a_palette_keeps_its_transparency(tmp_path):
    image = Image.new("P", (8, 8))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 4, 8))
    image.info["transparency"] = 0
    image.save(tmp_path / "palette.png", transparency=0)
    data = imagefiles.read_image(tmp_path / "palette.png")
    assert data.shape == (8, 8, 4)
    assert (data[:, :4, 3] == 255).all() and (data[:, 4:, 3] == 0).all()  # transparent where it was
    assert imagefiles.probe(tmp_path / "palette.png").channels == 4


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[0, 0] = 255  # the top left corner, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", exif=exif, quality=100)
    data = imagefiles.read_image(tmp_path / "photo.jpg")
    assert data.shape == (8, 4, 3)  # as it is displayed
    assert data[0, -1].mean() > 128  # the stored corner is now top right


def test_a_file_declaring_too_many_pixels_is_refused_before_decoding(tmp_path):
    Image.new("L", (12000, 10000)).save(tmp_path / "bomb.png")  # a small file: one colour
    assert (tmp_path / "bomb.png").stat().st_size < 300_000
    with pytest.raises(InvalidImageError, match="declares 12000 x 10000 pixels, more than the limit"):
        imagefiles.read_picture(tmp_path / "bomb.png", max_pixels=50_000_000)
    with pytest.raises(InvalidImageError, match="declares"):
        imagefiles.probe(tmp_path / "bomb.png", max_pixels=50_000_000)
    tifffile.imwrite(tmp_path / "bomb.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(InvalidImageError, match="declares 4 x 4 pixels"):
        imagefiles.read_picture(tmp_path / "bomb.tif", max_pixels=10)


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("out.png", np.zeros((8, 8), np.float32), "a .png file cannot hold float32"),
        ("out.jpg", np.zeros((8, 8, 4), np.uint8), "a .jpg file cannot hold uint8 data with 4 channel"),
        ("out.jpg", np.zeros((8, 8, 3), np.uint16), "a .jpg file cannot hold uint16"),
        ("out.xyz", np.zeros((8, 8), np.uint8), "unknown image format '.xyz'"),
        ("out.png", np.zeros((3, 8, 8), np.uint8), "in 3 frames"),
    ],
)
def test_formats_that_would_lose_data_are_refused(tmp_path, name, data, message):
    frames = 3 if "frames" in message else 1
    with pytest.raises(DaclipError, match=message):
        imagefiles.write_image(tmp_path / name, data, frames=frames)
    assert list(tmp_path.iterdir()) == []


def test_new_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = imagefiles.write_image(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def broken(stream, *args):
        stream.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(imagefiles, "_encode", broken)
    with pytest.raises(KeyboardInterrupt):
        imagefiles.write_image(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_side_by_side_shows_both_in_the_inputs_range():
    before = np.linspace(-500, 500, 64, dtype=np.float32).reshape(8, 8)
    picture = imagefiles.side_by_side(before, before / 2)
    assert picture.dtype == np.uint8 and picture.shape == (8, 8 + 8 + 8, 3)
    assert picture[..., :8, 0].max() == 255 and picture[..., 16:, 0].max() < 200  # the same scale for both


def test_unreadable_files_are_clear_errors(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InvalidImageError, match="cannot read .*text.png as an image"):
        imagefiles.read_picture(tmp_path / "text.png")
    with pytest.raises(InvalidImageError, match="no such image file"):
        imagefiles.read_picture(tmp_path / "missing.png")
    with pytest.raises(InvalidImageError, match="is not a file"):
        imagefiles.probe(Path(tmp_path))
