"""Checkpoint I/O: official wrappings, strict loading, architecture inference, clear errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from daclip_plugin.errors import CheckpointError
from daclip_plugin.nn.daclip import DaCLIP
from daclip_plugin.nn.unet import ConditionalUNet
from daclip_plugin.weights.checkpoints import (
    describe_checkpoint,
    infer_clip_cfg,
    infer_unet_cfg,
    load_daclip,
    load_unet,
    read_state_dict,
    save_daclip,
    save_unet,
)

DATA = Path(__file__).parent / "data"
SCHEMAS = json.loads((DATA / "checkpoint_schemas.json").read_text())

# heads that shapes cannot reveal: 2 heads of 16 in both towers (a sidecar is needed)
TWO_HEADS_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 300, "width": 32, "heads": 2, "layers": 1},
}
# heads 64 wide, as load_daclip assumes: the shapes alone describe it
DEFAULT_HEADS_CFG = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 48, "layers": 3, "width": 64, "patch_size": 16, "head_width": 64},
    "text_cfg": {"context_length": 12, "vocab_size": 200, "width": 64, "heads": 1, "layers": 2},
}
UNET_CFGS = {
    "universal": dict(in_nc=3, out_nc=3, nf=32, ch_mult=[1, 2], context_dim=16,
                      use_degra_context=True, use_image_context=True, scale=1),
    "wild": dict(in_nc=3, out_nc=3, nf=32, ch_mult=[1, 2], context_dim=16,
                 use_degra_context=False, use_image_context=True, scale=0.5),
    "no-context": dict(in_nc=1, out_nc=2, nf=32, ch_mult=[1, 1, 2], context_dim=None,
                       use_degra_context=False, use_image_context=False, scale=1),
}


def _random_daclip(cfg: dict, seed: int = 0) -> DaCLIP:
    torch.manual_seed(seed)
    model = DaCLIP(cfg).eval()
    with torch.no_grad():
        for p in model.visual_control.transformer.zero_modules.parameters():
            p.normal_(std=0.1)
    return model


def _daclip_outputs(model: DaCLIP, cfg: dict) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    size = cfg["vision_cfg"]["image_size"]
    image = torch.randn(2, 3, size, size, generator=gen)
    text = torch.randint(1, cfg["text_cfg"]["vocab_size"], (3, cfg["text_cfg"]["context_length"]), generator=gen)
    with torch.no_grad():
        return [*model.encode_image(image, control=True), model.encode_image(image), model.encode_text(text)]


def _unet_outputs(model: ConditionalUNet, cfg: dict) -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    x, cond = torch.rand(2, 1, cfg["in_nc"], 13, 10, generator=gen)
    context = torch.randn(2, 1, 16, generator=gen)
    with torch.no_grad():
        return model(x, cond, 7, text_context=context[0], image_context=context[1])


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.fixture(scope="module")
def two_heads_model():
    return _random_daclip(TWO_HEADS_CFG)


WRAPPINGS = {
    "plain": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd},
    "module": lambda sd: {f"module.{k}": v for k, v in sd.items()},
    "no-alias": lambda sd: {k: v for k, v in sd.items() if not k.startswith("visual.")},
    "state_dict+module": lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
}


@pytest.mark.parametrize("wrapping", list(WRAPPINGS))
def test_daclip_official_wrappings_load_strictly(wrapping, two_heads_model, tmp_path):
    path = tmp_path / "daclip.pt"
    torch.save(WRAPPINGS[wrapping](dict(two_heads_model.state_dict())), path)
    loaded = load_daclip(path, clip_cfg=TWO_HEADS_CFG)
    assert not loaded.training
    _assert_same_state(loaded, two_heads_model)
    for got, expected in zip(_daclip_outputs(loaded, TWO_HEADS_CFG), _daclip_outputs(two_heads_model, TWO_HEADS_CFG)):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_save_daclip_writes_the_official_layout_and_a_sidecar_for_unusual_heads(two_heads_model, tmp_path):
    path = tmp_path / "daclip.pt"
    save_daclip(two_heads_model, path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert type(state) is dict and list(state) == list(two_heads_model.state_dict())
    assert any(k.startswith("visual.") for k in state) and any(k.startswith("clip.visual.") for k in state)
    assert json.loads(path.with_suffix(".json").read_text())["clip_cfg"]["text_cfg"]["heads"] == 2

    loaded = load_daclip(path)  # no cfg: the sidecar gives the heads
    assert loaded.clip.transformer.resblocks[0].attn.num_heads == 2
    assert loaded.visual.transformer.resblocks[0].attn.num_heads == 2
    _assert_same_state(loaded, two_heads_model)
    for got, expected in zip(_daclip_outputs(loaded, TWO_HEADS_CFG), _daclip_outputs(two_heads_model, TWO_HEADS_CFG)):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_daclip_architecture_inferred_from_shapes(tmp_path):
    model = _random_daclip(DEFAULT_HEADS_CFG, seed=3)
    path = tmp_path / "custom.pt"
    save_daclip(model, path)
    assert not path.with_suffix(".json").exists()
    assert infer_clip_cfg(read_state_dict(path)) == DEFAULT_HEADS_CFG
    with pytest.warns(UserWarning, match="heads"):
        loaded = load_daclip(path)
    for got, expected in zip(_daclip_outputs(loaded, DEFAULT_HEADS_CFG), _daclip_outputs(model, DEFAULT_HEADS_CFG)):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["daclip_ViT-B-32", "daclip_ViT-L-14", "universal-ir", "wild-ir"])
def test_released_architectures_are_recognised(name):
    schema = SCHEMAS[name]
    with torch.device("meta"):
        model = DaCLIP(schema["config"]) if name.startswith("daclip") else ConditionalUNet(**schema["config"])
    state = model.state_dict()
    assert name in describe_checkpoint(state)
    if name.startswith("daclip"):
        inferred = infer_clip_cfg(state)
        assert inferred["text_cfg"] == schema["config"]["text_cfg"]
        assert inferred["vision_cfg"] == {**schema["config"]["vision_cfg"], "head_width": 64}
    else:
        assert infer_unet_cfg(state) == {"scale": 1, **schema["config"]}


def test_official_fixture_checkpoints_load():
    meta = json.loads((DATA / "official-a" / "meta.json").read_text())
    load_daclip(DATA / "official-a" / "daclip_tiny.pt", clip_cfg=meta["clip_cfg"])
    unet_state = read_state_dict(DATA / "official-a" / "unet_tiny.pth")
    assert infer_unet_cfg(unet_state) == {**meta["unet_cfg"], "scale": 1}
    assert isinstance(load_unet(DATA / "official-a" / "unet_tiny.pth"), ConditionalUNet)


@pytest.mark.parametrize("name", list(UNET_CFGS))
def test_unet_round_trip_and_inference(name, tmp_path):
    cfg = UNET_CFGS[name]
    torch.manual_seed(4)
    model = ConditionalUNet(**cfg).eval()
    path = tmp_path / "unet.pth"
    save_unet(model, path)
    assert infer_unet_cfg(read_state_dict(path)) == cfg
    loaded = load_unet(path)
    _assert_same_state(loaded, model)
    torch.testing.assert_close(_unet_outputs(loaded, cfg), _unet_outputs(model, cfg), rtol=0, atol=0)


@pytest.mark.parametrize("wrapping", ["state_dict", "module", "state_dict+module"])
def test_unet_official_wrappings(wrapping, tmp_path):
    cfg = UNET_CFGS["no-context"]
    model = ConditionalUNet(**cfg)
    path = tmp_path / "unet.pth"
    torch.save(WRAPPINGS[wrapping](dict(model.state_dict())), path)
    _assert_same_state(load_unet(path, unet_cfg=cfg), model)


def _truncated(path: Path) -> None:
    torch.save({"w": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:200])


class _Pickled:
    pass


@pytest.mark.parametrize(
    "write",
    [
        _truncated,
        lambda path: path.write_text("not a checkpoint"),
        lambda path: torch.save({"object": _Pickled()}, path),
        lambda path: torch.save({"a": 1}, path),
        lambda path: None,  # missing file
    ],
    ids=["truncated", "text", "pickled-object", "no-tensors", "missing"],
)
@pytest.mark.parametrize("load", [load_daclip, load_unet])
def test_unreadable_files_name_the_file(write, load, tmp_path):
    path = tmp_path / "broken-model.pt"
    write(path)
    with pytest.raises(CheckpointError, match="broken-model.pt"):
        load(path)


def test_daclip_of_another_architecture_lists_keys_and_shapes(two_heads_model, tmp_path):
    path = tmp_path / "small.pt"
    save_daclip(two_heads_model, path)
    with pytest.raises(CheckpointError) as info:
        load_daclip(path, clip_cfg=DEFAULT_HEADS_CFG)
    message = str(info.value)
    assert "small.pt" in message
    assert "the file holds DA-CLIP (embed_dim 16" in message  # detected architecture
    assert "unexpected keys" not in message and "missing keys: clip.visual.transformer.resblocks.2." in message
    assert "clip.positional_embedding (expected [12, 64], found [16, 32])" in message


def test_unet_file_given_to_load_daclip(tmp_path):
    path = tmp_path / "restorer.pth"
    save_unet(ConditionalUNet(**UNET_CFGS["wild"]), path)
    with pytest.raises(CheckpointError, match=r"restorer.pth is not a DA-CLIP checkpoint.*ConditionalUNet\("):
        load_daclip(path)


def test_unet_of_another_architecture(tmp_path):
    path = tmp_path / "unet.pth"
    save_unet(ConditionalUNet(**UNET_CFGS["universal"]), path)
    with pytest.raises(CheckpointError) as info:
        load_unet(path, unet_cfg=UNET_CFGS["wild"])
    message = str(info.value)
    assert "unet.pth" in message and "missing keys: downsample.weight" in message
    assert "unexpected keys: prompt" in message


def test_differing_visual_alias_is_an_error(two_heads_model, tmp_path):
    state = copy.deepcopy(dict(two_heads_model.state_dict()))
    state["visual.proj"] = state["visual.proj"] + 1
    path = tmp_path / "alias.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="visual.proj"):
        load_daclip(path, clip_cfg=TWO_HEADS_CFG)


def test_saving_is_reproducible_and_leaves_no_partial_file(tmp_path):
    """The same weights give the same bytes, whatever the file is called (provenance pins SHA-256)."""
    torch.manual_seed(4)
    model = ConditionalUNet(**UNET_CFGS["universal"]).eval()
    save_unet(model, tmp_path / "a.pth")
    save_unet(model, tmp_path / "other name.pth")
    assert (tmp_path / "a.pth").read_bytes() == (tmp_path / "other name.pth").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pth", "other name.pth"]
