"""Downloads within bounds: never more than announced, never through a planted link, never into a
folder that cannot take them; repairs that name the folder really read; UNets that fit their DA-CLIP."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from engine_helpers import TINY_UNET
from fake_hub import DACLIP_FILE, PINNED_PLUGIN, UNET_FILE, leftovers

from daclip_plugin import cli, weights
from daclip_plugin.errors import DownloadError
from daclip_plugin.nn.unet import ConditionalUNet
from daclip_plugin.weights import hub as downloads
from daclip_plugin.weights import integrity


def test_a_server_sending_more_than_it_announced_is_cut_off(hub, test_models, no_retry_wait):
    hub.oversend[UNET_FILE] = 10 * 2**20  # 10 MiB past the end, without a Content-Length
    with pytest.raises(DownloadError, match="sent more than the [0-9]+ bytes it announced; nothing was kept"):
        weights.download("test-model")
    assert leftovers(hub.cache) == [] and not list(hub.cache.rglob(UNET_FILE))
    assert sum(p.stat().st_size for p in hub.cache.rglob("*") if p.is_file()) < 2**20


def test_a_planted_link_in_the_folder_is_not_written_through(hub, test_models, tmp_path):
    folder, outside = tmp_path / "weights", tmp_path / "precious.txt"
    folder.mkdir()
    outside.write_text("precious")
    (folder / f".{UNET_FILE}.incomplete").symlink_to(outside)
    weights.download("test-model", dir=folder)
    assert outside.read_text() == "precious" and (folder / UNET_FILE).is_file()


def test_a_folder_that_cannot_take_the_files_is_refused_before_asking_the_server(hub, test_models, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert cli.main(["download", "test-model", "--dir", str(afile)]) == 2
    assert "afile is a file, not a folder" in capsys.readouterr().err
    assert hub.requests == []


def test_a_download_that_cannot_fit_is_refused_before_any_byte(hub, test_models, monkeypatch):
    monkeypatch.setattr(downloads.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DownloadError, match="not enough space for the download in .*: it needs .*, 1.0 kB are free there"):
        weights.download("test-model")
    assert hub.gets(UNET_FILE) == [] and hub.gets(DACLIP_FILE) == []


def test_download_errors_are_one_line(hub, test_models):
    hub.status[UNET_FILE] = 500
    with pytest.raises(DownloadError) as error:
        weights.download("test-model")
    assert "\n" not in str(error.value) and "again to retry" in str(error.value)


def test_a_corrupt_file_in_the_weights_folder_is_repaired_there(install_plugin, fresh_plugins, tmp_path, monkeypatch,
                                                                 capsys):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / DACLIP_FILE).write_bytes(b"damaged")
    install_plugin("pinned", PINNED_PLUGIN)
    fresh_plugins.reload_plugins()
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(folder))
    [check] = [c for c in integrity.verify("pinned") if c.role == "daclip"]
    assert check.state == "corrupt" and check.repair == f"daclip download pinned --dir {folder} --force"
    assert cli.main(["verify", "pinned"]) == 1
    assert f"repair: daclip download pinned --dir {folder} --force" in capsys.readouterr().out


def test_a_unet_of_another_model_is_refused_naming_both_files(tmp_path, capsys):
    unet_file = tmp_path / "other-unet.pth"
    torch.save(ConditionalUNet(**TINY_UNET).state_dict(), unet_file)  # context width 32; the embedded DA-CLIP gives 64
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "in.png")
    code = cli.main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model", "tiny",
                     "--unet-path", str(unet_file), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and f"{unet_file} takes DA-CLIP features of width 32" in err
    assert "gives 64: they belong to different models" in err and not (tmp_path / "out.png").exists()


def test_the_cli_shows_warnings_as_one_line(tmp_path, capsys, monkeypatch):
    import warnings

    def noisy(args):
        """Warn about something."""
        warnings.warn("first\nsecond", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(cli, "cmd_plugins", noisy)
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as outside the tests
        assert cli.main(["plugins"]) == 0
    assert capsys.readouterr().err == "daclip: warning: first second\n"


def test_the_download_command_shows_progress(hub, test_models, capsys):
    assert cli.main(["download", "test-model"]) == 0
    assert "downloading" in capsys.readouterr().err  # the progress bar
