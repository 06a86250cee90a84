"""DA-CLIP module: official checkpoint layout, control injection, classifier, preprocessing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from daclip_plugin.errors import InvalidImageError
from daclip_plugin.nn.daclip import (
    DEGRADATIONS,
    DaCLIP,
    DegradationClassifier,
    clip_views,
    preprocess,
    tile_origins,
    tokenize,
)

SCHEMAS = json.loads((Path(__file__).parent / "data" / "checkpoint_schemas.json").read_text())
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = DaCLIP(TINY_CFG).eval()
    with torch.no_grad():
        for zero in model.visual_control.transformer.zero_modules:
            zero.weight.normal_(std=0.2)
            zero.bias.normal_(std=0.2)
    return model


@pytest.mark.parametrize("name", ["daclip_ViT-B-32", "daclip_ViT-L-14"])
def test_state_dict_matches_the_released_checkpoints(name):
    with torch.device("meta"):
        model = DaCLIP(SCHEMAS[name]["config"])
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert shapes == SCHEMAS[name]["state_dict"]


def test_visual_is_an_alias_and_zero_modules_start_at_zero():
    model = DaCLIP(TINY_CFG)
    assert model.visual is model.clip.visual
    zeros = model.visual_control.transformer.zero_modules
    assert len(zeros) == TINY_CFG["vision_cfg"]["layers"]
    assert all(not p.any() for p in zeros.parameters())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        image_features, degra_features = model.encode_image(x, control=True)
        plain = model.encode_image(x)
    # zero controller hiddens leave the CLIP tower unchanged, and the controller is its copy
    torch.testing.assert_close(image_features, plain)
    torch.testing.assert_close(degra_features, plain)


def test_block_j_receives_the_controller_hidden_popped_from_the_end(tiny_model):
    x = torch.randn(1, 3, 32, 32)
    controller, visual = tiny_model.visual_control, tiny_model.visual
    with torch.no_grad():
        tokens = controller._embeds(x)
        hiddens = []
        for block, zero in zip(controller.transformer.transformer.resblocks, controller.transformer.zero_modules):
            tokens = block(tokens)
            hiddens.append(zero(tokens))
        y = visual._embeds(x)
        blocks = visual.transformer.resblocks
        for j, block in enumerate(blocks):
            y = block(y) + hiddens[len(blocks) - 1 - j]
        expected = visual._pool(y)[0] @ visual.proj
        image_features, _ = tiny_model.encode_image(x, control=True)
    torch.testing.assert_close(image_features, expected)
    assert not torch.allclose(image_features, tiny_model.encode_image(x))


def test_normalize_gives_unit_vectors(tiny_model):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = tiny_model.encode_image(x, control=True, normalize=True)
        text = tiny_model.encode_text(tokenize(["a", "b"]), normalize=True)
    for f in (*features, text):
        torch.testing.assert_close(f.norm(dim=-1), torch.ones(len(f)))


def test_tokenize():
    tokens = tokenize(DEGRADATIONS)
    assert tokens.shape == (10, 77) and tokens.dtype == torch.int64
    assert torch.equal(tokenize("hazy"), tokens[1:2])


def test_classifier_with_default_prompts(tiny_model):
    classifier = DegradationClassifier(tiny_model)
    assert classifier.prompts == DEGRADATIONS
    probs = classifier.probabilities(torch.randn(3, 3, 32, 32))
    assert probs.shape == (3, 10)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3))


def test_classifier_with_user_prompts(tiny_model):
    prompts = ["a foggy photo", "rainy", "a photo with scratches"]
    classifier = DegradationClassifier(tiny_model, prompts)
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    estimate = classifier.estimate(image)
    with torch.no_grad():
        image_context, degra_context = tiny_model.encode_image(preprocess(image, 32), control=True)
        text = tiny_model.encode_text(tokenize(prompts), normalize=True)
    torch.testing.assert_close(estimate.image_context, image_context)
    torch.testing.assert_close(estimate.degra_context, degra_context)
    cosine = torch.nn.functional.normalize(degra_context, dim=-1) @ text.T
    torch.testing.assert_close(estimate.probs, (100 * cosine).softmax(dim=-1))

    result = classifier.classify(image)
    assert list(result) == prompts
    assert sum(result.values()) == pytest.approx(1.0, abs=1e-6)


def test_classifier_needs_prompts(tiny_model):
    with pytest.raises(ValueError):
        DegradationClassifier(tiny_model, [])


@pytest.mark.parametrize(
    "length, origins", [(32, [0]), (33, [0]), (64, [0, 32]), (70, [0, 16, 32]), (96, [0, 32, 64]), (1000, [0, 480, 968])]
)
def test_tile_origins_spread_up_to_three_tiles_on_the_jpeg_grid(length, origins):
    assert tile_origins(length, 32) == origins
    assert all(o % 8 == 0 and o + 32 <= length for o in origins)


def test_tiles_view_takes_unresized_tiles():
    image = np.random.default_rng(1).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    tiles = clip_views(image, 32, "tiles")
    assert tiles.shape == (9, 3, 32, 32)  # rows at 0, 16, 32; columns at 0, 32, 64
    expected = preprocess(image[32:64, 64:96], 32)[0]
    assert any(torch.equal(tile, expected) for tile in tiles)
    torch.testing.assert_close(clip_views(image, 32), preprocess(image, 32))
    torch.testing.assert_close(clip_views(image[:20], 32, "tiles"), preprocess(image[:20], 32))  # too small: resized
    with pytest.raises(ValueError, match="unknown DA-CLIP view"):
        clip_views(image, 32, "crop")
    with pytest.raises(InvalidImageError):
        clip_views(image.astype(np.float32), 32, "tiles")


def test_classifier_tiles_view_averages_the_tiles_features(tiny_model):
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    estimate = DegradationClassifier(tiny_model, view="tiles").estimate(image)
    with torch.no_grad():
        content, degra = tiny_model.encode_image(clip_views(image, 32, "tiles"), control=True)
    assert estimate.degra_context.shape == (1, degra.shape[1])
    torch.testing.assert_close(estimate.image_context, content.mean(0, keepdim=True))
    torch.testing.assert_close(estimate.degra_context, degra.mean(0, keepdim=True))
    text = tiny_model.encode_text(tokenize(DEGRADATIONS), normalize=True)
    # the probabilities are those of the mean feature that steers the UNet, not tile votes
    mean_probs = (100 * torch.nn.functional.normalize(degra.mean(0, keepdim=True), dim=-1) @ text.T).softmax(dim=-1)
    torch.testing.assert_close(estimate.probs, mean_probs)
    with pytest.raises(ValueError, match="unknown DA-CLIP view"):
        DegradationClassifier(tiny_model, view="crops")


def test_preprocess_crops_the_centre_of_non_square_images():
    image = np.random.default_rng(1).integers(0, 256, (32, 80, 3), dtype=np.uint8)
    x = preprocess(image, resolution=32)  # shorter side already 32: no resampling
    centre = image[:, 24:56] / 255.0
    expected = ((centre - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)
    tall = preprocess(np.ascontiguousarray(image.transpose(1, 0, 2)), resolution=32)
    np.testing.assert_allclose(tall.numpy(), expected.transpose(0, 1, 3, 2), atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 5, 3), (7, 2, 3)])
def test_preprocess_upsamples_small_images(shape):
    image = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    x = preprocess(image)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    assert torch.isfinite(x).all()


def test_preprocess_accepts_pil_grayscale_and_rgba():
    rgb = np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    expected = preprocess(rgb, 24)
    torch.testing.assert_close(preprocess(Image.fromarray(rgb), 24), expected)
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 7, np.uint8)], axis=2)
    torch.testing.assert_close(preprocess(rgba, 24), expected)
    gray = rgb[:, :, 0]
    torch.testing.assert_close(preprocess(gray, 24), preprocess(np.repeat(gray[:, :, None], 3, 2), 24))


@pytest.mark.parametrize(
    "image",
    [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((0, 4, 3), np.uint8)],
)
def test_preprocess_rejects_unsupported_images(image):
    with pytest.raises(InvalidImageError):
        preprocess(image)
