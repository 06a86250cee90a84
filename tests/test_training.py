"""Training of the small embedded models (daclip_plugin.training) and the direct restorer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from daclip_plugin import cli, training
from daclip_plugin.data import sources
from daclip_plugin.engine.direct import DIRECT_TIME, DirectRestorer, direct_restore, load_model
from daclip_plugin.engine.pipeline import OFFICIAL_SDE
from daclip_plugin.engine.sde import IRSDESchedule
from daclip_plugin.errors import DaclipError
from daclip_plugin.nn.daclip import DEGRADATIONS, tokenize
from daclip_plugin.nn.unet import ConditionalUNet
from daclip_plugin.weights import checkpoints
from daclip_plugin.weights.integrity import sha256_file

# Heads as the checkpoint loader assumes them (64 wide, one head below 64), so files load
# back without a sidecar; the vocabulary must stay that of the real tokenizer.
CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1},
}
UNET_CFG = {
    "in_nc": 3,
    "out_nc": 3,
    "nf": 32,
    "ch_mult": [1],
    "context_dim": 32,
    "use_degra_context": True,
    "use_image_context": True,
    "scale": 1,
}
SMALL = {
    "crop_min": 24,
    "crop_max": 32,
    "patch": 16,
    "batch": 4,
    "clip_cfg": CLIP_CFG,
    "unet_cfg": UNET_CFG,
    "log_every": 1,
    "quiet": True,
    "warmup": 2,
    "eval_per_class": 0,
    "checkpoint_every": 2,
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images():
    return list(sources.clean_images("train").values())


def _dataset(stage, seed=0, **kwargs):
    options = {"clip_size": 32, "crop_min": 24, "crop_max": 32, "patch": 16, **kwargs}
    return training.DegradationSamples(_images(), stage=stage, seed=seed, **options)


def _config(stage, out, **kwargs):
    return training.TrainConfig(stage, out, **{**SMALL, **kwargs})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny DA-CLIP, IR-SDE UNet and direct UNet, trained a few steps each."""
    out = tmp_path_factory.mktemp("trained")
    entries = {
        "daclip": training.train(_config("daclip", out, steps=4, eval_per_class=1)),
        "irsde": training.train(_config("irsde", out, steps=3, eval_per_class=1, eval_size=16)),
        "direct": training.train(_config("direct", out, steps=3, eval_per_class=1, eval_size=24)),
    }
    return out, entries


# ------------------------------------------------------------------------------- data


def test_samples_are_a_function_of_seed_stage_and_index():
    first, again, other = _dataset("irsde", seed=3), _dataset("irsde", seed=3), _dataset("irsde", seed=4)
    a, b, c = first[7], again[7], other[7]
    assert a.keys() == {"label", "lq_clip", "lq", "gt", "t", "noise"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["gt"], c["gt"])
    assert not torch.equal(first[7]["gt"], first[8]["gt"])
    assert a["lq"].shape == a["gt"].shape == a["noise"].shape == (3, 16, 16)
    assert a["lq_clip"].shape == (3, 32, 32) and 1 <= int(a["t"]) <= OFFICIAL_SDE["T"]
    assert 0 <= float(a["gt"].min()) and float(a["gt"].max()) <= 1


def test_degradation_weights_set_how_often_each_type_is_sampled():
    only_rain = {name: 0 for name in DEGRADATIONS if name != "rainy"}
    assert {int(_dataset("daclip", weights=only_rain)[k]["label"]) for k in range(20)} == {DEGRADATIONS.index("rainy")}
    labels = [int(_dataset("daclip", weights={"raindrop": 9})[k]["label"]) for k in range(200)]
    assert 0.35 < labels.count(DEGRADATIONS.index("raindrop")) / 200 < 0.65  # expected 9 / 18
    without = [int(_dataset("daclip", weights={"noisy": 0})[k]["label"]) for k in range(100)]
    assert DEGRADATIONS.index("noisy") not in without and len(set(without)) == 9
    uniform, unweighted = _dataset("irsde", weights=None)[5], _dataset("irsde")[5]
    assert all(torch.equal(uniform[k], unweighted[k]) for k in uniform)


def test_degradation_weights_are_checked(tmp_path):
    assert training.parse_weights("raindrop=4, jpeg-compressed=0.5,") == {"raindrop": 4.0, "jpeg-compressed": 0.5}
    for text in ("raindrop", "raindrop=x", "raindrop:4"):
        with pytest.raises(DaclipError, match="expected NAME=WEIGHT"):
            training.parse_weights(text)
    with pytest.raises(DaclipError, match="unknown degradation.*rain-drop"):
        _config("direct", tmp_path, degradation_weights={"rain-drop": 2})
    for bad in ({"noisy": -1}, {"noisy": float("nan")}, {name: 0 for name in DEGRADATIONS}):
        with pytest.raises(DaclipError, match="finite, >= 0 and not all 0"):
            _config("direct", tmp_path, degradation_weights=bad)
    full = _config("direct", tmp_path, degradation_weights={"raindrop": 3}).degradation_weights
    assert full == {name: 3.0 if name == "raindrop" else 1.0 for name in DEGRADATIONS}


def test_daclip_samples_hold_clean_and_degraded_clip_inputs():
    item = _dataset("daclip")[0]
    assert item.keys() == {"label", "lq_clip", "gt_clip"}
    assert item["gt_clip"].shape == item["lq_clip"].shape == (3, 32, 32)
    assert 0 <= int(item["label"]) < len(DEGRADATIONS)


def test_tiles_view_samples_hold_unresized_tiles():
    daclip_item = _dataset("daclip", clip_view="tiles", crop_min=48, crop_max=64)[0]
    assert daclip_item["lq_clip"].shape == daclip_item["gt_clip"].shape == (3, 32, 32)
    dataset = _dataset("direct", clip_view="tiles", crop_min=32, crop_max=80)
    counts = set()
    for index in range(12):
        item = dataset[index]
        n = int(item["lq_clip_n"])
        counts.add(n)
        assert item["lq_clip"].shape == (9, 3, 32, 32) and 1 <= n <= 9
        assert torch.count_nonzero(item["lq_clip"][n:]) == 0 and torch.count_nonzero(item["lq_clip"][n - 1]) > 0
    assert len(counts) > 1  # crop sizes vary, so do the tile counts


def test_tile_contexts_are_the_mean_over_each_items_tiles():
    torch.manual_seed(0)
    model = training.build_daclip(CLIP_CFG).eval()
    tiles = torch.randn(2, 9, 3, 32, 32)
    counts = torch.tensor([1, 4])
    content, degra = training.batch_contexts(model, tiles, counts)
    for i, n in enumerate(counts.tolist()):
        c, d = training.batch_contexts(model, tiles[i, :n])
        torch.testing.assert_close(content[i], c.mean(0), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(degra[i], d.mean(0), rtol=1e-4, atol=1e-5)


def test_unet_stage_trains_and_evaluates_on_tiles(trained, tmp_path):
    out, _ = trained
    entry = training.train(
        _config(
            "direct",
            tmp_path,
            daclip=out / "daclip_tiny.pt",
            clip_view="tiles",
            crop_min=32,
            crop_max=72,
            steps=2,
            eval_per_class=1,
            eval_size=64,
        )
    )
    assert entry["clip_view"] == "tiles" and entry["config"]["clip_view"] == "tiles"
    assert entry["eval"]["n"] == len(DEGRADATIONS) and entry["eval"]["psnr_out"] > 0
    with pytest.raises(DaclipError, match="unknown DA-CLIP view"):
        _config("direct", tmp_path, clip_view="crops")


def test_batches_do_not_depend_on_workers_and_start_at_a_step():
    dataset = _dataset("direct", seed=1)
    serial = iter(training.batches(dataset, 3, start_step=2, workers=0))
    parallel = iter(training.batches(dataset, 3, start_step=2, workers=2))
    for _ in range(2):
        x, y = next(serial), next(parallel)
        assert all(torch.equal(x[k], y[k]) for k in x)
    expected = torch.stack([dataset[i]["gt"] for i in range(9, 12)])  # step 3 holds samples 9..11
    assert torch.equal(x["gt"], expected)


def test_colour_jitter_is_seeded_in_range_and_sometimes_monochrome():
    image = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32) * 0.5
    outputs = [training.jitter_colours(image, np.random.default_rng(k)) for k in range(40)]
    np.testing.assert_array_equal(outputs[3], training.jitter_colours(image, np.random.default_rng(3)))
    assert all(o.shape == image.shape and o.dtype == np.float32 and 0 <= o.min() and o.max() <= 1 for o in outputs)
    grey = [min(np.corrcoef(o[..., 0].ravel(), o[..., c].ravel())[0, 1] for c in (1, 2)) > 0.999 for o in outputs]
    assert 0 < sum(grey) < len(outputs)
    assert len({float(o.mean()) for o in outputs}) == len(outputs)


def test_train_images_add_seeded_read_only_dead_leaves():
    first, info = training.train_images(0)
    again, _ = training.train_images(0)
    photographs = len(sources.TRAIN_IMAGES)
    assert len(first) == photographs + training.SYNTHETIC_IMAGES == photographs + info["dead_leaves"]["count"]
    assert all(a is b for a, b in zip(first[photographs:], again[photographs:]))
    assert not first[-1].flags.writeable
    assert not np.array_equal(first[-1], training.train_images(1)[0][-1])


def test_random_crop_has_the_asked_side_even_from_small_images():
    rng = np.random.default_rng(0)
    small = np.random.default_rng(1).random((20, 30, 3), dtype=np.float32)
    for _ in range(5):
        crop = training.random_crop([small], rng, 24, 40, 0.5)
        assert crop.shape[0] == crop.shape[1] and 24 <= crop.shape[0] <= 40
        assert crop.dtype == np.float32 and 0 <= crop.min() and crop.max() <= 1


# ----------------------------------------------------------------------------- losses


def test_the_schedule_computes_batches_with_one_timestep_per_sample():
    schedule = IRSDESchedule.from_config(OFFICIAL_SDE)
    gen = torch.Generator().manual_seed(0)
    gt, mu, noise, pred = (torch.rand(4, 3, 8, 8, generator=gen) for _ in range(4))
    t = torch.tensor([1, 2, 50, 100])
    x = schedule.add_noise(gt, mu, noise, t)
    for i, ti in enumerate(t.tolist()):
        sl = slice(i, i + 1)
        expected_x = schedule.mu_bar(gt[sl], mu[sl], ti) + schedule.sigma_bar(ti) * noise[sl]
        torch.testing.assert_close(x[sl], expected_x, atol=1e-6, rtol=1e-5)
        optimum = schedule.optimal_reverse_mean(x, gt, mu, t)[sl]
        torch.testing.assert_close(optimum, schedule.posterior_mean(x[sl], gt[sl], mu[sl], ti))
        score = schedule.score_from_noise(pred[sl], ti)
        expected = x[sl] - schedule.reverse_drift(x[sl], score, mu[sl], ti)
        torch.testing.assert_close(schedule.reverse_mean(x, pred, mu, t)[sl], expected)


def _fixed_batch(stage, n=3):
    dataset = _dataset(stage, seed=5)
    return next(iter(training.batches(dataset, n, 0, 0)))


def _overfit(model, loss_fn, steps=20, lr=2e-3):
    torch.manual_seed(0)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    return losses


def test_daclip_loss_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = training.build_daclip(CLIP_CFG)
    batch, tokens = _fixed_batch("daclip", 6), tokenize(DEGRADATIONS)
    terms = training.daclip_losses(model, batch, tokens)
    assert terms.keys() >= {"loss", "ce", "cos", "nce", "acc"}
    losses = _overfit(model, lambda: training.daclip_losses(model, batch, tokens)["loss"])
    assert losses[-1] < 0.6 * losses[0]


@pytest.mark.parametrize("stage", ["irsde", "direct"])
def test_unet_losses_overfit_a_fixed_batch(stage):
    torch.manual_seed(0)
    daclip = training.build_daclip(CLIP_CFG).eval().requires_grad_(False)
    unet = ConditionalUNet(**{**UNET_CFG, "context_dim": 32})
    batch = _fixed_batch(stage)
    contexts = training.batch_contexts(daclip, batch["lq_clip"])
    autocast = training.autocast_factory(torch.device("cpu"), True)
    if stage == "irsde":
        schedule = IRSDESchedule.from_config(OFFICIAL_SDE)
        losses = _overfit(unet, lambda: training.irsde_loss(unet, schedule, batch, contexts, autocast)["loss"], steps=40)
    else:
        losses = _overfit(unet, lambda: training.direct_loss(unet, batch, contexts, autocast)["loss"])
    assert np.mean(losses[-5:]) < (0.85 if stage == "irsde" else 0.7) * np.mean(losses[:5])


def test_log_l1_direct_loss_weighs_each_patch_by_its_error():
    torch.manual_seed(0)
    daclip = training.build_daclip(CLIP_CFG).eval().requires_grad_(False)
    unet = ConditionalUNet(**{**UNET_CFG, "context_dim": 32}).eval()
    batch = _fixed_batch("direct")
    contexts = training.batch_contexts(daclip, batch["lq_clip"])
    autocast = training.autocast_factory(torch.device("cpu"), True)
    with torch.no_grad():
        plain = training.direct_loss(unet, batch, contexts, autocast)
        logged = training.direct_loss(unet, batch, contexts, autocast, "log-l1")
        per_patch = (direct_restore(unet, batch["lq"], contexts[1], contexts[0]) - batch["gt"]).abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(plain["loss"], per_patch.mean())
    torch.testing.assert_close(logged["loss"], torch.log(per_patch + 0.01).mean())
    torch.testing.assert_close(logged["l1"], plain["l1"])  # the log keeps the plain L1 for comparison
    _overfit(unet.train(), lambda: training.direct_loss(unet, batch, contexts, autocast, "log-l1")["loss"])
    with torch.no_grad():
        trained_l1 = training.direct_loss(unet, batch, contexts, autocast)["l1"]
    assert trained_l1 < 0.7 * plain["l1"]


def test_loss_option_is_checked(tmp_path):
    with pytest.raises(DaclipError, match="unknown direct-restorer loss"):
        _config("direct", tmp_path, loss="l2")
    with pytest.raises(DaclipError, match="is for the direct stage"):
        _config("irsde", tmp_path, loss="log-l1")
    assert _config("direct", tmp_path, loss="log-l1").to_json()["loss"] == "log-l1"


def test_direct_provenance_names_its_loss(trained):
    _, entries = trained
    assert entries["direct"]["loss"] == "l1" and entries["direct"]["convention"].endswith("L1(restored, gt)")
    assert "loss" not in entries["irsde"] and "loss" not in entries["daclip"]


def test_direct_restore_is_lq_plus_the_unet_residual():
    torch.manual_seed(0)
    unet = ConditionalUNet(**{**UNET_CFG, "context_dim": 32}).eval()
    lq, ctx = torch.rand(2, 3, 16, 16), torch.randn(2, 32)
    with torch.no_grad():
        expected = lq + unet(lq, lq, DIRECT_TIME, text_context=ctx, image_context=ctx)
        torch.testing.assert_close(direct_restore(unet, lq, ctx, ctx), expected)


# ------------------------------------------------------------------------- full stages


def test_saved_files_load_back_without_configs(trained):
    out, _ = trained
    with pytest.warns(UserWarning, match="attention heads"):
        daclip = checkpoints.load_daclip(out / "daclip_tiny.pt")
    assert checkpoints.infer_clip_cfg(checkpoints.read_state_dict(out / "daclip_tiny.pt")) == CLIP_CFG
    assert daclip.clip.visual.transformer.resblocks[0].attn.num_heads == 1
    assert next(daclip.parameters()).dtype == torch.float32
    assert not (out / "daclip_tiny.json").exists()  # the heads are the ones the loader assumes
    for name in ("irsde_tiny.pth", "direct_tiny.pth"):
        state = checkpoints.read_state_dict(out / name)
        assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
        assert checkpoints.infer_unet_cfg(state) == UNET_CFG
        assert next(checkpoints.load_unet(out / name).parameters()).dtype == torch.float32


def test_provenance_records_the_runs(trained):
    out, entries = trained
    data = json.loads((out / training.PROVENANCE_NAME).read_text())
    assert set(data["stages"]) == {"daclip", "irsde", "direct"}
    for stage, entry in data["stages"].items():
        assert entry["steps"] == entries[stage]["steps"] and entry["seed"] == 0 and entry["batch"] == 4
        assert entry["file"] == training.FILE_NAMES[stage]
        assert entry["file_sha256"] == sha256_file(out / entry["file"])
        assert entry["file_bytes"] == (out / entry["file"]).stat().st_size
        assert list(entry["clean_images"]["images"]) == list(sources.TRAIN_IMAGES)
        assert not set(entry["clean_images"]["images"]) & set(sources.EVAL_IMAGES)
        assert entry["torch"] == torch.__version__ and entry["device"] == "cpu"
        assert entry["wall_seconds"] >= entry["train_seconds"] > 0
        assert np.isfinite(entry["final_loss"]) and entry["command"]
        assert entry["eval"]["n"] == len(DEGRADATIONS)
    assert 0 <= data["stages"]["daclip"]["eval"]["accuracy"] <= 1
    assert data["stages"]["irsde"]["sde"] == OFFICIAL_SDE
    assert data["stages"]["direct"]["eval"]["psnr_out"] > 0
    assert data["stages"]["direct"]["daclip_sha256"] == sha256_file(out / "daclip_tiny.pt")
    lines = [json.loads(line) for line in (out / training.LOG_NAME).read_text().splitlines()]
    steps = [line["step"] for line in lines if line["stage"] == "irsde" and "loss" in line]
    assert steps == [1, 2, 3]


def test_resume_continues_from_the_saved_step(tmp_path, monkeypatch):
    straight = training.train(_config("daclip", tmp_path / "straight", steps=4))
    losses, calls = training.daclip_losses, []

    def interrupt_third_step(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return losses(*args)

    monkeypatch.setattr(training.stages, "daclip_losses", interrupt_third_step)
    with pytest.raises(KeyboardInterrupt):
        training.train(_config("daclip", tmp_path / "resumed", steps=4))
    monkeypatch.setattr(training.stages, "daclip_losses", losses)
    assert torch.load(tmp_path / "resumed" / "daclip_state.pt", weights_only=True)["step"] == 2
    resumed = training.train(_config("daclip", tmp_path / "resumed", steps=4, resume=True))
    assert resumed["resumed_from"] == 2 and resumed["steps"] == straight["steps"] == 4
    a = checkpoints.read_state_dict(tmp_path / "straight" / "daclip_tiny.pt")
    b = checkpoints.read_state_dict(tmp_path / "resumed" / "daclip_tiny.pt")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a)
    assert resumed["final_loss"] == pytest.approx(straight["final_loss"], rel=1e-4)
    log = [json.loads(line) for line in (tmp_path / "resumed" / training.LOG_NAME).read_text().splitlines()]
    assert [line["step"] for line in log if "loss" in line] == [1, 2, 3, 4]
    assert [line.get("resumed_from") for line in log if line.get("event") == "start"] == [None, 2]


def test_crop_sizes_default_to_the_daclip_input_size(trained):
    out, _ = trained
    assert (
        _config("daclip", out, crop_min=None, crop_max=None).crop_min,
        _config("daclip", out, crop_min=None, crop_max=None).crop_max,
    ) == (32, 96)
    assert _config("daclip", out, crop_min=None, crop_max=40).crop_min == 32
    direct = _config("direct", out, crop_min=None, crop_max=None)
    assert direct.crop_min is None  # known once the DA-CLIP is loaded
    entry = training.train(_config("direct", out / "crops", daclip=out / "daclip_tiny.pt", crop_min=None, crop_max=None, steps=1))
    assert entry["crop"] == [32, 96]
    with pytest.raises(DaclipError, match="must not exceed"):
        _config("direct", out, crop_min=8, crop_max=None)


def _enlarge(x, factor=2):
    return x.repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def test_resampled_patch_kernel_sees_a_larger_image_as_the_old_one_the_shrunk_image():
    old = torch.randn(8, 3, 16, 16)
    new = training.resample_patch_kernel(old, 32)
    x = torch.randn(2, 3, 32, 32)
    expected = torch.nn.functional.conv2d(x, old, stride=16)
    assert torch.allclose(torch.nn.functional.conv2d(_enlarge(x), new, stride=32), expected, atol=1e-4)
    detail = torch.randn(2, 3, 64, 64)
    detail = detail - _enlarge(torch.nn.functional.avg_pool2d(detail, 2))  # zero mean in every 2x2 cell
    assert torch.nn.functional.conv2d(detail, new, stride=32).abs().mean() > 0.1  # it sees fine detail
    assert torch.equal(training.resample_patch_kernel(old, 16), old)
    with pytest.raises(DaclipError, match="cannot resample"):
        training.resample_patch_kernel(old, 24)


def test_init_fine_tunes_a_larger_input_daclip_from_a_saved_one(trained, tmp_path):
    out, _ = trained
    bigger = {**CLIP_CFG, "vision_cfg": {**CLIP_CFG["vision_cfg"], "image_size": 64, "patch_size": 32}}
    model = training.build_daclip(bigger)
    info = training.initialise_from(model, out / "daclip_tiny.pt")
    assert info["sha256"] == sha256_file(out / "daclip_tiny.pt") and info["provenance"]["steps"] == 4
    old = checkpoints.load_daclip(out / "daclip_tiny.pt").float().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        new_features = model.eval().encode_image(_enlarge(x), control=True)
        old_features = old.encode_image(x, control=True)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(new_features, old_features))
    entry = training.train(
        _config("daclip", tmp_path, clip_cfg=bigger, init=out / "daclip_tiny.pt", steps=1, crop_min=64, crop_max=64)
    )
    assert entry["init"]["sha256"] == info["sha256"] and entry["steps"] == 1


def test_init_starts_a_unet_stage_from_saved_weights(trained, tmp_path):
    out, _ = trained
    entry = training.train(_config("direct", tmp_path, daclip=out / "daclip_tiny.pt", init=out / "direct_tiny.pth", steps=0))
    assert entry["init"]["file"] == "direct_tiny.pth"
    assert entry["init"]["provenance"]["steps"] == 3
    a, b = checkpoints.read_state_dict(out / "direct_tiny.pth"), checkpoints.read_state_dict(tmp_path / "direct_tiny.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(DaclipError, match="same kind of model"):
        training.train(_config("direct", tmp_path / "bad", daclip=out / "daclip_tiny.pt", init=out / "daclip_tiny.pt", steps=0))
    other = {**UNET_CFG, "nf": 64}
    with pytest.raises(DaclipError, match="the model needs"):
        training.train(
            _config(
                "direct", tmp_path / "bad2", daclip=out / "daclip_tiny.pt", unet_cfg=other, init=out / "direct_tiny.pth", steps=0
            )
        )
    with pytest.raises(DaclipError, match="not found"):
        training.train(
            _config("direct", tmp_path / "bad3", daclip=out / "daclip_tiny.pt", init=tmp_path / "missing.pth", steps=0)
        )


def test_unet_stage_needs_a_daclip(tmp_path):
    with pytest.raises(DaclipError, match="needs a trained DA-CLIP"):
        training.train(_config("direct", tmp_path, steps=1))


def test_direct_restorer_restores_any_size(trained):
    out, _ = trained
    files = {"daclip_path": out / "daclip_tiny.pt", "unet_path": out / "direct_tiny.pth", "device": "cpu"}
    restorer = load_model("tiny", **files)
    assert isinstance(restorer, DirectRestorer)
    image = np.random.default_rng(0).random((37, 50, 3), dtype=np.float32)
    calls = []
    restored = restorer.restore(image, progress=lambda done, total: calls.append((done, total)))
    assert restored.shape == image.shape and restored.dtype == np.float32
    assert 0 <= restored.min() and restored.max() <= 1
    assert calls == [(k, calls[-1][1]) for k in range(1, calls[-1][1] + 1)]  # one report per UNet block
    tiled = restorer.restore(image, tile_size=32, tile_overlap=8)
    assert tiled.shape == image.shape
    assert set(restorer.classify(image)) == set(DEGRADATIONS)
    assert load_model("tiny", **files).unet is restorer.unet


def test_cli_train_runs_a_stage(tmp_path, capsys):
    code = cli.main(["train", "daclip", "--out", str(tmp_path), "--steps", "1", "--batch", "2", "--eval-per-class", "0"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 1 and summary["file"].endswith("daclip_tiny.pt")
    entry = json.loads((tmp_path / "provenance.json").read_text())["stages"]["daclip"]
    assert entry["model_cfg"] == training.TINY_CLIP_CFG and entry["file_bytes"] < 12e6
    size = training.TINY_CLIP_CFG["vision_cfg"]["image_size"]
    assert entry["crop"] == [size, size + 64]
    assert "degradation_weights" not in entry
    assert entry["eval"] is None  # --eval-per-class 0 is kept, not mistaken for "not given"


def test_train_flags_keep_zeros_and_leave_unset_ones_to_the_preset(tmp_path):
    from daclip_plugin.training.config import PRESETS, add_flags, config_from_args

    parser = __import__("argparse").ArgumentParser()
    add_flags(parser)
    args = parser.parse_args(["direct", "--out", str(tmp_path), "--steps", "0", "--seed", "0", "--eval-per-class", "0"])
    config = config_from_args(args)
    assert (config.steps, config.seed, config.eval_per_class) == (0, 0, 0)
    assert config.batch == PRESETS["cpu"]["direct"]["batch"] and config.resume is False


def test_cli_train_records_degradation_weights(tmp_path, capsys):
    args = ["train", "daclip", "--out", str(tmp_path), "--steps", "1", "--batch", "2", "--eval-per-class", "0"]
    assert cli.main([*args, "--degradation-weights", "raindrop=4,noisy=0"]) == 0
    entry = json.loads((tmp_path / "provenance.json").read_text())["stages"]["daclip"]
    assert entry["degradation_weights"]["raindrop"] == 4 and entry["degradation_weights"]["noisy"] == 0
    assert entry["degradation_weights"]["hazy"] == 1
    capsys.readouterr()
    assert cli.main([*args, "--degradation-weights", "fog=2"]) == 1
    assert "unknown degradation(s) fog" in capsys.readouterr().err


# ------------------------------------------------------------------- weight interpolation


def test_interpolation_mixes_two_fine_tunings_weight_by_weight(trained, tmp_path):
    from daclip_plugin.training.interpolation import interpolate

    out, _ = trained
    bolder = tmp_path / "bolder"
    training.train(
        _config("direct", bolder, daclip=out / "daclip_tiny.pt", init=out / "direct_tiny.pth", steps=3, lr=1e-2, seed=1)
    )
    first, second = out / "direct_tiny.pth", bolder / "direct_tiny.pth"
    a, b = checkpoints.read_state_dict(first), checkpoints.read_state_dict(second)
    for alpha in (0.0, 0.25, 1.0):
        entry = interpolate(
            first, second, alpha, tmp_path / str(alpha), daclip=out / "daclip_tiny.pt", eval_per_class=1, eval_size=24
        )
        mixed = checkpoints.read_state_dict(tmp_path / str(alpha) / "direct_tiny.pth")
        for key, value in mixed.items():
            expected = ((1 - alpha) * a[key].double() + alpha * b[key].double()).half()
            assert torch.allclose(value.double(), expected.double(), atol=1e-3, rtol=1e-3), key
    assert all(torch.equal(mixed[k], b[k]) for k in b)  # alpha 1: the second, exactly
    record = json.loads((tmp_path / "1.0" / "provenance.json").read_text())["stages"]["direct"]
    assert record == json.loads(json.dumps(entry))
    assert entry["sources"]["first"]["sha256"] == training.weights_record(first)["sha256"]
    assert entry["sources"]["second"]["provenance"]["init"]["file"] == "direct_tiny.pth"
    assert entry["daclip_sha256"] == training.weights_record(out / "daclip_tiny.pt")["sha256"]
    assert entry["eval"]["n"] == len(DEGRADATIONS) and entry["file_sha256"] == training.weights_record(second)["sha256"]


def test_interpolation_refuses_what_is_not_one_lineage(trained, tmp_path):
    from daclip_plugin.training.interpolation import interpolate

    out, _ = trained
    with pytest.raises(DaclipError, match="alpha"):
        interpolate(out / "direct_tiny.pth", out / "direct_tiny.pth", 1.5, tmp_path)
    with pytest.raises(DaclipError, match="not found"):
        interpolate(out / "direct_tiny.pth", tmp_path / "missing.pth", 0.5, tmp_path)
    with pytest.raises(DaclipError, match="not the DA-CLIP"):
        interpolate(out / "direct_tiny.pth", out / "direct_tiny.pth", 0.5, tmp_path / "z", daclip=out / "provenance.json")
    assert not (tmp_path / "z").exists()
    other = tmp_path / "other"
    other.mkdir()
    training.save_model(ConditionalUNet(**{**UNET_CFG, "nf": 64, "context_dim": 32}), other / "direct_tiny.pth")
    with pytest.raises(DaclipError, match="not the same UNet"):
        interpolate(out / "direct_tiny.pth", other / "direct_tiny.pth", 0.5, tmp_path / "x")
    # same shapes, but trained against another DA-CLIP
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "direct_tiny.pth").write_bytes((out / "direct_tiny.pth").read_bytes())
    data = json.loads((out / "provenance.json").read_text())
    data["stages"]["direct"]["daclip_sha256"] = "0" * 64
    (elsewhere / "provenance.json").write_text(json.dumps(data))
    with pytest.raises(DaclipError, match="daclip_sha256"):
        interpolate(out / "direct_tiny.pth", elsewhere / "direct_tiny.pth", 0.5, tmp_path / "y")
    assert not (tmp_path / "y" / "direct_tiny.pth").exists()


def test_cli_interpolate(trained, tmp_path, capsys):
    out, _ = trained
    code = cli.main(
        ["interpolate", str(out / "direct_tiny.pth"), str(out / "direct_tiny.pth"), "--alpha", "0.5", "--out", str(tmp_path)]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["alpha"] == 0.5 and (tmp_path / "direct_tiny.pth").is_file() and "eval" not in summary
