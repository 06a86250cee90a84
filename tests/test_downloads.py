"""Downloads from a hostile or broken mirror, verification of what is on disk, and repairs.

The mirror is the local Hub of test_weights.py (a real HTTP server on 127.0.0.1), told to
lie about ETags, corrupt bodies, stall or fail.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from fake_hub import DACLIP_FILE, PINNED_PLUGIN, UNET_FILE, leftovers, sha256

from daclip_plugin import cli, weights
from daclip_plugin.errors import CheckpointError, DownloadError
from daclip_plugin.weights import checkpoints


def everything_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("etag", ["../../../../{outside}/PWNED", "not-a-hash", "a" * 63])
def test_a_mirror_cannot_write_outside_the_cache(hub, test_models, tmp_path, etag):
    outside = tmp_path / "outside"
    hub.etags[DACLIP_FILE] = etag.format(outside=str(outside).lstrip("/"))
    with pytest.raises(DownloadError, match="is not that of a Hugging Face Hub.*nothing was written"):
        weights.download("test-model")
    assert not outside.exists()
    assert [p for p in everything_under(hub.cache) if not p.name.endswith(".lock")] == []
    assert hub.gets(DACLIP_FILE) == [] and hub.gets(UNET_FILE) == []  # no file of the model was fetched


def test_corrupt_bytes_under_the_right_hash_are_refused(hub, test_models, checkpoints_dir, capsys):
    hub.corrupt.add(UNET_FILE)  # same length, same announced SHA-256, one byte flipped
    with pytest.raises(DownloadError, match=f"{UNET_FILE!r} of model 'test-model' arrived corrupt.*nothing was kept"):
        weights.download("test-model")
    assert leftovers(hub.cache) == [] and not list(hub.cache.rglob(UNET_FILE))
    hub.corrupt.clear()
    assert cli.main(["download", "test-model"]) == 0
    assert "downloaded" in capsys.readouterr().out  # not "already here"
    assert sha256(weights.resolve("test-model").unet) == sha256(checkpoints_dir / UNET_FILE)


def test_a_pinned_hash_is_checked_too(hub, install_plugin, fresh_plugins, checkpoints_dir):
    install_plugin("pinned", PINNED_PLUGIN)
    fresh_plugins.reload_plugins()
    with pytest.raises(DownloadError, match="differs from the one pinned in the registration of 'pinned'"):
        weights.download("pinned")
    assert leftovers(hub.cache) == []


def test_a_stalled_server_times_out_and_leaves_nothing(hub, test_models, no_retry_wait, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 0.3)
    hub.stall = 1.0
    with pytest.raises(DownloadError, match="stopped answering"):
        weights.download("test-model")
    assert leftovers(hub.cache) == [] and not list(hub.cache.rglob(DACLIP_FILE))


@pytest.mark.parametrize("status", [500, 404])
def test_server_errors_during_the_transfer(hub, test_models, status):
    hub.status[DACLIP_FILE] = status  # the metadata was fine, the transfer fails
    with pytest.raises(DownloadError, match=f"answered with an error .*{status}"):
        weights.download("test-model")
    assert leftovers(hub.cache) == []


def test_verify_finds_a_damaged_cache_file_and_force_repairs_it(hub, test_models, checkpoints_dir, capsys):
    assert cli.main(["download", "test-model"]) == 0
    blob = Path(os.path.realpath(weights.resolve("test-model").unet))
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    capsys.readouterr()
    assert cli.main(["verify", "test-model"]) == 1
    out = capsys.readouterr().out
    assert "corrupt" in out and "daclip download test-model --force" in out
    with pytest.raises(CheckpointError, match="checksum fails|corrupt"):  # loading refuses it as well
        weights.load("test-model")
    assert cli.main(["download", "test-model"]) == 0 and "already here" in capsys.readouterr().out
    assert cli.main(["download", "test-model", "--force"]) == 0
    assert cli.main(["verify", "test-model"]) == 0 and "corrupt" not in capsys.readouterr().out
    assert sha256(weights.resolve("test-model").unet) == sha256(checkpoints_dir / UNET_FILE)


def test_the_embedded_files_are_pinned_and_checked(capsys):
    assert cli.main(["verify", "tiny"]) == 0
    assert capsys.readouterr().out.count("SHA-256 matches the registration") == 3
    assert all(file.sha256 for _, file in weights.get_model("tiny").files)


def test_a_modified_embedded_file_is_refused_when_loaded(install_plugin, fresh_plugins, tmp_path):
    package = tmp_path / "site" / "pocket_pkg"
    package.parent.mkdir(parents=True, exist_ok=True)
    package.mkdir()
    (package / "__init__.py").write_text("")
    tiny = weights.get_model("tiny")
    for role in ("daclip", "unet", "direct"):
        shutil.copy(tiny.file(role).packaged_path(), package / tiny.file(role).filename)
    pins = {role: tiny.file(role).sha256 for role in ("daclip", "unet", "direct")}
    install_plugin("pocket", f"""
        from daclip_plugin import hookimpl
        from daclip_plugin.weights import ModelSpec, WeightFile
        from daclip_plugin.models.tiny import TINY_CLIP_CFG, TINY_UNET_CFG

        @hookimpl
        def register_models(register):
            register(ModelSpec(name="pocket", description="", clip_cfg=TINY_CLIP_CFG, direct_cfg=TINY_UNET_CFG,
                               daclip=WeightFile.in_package("pocket_pkg", "daclip_tiny.pt", sha256={pins['daclip']!r}),
                               unet=WeightFile.in_package("pocket_pkg", "irsde_tiny.pth", sha256={pins['unet']!r}),
                               direct=WeightFile.in_package("pocket_pkg", "direct_tiny.pth", sha256={pins['direct']!r})))
    """)
    fresh_plugins.reload_plugins()
    try:
        assert weights.load("pocket", roles=("daclip", "direct")).direct is not None
        # a flipped byte in the archive: its CRC fails, and the pinned hash differs
        data = bytearray((package / "direct_tiny.pth").read_bytes())
        data[len(data) // 3] ^= 0x01
        (package / "direct_tiny.pth").write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="direct_tiny.pth of model 'pocket' is corrupt or was modified.*reinstall"):
            weights.load("pocket", roles=("daclip", "direct"))
        with pytest.raises(CheckpointError, match="checksum fails"):
            checkpoints.load_unet(package / "direct_tiny.pth")  # an explicit file: the archive check catches it
    finally:
        import sys

        sys.modules.pop("pocket_pkg", None)


def test_a_checkpoint_full_of_nans_names_the_file(tmp_path):
    from daclip_plugin.nn.unet import ConditionalUNet

    unet = ConditionalUNet(in_nc=3, out_nc=3, nf=8, ch_mult=[1, 2], context_dim=8)
    with torch.no_grad():
        unet.final_conv.weight.fill_(float("nan"))
    checkpoints.save_unet(unet, tmp_path / "nan.pth")
    expected = r"nan.pth is corrupt: 1 tensor\(s\) hold NaN or infinite values \(final_conv.weight\)"
    with pytest.raises(CheckpointError, match=expected):
        checkpoints.load_unet(tmp_path / "nan.pth")
