"""Named model weights: registry, resolution order, downloads, cache, offline behaviour.

Downloads run against a real HTTP server on 127.0.0.1 that answers the Hugging Face Hub
endpoints huggingface_hub uses (HEAD/GET ``/{repo}/resolve/{revision}/{file}``), serving
tiny real checkpoints written by the tests. Nothing here reaches the internet.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from daclip_plugin import cli, weights
from daclip_plugin.errors import (
    Cancelled,
    CheckpointError,
    DownloadError,
    UnknownNameError,
    WeightsNotFoundError,
)

huggingface_hub = pytest.importorskip("huggingface_hub")
from fake_hub import (  # noqa: E402
    DACLIP_FILE,
    REPO,
    TINY_CLIP,
    TINY_UNET,
    UNET_FILE,
    leftovers,
    sha256,
)
from huggingface_hub import try_to_load_from_cache  # noqa: E402

# --------------------------------------------------------------------------- registry


def test_official_models_are_registered(fresh_plugins):
    specs = {spec.name: spec for spec in weights.list_models()}
    assert {"universal-ir", "universal-ir-mix", "wild-ir"} <= set(specs)
    expected = {
        "universal-ir": ("daclip_ViT-B-32.pt", "universal-ir.pth"),
        "universal-ir-mix": ("daclip_ViT-B-32_mix.pt", "universal-ir-mix.pth"),
        "wild-ir": ("wild-daclip_ViT-L-14.pt", "wild-ir.pth"),
    }
    for name, (daclip_file, unet_file) in expected.items():
        spec = specs[name]
        assert (spec.daclip.filename, spec.unet.filename) == (daclip_file, unet_file)
        assert {spec.daclip.repo_id, spec.unet.repo_id} == {"weblzw/daclip-uir-ViT-B-32-irsde"}
        assert spec.description and not spec.embedded
        assert weights.model_plugin(name) == "daclip_plugin.hooks.models"
    assert weights.get_model("wild-ir").unet_cfg == "wild-ir"


def test_unknown_model_lists_the_available_ones(fresh_plugins):
    with pytest.raises(UnknownNameError, match="unknown model 'nope'; available: tiny, universal-ir, universal-ir-mix, wild-ir"):
        weights.get_model("nope")


def test_weight_file_needs_exactly_one_origin():
    with pytest.raises(ValueError):
        weights.WeightFile("a.pt")
    with pytest.raises(ValueError):
        weights.WeightFile("a.pt", repo_id="x/y", package="pkg")


def test_import_pulls_in_neither_torch_nor_the_hub_client():
    code = (
        "import sys, daclip_plugin\n"
        "heavy = ('torch', 'huggingface_hub', 'napari', 'qtpy')\n"
        "before = {m for m in heavy if m in sys.modules}\n"
        "import daclip_plugin.weights\n"
        "print(sorted(m for m in heavy if m in sys.modules and m not in before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- downloads


def test_download_then_load_from_cache_with_the_server_stopped(hub, test_models, checkpoints_dir):
    calls = []
    resolved = weights.download("test-model", progress=lambda done, total: calls.append((done, total)))
    total = sum((checkpoints_dir / name).stat().st_size for name in (DACLIP_FILE, UNET_FILE))
    assert resolved.sources == {"daclip": "downloaded", "unet": "downloaded"}
    assert sha256(resolved.daclip) == sha256(checkpoints_dir / DACLIP_FILE)
    assert sha256(resolved.unet) == sha256(checkpoints_dir / UNET_FILE)
    assert hub.cache in resolved.daclip.parents and hub.cache in resolved.unet.parents
    assert calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    hub.stop()
    again = weights.resolve("test-model")  # no download requested, no network needed
    assert (again.daclip, again.unet) == (resolved.daclip, resolved.unet)
    assert again.sources == {"daclip": weights.SOURCE_CACHE, "unet": weights.SOURCE_CACHE}
    assert [s.cached for s in weights.status("test-model")] == [True, True]
    loaded = weights.load("test-model")
    assert loaded.spec.name == "test-model"
    assert loaded.daclip.image_size == 32 and not loaded.unet.training


def test_resolve_downloads_only_on_request(hub, test_models):
    with pytest.raises(WeightsNotFoundError, match="daclip download test-model"):
        weights.resolve("test-model")
    assert hub.requests == []  # nothing was even asked of the server
    resolved = weights.resolve("test-model", download=True)
    assert resolved.sources["unet"] == "downloaded"
    assert weights.resolve("test-model").sources["unet"] == weights.SOURCE_CACHE


def test_connection_dropped_mid_file_is_resumed_with_range(hub, test_models, checkpoints_dir):
    hub.cut_after, hub.cuts = 5000, 1
    resolved = weights.download("test-model")
    assert sha256(resolved.daclip) == sha256(checkpoints_dir / DACLIP_FILE)
    first, second = hub.gets(DACLIP_FILE)
    assert first is None and second == "bytes=5000-"  # every byte that came before the break was kept
    assert leftovers(hub.cache) == []


@pytest.mark.parametrize("into_dir", [False, True], ids=["cache", "dir"])
def test_broken_download_leaves_no_partial_file_and_a_retry_succeeds(
    hub, test_models, checkpoints_dir, tmp_path, no_retry_wait, into_dir
):
    target = tmp_path / "weights" if into_dir else None
    hub.cut_after, hub.cuts = 5000, 100  # every attempt stops at byte 5000
    with pytest.raises(DownloadError) as error:
        weights.download("test-model", dir=target)
    message = str(error.value)
    assert f"{DACLIP_FILE!r} of model 'test-model'" in message
    assert "broke off" in message and "daclip download test-model" in message
    assert len(hub.gets(DACLIP_FILE)) > 1  # it did try to resume
    # nothing where the complete file is expected, no partial file anywhere
    assert try_to_load_from_cache(REPO, DACLIP_FILE, cache_dir=str(hub.cache)) is None
    assert list(hub.cache.rglob(DACLIP_FILE)) == [] and leftovers(hub.cache) == []
    if target is not None:
        assert not (target / DACLIP_FILE).exists() and leftovers(target) == []
    with pytest.raises(WeightsNotFoundError):
        weights.resolve("test-model")

    hub.cuts = 0
    resolved = weights.download("test-model", dir=target)
    assert sha256(resolved.daclip) == sha256(checkpoints_dir / DACLIP_FILE)
    assert sha256(resolved.unet) == sha256(checkpoints_dir / UNET_FILE)
    if target is not None:
        assert resolved.daclip == target / DACLIP_FILE


def test_missing_file_on_the_hub_is_a_clear_error(hub, test_models):
    with pytest.raises(DownloadError) as error:
        weights.download("test-missing")
    message = str(error.value)
    assert "'no-such-file.pth' of model 'test-missing'" in message
    assert "does not exist on the Hub (404" in message
    assert "registration of 'test-missing' (by plugin 'weights_tester')" in message


def test_server_down_gives_the_offline_error(hub, test_models):
    hub.stop()
    with pytest.raises(WeightsNotFoundError) as error:
        weights.resolve("test-model")
    message = str(error.value)
    for expected in (
        "model 'test-model' is missing its DA-CLIP file 'test-daclip.pt' and UNet file 'test-unet.pth'",
        "explicit path: none given",
        "DACLIP_WEIGHTS_DIR: not set",
        f"Hugging Face cache: {hub.cache}",
        "daclip download test-model",
        "'tiny' works offline",
    ):
        assert expected in message

    with pytest.raises(DownloadError) as error:
        weights.resolve("test-model", download=True, progress=lambda done, total: None)
    message = str(error.value)
    assert f"cannot reach {hub.url}" in message
    assert "daclip download test-model" in message and "'tiny' works offline" in message
    with pytest.raises(DownloadError, match="cannot reach"):
        weights.download("test-model")  # the path without a progress callback


def test_should_stop_cancels_without_leaving_files(hub, test_models):
    with pytest.raises(Cancelled):
        weights.download("test-model", should_stop=lambda: True)
    assert list(hub.cache.rglob(DACLIP_FILE)) == [] and leftovers(hub.cache) == []


# --------------------------------------------------------------------------- resolution order


def test_weights_dir_takes_precedence_over_the_cache(hub, test_models, checkpoints_dir, tmp_path, monkeypatch):
    cached = weights.download("test-model")
    folder = tmp_path / "my-weights"
    folder.mkdir()
    shutil.copy(checkpoints_dir / DACLIP_FILE, folder / DACLIP_FILE)
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(folder))
    resolved = weights.resolve("test-model")
    assert resolved.daclip == folder / DACLIP_FILE and resolved.unet == cached.unet
    assert resolved.sources == {"daclip": "DACLIP_WEIGHTS_DIR", "unet": weights.SOURCE_CACHE}


def test_explicit_path_takes_precedence(hub, test_models, checkpoints_dir, tmp_path, monkeypatch):
    weights.download("test-model")
    folder = tmp_path / "env"
    folder.mkdir()
    shutil.copy(checkpoints_dir / UNET_FILE, folder / UNET_FILE)
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(folder))
    explicit = tmp_path / "chosen.pth"
    shutil.copy(checkpoints_dir / UNET_FILE, explicit)
    resolved = weights.resolve("test-model", unet_path=explicit)
    assert resolved.unet == explicit and resolved.sources["unet"] == weights.SOURCE_EXPLICIT
    assert weights.load("test-model", unet_path=explicit).resolved.unet == explicit

    with pytest.raises(WeightsNotFoundError, match=r"explicit path: .*nothing-here\.pt \(does not exist\)"):
        weights.resolve("test-model", daclip_path=tmp_path / "nothing-here.pt", download=True)


def test_embedded_files_need_no_download(install_plugin, fresh_plugins, hub, checkpoints_dir):
    site = install_plugin(
        "embedded",
        """
        from daclip_plugin import hookimpl
        from daclip_plugin.weights import ModelSpec, WeightFile

        @hookimpl
        def register_models(register):
            register(ModelSpec(
                name="pocket",
                description="shipped inside a package",
                daclip=WeightFile.in_package("pocket_pkg", "d.pt"),
                unet=WeightFile.in_package("pocket_pkg", "u.pth"),
                clip_cfg={clip!r},
                unet_cfg={unet!r},
            ))
        """.replace("{clip!r}", repr(TINY_CLIP)).replace("{unet!r}", repr(TINY_UNET)),
    )
    package = site / "pocket_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(checkpoints_dir / DACLIP_FILE, package / "d.pt")
    shutil.copy(checkpoints_dir / UNET_FILE, package / "u.pth")
    fresh_plugins.reload_plugins()
    hub.stop()
    try:
        spec = weights.get_model("pocket")
        assert spec.embedded and weights.availability("pocket") == weights.BUILT_IN
        resolved = weights.resolve("pocket")
        assert resolved.daclip == package / "d.pt" and resolved.sources["unet"] == weights.SOURCE_PACKAGE
        assert weights.download("pocket").unet == package / "u.pth"
        assert weights.load("pocket").unet is not None
        from daclip_plugin.weights.locate import offline_hint

        assert offline_hint().startswith("The embedded model 'pocket'")
    finally:
        sys.modules.pop("pocket_pkg", None)


# --------------------------------------------------------------------------- corrupt files


def test_corrupt_file_in_the_cache_names_the_file(hub, test_models):
    resolved = weights.download("test-model")
    resolved.daclip.write_bytes(b"not a checkpoint at all")  # writes through the snapshot link
    with pytest.raises(CheckpointError) as error:
        weights.load("test-model")
    message = str(error.value)
    assert str(resolved.daclip) in message and "daclip download test-model" in message


def test_corrupt_file_in_weights_dir_names_the_file(hub, test_models, checkpoints_dir, tmp_path, monkeypatch):
    folder = tmp_path / "env"
    folder.mkdir()
    data = (checkpoints_dir / UNET_FILE).read_bytes()
    (folder / UNET_FILE).write_bytes(data[: len(data) // 2])  # truncated
    shutil.copy(checkpoints_dir / DACLIP_FILE, folder / DACLIP_FILE)
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(folder))
    with pytest.raises(CheckpointError, match=re.escape(str(folder / UNET_FILE))):
        weights.load("test-model")


def test_file_of_the_wrong_architecture_names_the_file(hub, test_models, checkpoints_dir):
    with pytest.raises(CheckpointError, match=re.escape(str(checkpoints_dir / DACLIP_FILE))):
        weights.load("test-model", daclip_path=checkpoints_dir / DACLIP_FILE, unet_path=checkpoints_dir / DACLIP_FILE)


# --------------------------------------------------------------------------- command line


def test_cli_models_lists_files_sizes_and_state(hub, test_models, checkpoints_dir, capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "universal-ir  [daclip_plugin.hooks.models]" in out and "wild-ir.pth" in out
    block = out[out.index("test-model  [weights_tester]"):]
    daclip_line = next(line for line in block.splitlines() if DACLIP_FILE in line)
    unet_line = next(line for line in block.splitlines() if UNET_FILE in line)
    assert "size unknown" in daclip_line and "not downloaded" in daclip_line and "daclip download test-model" in daclip_line
    assert weights.format_size((checkpoints_dir / UNET_FILE).stat().st_size) in unet_line
    assert "DACLIP_WEIGHTS_DIR (not set)" in out and str(hub.cache) in out

    weights.download("test-model")
    assert cli.main(["models"]) == 0
    block = capsys.readouterr().out.split("test-model  [weights_tester]")[1]
    daclip_line = next(line for line in block.splitlines() if DACLIP_FILE in line)
    assert "ready" in daclip_line and str(hub.cache) in daclip_line and "size unknown" not in daclip_line
    assert weights.availability("test-model") == weights.READY


def test_cli_download_into_the_cache(hub, test_models, capsys):
    assert cli.main(["download", "test-model"]) == 0
    out = capsys.readouterr().out
    assert out.count("downloaded") == 2 and "Model 'test-model' is ready." in out
    assert str(hub.cache) in out
    hub.stop()
    assert cli.main(["download", "test-model"]) == 0  # already there: works offline
    assert "already here (Hugging Face cache)" in capsys.readouterr().out


def test_cli_download_into_a_folder(hub, test_models, checkpoints_dir, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "weights"
    assert cli.main(["download", "test-model", "--dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"DACLIP_WEIGHTS_DIR={folder}" in out
    assert sha256(folder / DACLIP_FILE) == sha256(checkpoints_dir / DACLIP_FILE)
    assert sha256(folder / UNET_FILE) == sha256(checkpoints_dir / UNET_FILE)
    assert try_to_load_from_cache(REPO, DACLIP_FILE, cache_dir=str(hub.cache)) is None
    monkeypatch.setenv(weights.ENV_WEIGHTS_DIR, str(folder))
    assert cli.main(["models"]) == 0
    line = next(text for text in capsys.readouterr().out.splitlines() if DACLIP_FILE in text and "test-model" not in text)
    assert str(folder / DACLIP_FILE) in line and "(DACLIP_WEIGHTS_DIR)" in line


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["download", "nope"], "daclip: error: unknown model 'nope'"),
        (["download", "test-missing"], "does not exist on the Hub (404"),
    ],
)
def test_cli_download_errors_without_traceback(hub, test_models, capsys, argv, expected):
    assert cli.main(argv) == (2 if argv[-1] == "nope" else 1)  # a user's mistake, or a failure
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_cli_download_offline_error(hub, test_models, capsys):
    hub.stop()
    assert cli.main(["download", "test-model"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("daclip: error: could not download") and "cannot reach" in err
    assert "daclip download test-model" in err and "Traceback" not in err


def test_an_unknown_weight_file_role_is_named_in_one_message():
    for call in (
        lambda: weights.models_with("vae"),
        lambda: weights.get_model("tiny").file("vae"),
        lambda: weights.resolve("tiny", roles=("daclip", "vae")),
    ):
        with pytest.raises(ValueError, match=r"unknown weight file role\(s\) 'vae'; roles: daclip, unet, direct"):
            call()
