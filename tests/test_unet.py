"""Tests of the conditional UNet: checkpoint layout, attention, padding and odd input sizes."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from daclip_plugin.nn.unet import ConditionalUNet, MultiHeadAttention, pad_to_multiple

DATA = Path(__file__).parent / "data"
SCHEMAS = json.loads((DATA / "checkpoint_schemas.json").read_text())
# A small model of the official structure (the reference fixture's configuration).
TINY = dict(in_nc=3, out_nc=3, nf=32, ch_mult=[1, 1, 1, 2], context_dim=32,
            use_degra_context=True, use_image_context=True)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_model(**overrides) -> ConditionalUNet:
    """A randomly initialised small UNet in eval mode."""
    return ConditionalUNet(**{**TINY, **overrides}).eval()


def inputs(batch: int, height: int, width: int, context_dim: int = 32):
    """Random xt, cond, degradation and image contexts."""
    return (torch.randn(batch, 3, height, width), torch.rand(batch, 3, height, width),
            torch.randn(batch, context_dim), torch.randn(batch, context_dim))


@pytest.mark.parametrize("name", ["universal-ir", "wild-ir"])
def test_state_dict_matches_official_checkpoint_schema(name):
    schema = SCHEMAS[name]
    with torch.device("meta"):
        model = ConditionalUNet(**schema["config"])
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert shapes == schema["state_dict"]


@pytest.mark.parametrize("tokens, context_tokens", [(37, None), (12, 5), (9, 1)])
def test_attention_equals_naive_softmax_attention(tokens, context_tokens):
    heads, head_dim, dim, context_dim = 3, 8, 20, 12
    attn = MultiHeadAttention(dim, heads, head_dim, None if context_tokens is None else context_dim)
    x = torch.randn(2, tokens, dim)
    context = None if context_tokens is None else torch.randn(2, context_tokens, context_dim)
    source = x if context is None else context

    def heads_first(t):
        return t.reshape(2, t.shape[1], heads, head_dim).transpose(1, 2)

    q, k, v = heads_first(attn.to_q(x)), heads_first(attn.to_k(source)), heads_first(attn.to_v(source))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
    expected = attn.to_out((weights @ v).transpose(1, 2).reshape(2, tokens, heads * head_dim))
    with torch.no_grad():
        torch.testing.assert_close(attn(x, context), expected.detach(), rtol=1e-5, atol=1e-6)


def test_padding_equals_reflect_padding_where_that_works():
    x = torch.randn(2, 3, 9, 13)
    for multiple in (2, 4, 8, 16):
        padded_h = math.ceil(9 / multiple) * multiple
        padded_w = math.ceil(13 / multiple) * multiple
        expected = F.pad(x, (0, padded_w - 13, 0, padded_h - 9), mode="reflect")
        assert torch.equal(pad_to_multiple(x, multiple), expected)
    same = torch.randn(1, 2, 32, 16)
    assert pad_to_multiple(same, 16) is same


def test_padding_of_tiny_images_repeats_reflections():
    row = torch.arange(3.0).reshape(1, 1, 1, 3)
    padded = pad_to_multiple(row, 8)
    assert padded.shape == (1, 1, 8, 8)
    assert padded[0, 0, 0].tolist() == [0, 1, 2, 1, 0, 1, 2, 1]
    assert torch.equal(padded[0, 0], padded[0, 0, :1].expand(8, 8))  # a 1-pixel height repeats


@torch.no_grad()
def test_unet_pads_like_the_official_reflect_padding():
    model = tiny_model()
    xt, cond, degra, image = inputs(1, 21, 35)
    padding = (0, 48 - 35, 0, 32 - 21)
    expected = model(F.pad(xt, padding, mode="reflect"), F.pad(cond, padding, mode="reflect"),
                     37, text_context=degra, image_context=image)[..., :21, :35]
    torch.testing.assert_close(model(xt, cond, 37, text_context=degra, image_context=image),
                               expected, rtol=0, atol=0)


@torch.no_grad()
@pytest.mark.parametrize("size", [(1, 1), (5, 7), (17, 33)])
@pytest.mark.parametrize("scale", [1, 0.5])
def test_any_size_gives_same_size_finite_output(size, scale):
    model = tiny_model(scale=scale)
    xt, cond, degra, image = inputs(2, *size)
    out = model(xt, cond, 50, text_context=degra, image_context=image)
    assert out.shape == xt.shape
    assert torch.isfinite(out).all()


@torch.no_grad()
def test_batch_items_are_independent_and_time_broadcasts():
    model = tiny_model()
    xt, cond, degra, image = inputs(2, 16, 24)
    times = torch.tensor([3, 80])
    together = model(xt, cond, times, text_context=degra, image_context=image)
    for i in range(2):
        alone = model(xt[i:i + 1], cond[i:i + 1], int(times[i]), degra[i:i + 1], image[i:i + 1])
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-5, atol=1e-6)
    scalar = model(xt, cond, torch.tensor(80), text_context=degra, image_context=image)
    torch.testing.assert_close(scalar[1:], together[1:], rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_contexts_change_the_output_only_where_configured():
    xt, cond, degra, image = inputs(1, 16, 16)
    model = tiny_model()
    base = model(xt, cond, 10, text_context=degra, image_context=image)
    assert not torch.allclose(base, model(xt, cond, 10, text_context=None, image_context=image))
    assert not torch.allclose(base, model(xt, cond, 10, text_context=degra, image_context=-image))
    plain = tiny_model(use_degra_context=False, use_image_context=False)
    torch.testing.assert_close(plain(xt, cond, 10, degra, image), plain(xt, cond, 10), rtol=0, atol=0)


def test_rejects_unknown_scale():
    with pytest.raises(ValueError, match="scale"):
        ConditionalUNet(**TINY, scale=0.25)


@pytest.mark.parametrize(
    "ch_mult, scale, transformer_levels",
    [([1, 2], 1, []), ([1, 1, 2], 1, []), ([1, 1, 1, 2, 2], 1, [3, 4]), ([1, 1, 2], 0.5, [2])],
)
def test_spatial_transformers_sit_where_the_official_code_puts_them(ch_mult, scale, transformer_levels):
    with torch.device("meta"):
        model = ConditionalUNet(3, 3, 32, ch_mult, context_dim=32, use_image_context=True, scale=scale)
    keys = model.state_dict().keys()
    found = sorted({int(k.split(".")[1]) for k in keys if k.startswith("downs.") and ".transformer_blocks." in k})
    assert found == transformer_levels
    assert any(k.startswith("mid_attn.fn.fn.transformer_blocks.") for k in keys)


def test_inference_path_equals_the_autograd_path(monkeypatch):
    """In inference the UNet works in place and streams linear attention; same numbers."""
    from daclip_plugin.nn.unet import LinearAttention

    model = tiny_model()
    x, cond, text, image = inputs(1, 40, 52)
    with torch.enable_grad():
        reference = model(x, cond, 7.5, text_context=text, image_context=image).detach()
    monkeypatch.setattr(LinearAttention, "CHUNK", 97)  # streamed at every level, in uneven chunks
    with torch.no_grad():
        streamed = model(x, cond, 7.5, text_context=text, image_context=image)
    torch.testing.assert_close(streamed, reference, rtol=1e-5, atol=1e-5)
    originals = [t.clone() for t in (x, cond, text, image)]
    with torch.no_grad():
        model(x, cond, 7.5, text_context=text, image_context=image)
    assert all(torch.equal(a, b) for a, b in zip((x, cond, text, image), originals))  # inputs untouched


def test_linear_attention_streamed_over_pixels_equals_one_pass(monkeypatch):
    from daclip_plugin.nn.unet import LinearAttention

    attention = LinearAttention(24, heads=3, head_dim=8).eval()
    x = torch.randn(2, 24, 13, 17) * 4  # large logits: the running maximum matters
    with torch.enable_grad():
        reference = attention(x).detach()
    monkeypatch.setattr(LinearAttention, "CHUNK", 50)
    with torch.no_grad():
        streamed = attention(x)
        torch.testing.assert_close(streamed, reference, rtol=1e-5, atol=1e-6)
        assert streamed.is_contiguous()  # in the input's memory format
        last = attention(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(last, reference, rtol=1e-5, atol=1e-6)
    assert last.is_contiguous(memory_format=torch.channels_last)


def test_channel_norm_of_channels_last_input_is_the_same():
    from daclip_plugin.nn.unet import ChannelLayerNorm

    norm = ChannelLayerNorm(6)
    with torch.no_grad():
        norm.g.uniform_(0.5, 2)
        x = torch.randn(2, 6, 5, 7) * 3 + 1
        expected = norm(x)
        fused = norm(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(norm(x.contiguous(memory_format=torch.channels_last)), norm(x), rtol=1e-5, atol=1e-6)


def test_working_memory_per_pixel_scales_with_the_width():
    small, large = tiny_model(), tiny_model(nf=64)
    assert large.working_bytes_per_pixel() == 2 * small.working_bytes_per_pixel()
    assert small.working_bytes_per_pixel() == ConditionalUNet.WORKING_TENSORS * 32 * 4
