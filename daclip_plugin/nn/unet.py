"""Conditional UNet of DA-CLIP: the noise predictor of the IR-SDE restoration model.

The module tree mirrors the official implementation, so the released checkpoints
(``universal-ir.pth``, ``universal-ir-mix.pth``, ``wild-ir.pth``) load strictly, and the
forward pass computes the same numbers. Two things differ on purpose: the spatial
transformer's self-attention runs through ``scaled_dot_product_attention`` (no N x N
attention map in memory), and inputs smaller than the padding multiple are padded by
repeated reflection instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HEAD_DIM = 32
"""Channels per attention head in the spatial transformers (fixed by the official model)."""


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention of ``q`` to ``k``/``v``, shaped (batch, heads, tokens, head_dim).

    Uses the memory-efficient kernels of ``scaled_dot_product_attention``; the benchmark
    swaps this function for a naive one to compare.
    """
    return F.scaled_dot_product_attention(q, k, v)


def _reflect_indices(size: int, padded: int, device: torch.device) -> Tensor:
    """Indices ``0..padded-1`` folded into ``0..size-1`` by repeated mirror reflection.

    Equal to ``F.pad(..., mode="reflect")`` whenever that works (pad < size); a size of 1
    repeats its only pixel.
    """
    index = torch.arange(padded, device=device)
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index % period
    return torch.where(index < size, index, period - index)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Reflect-pad the bottom and right of ``x`` (..., H, W) up to multiples of ``multiple``."""
    height, width = x.shape[-2:]
    padded_h = math.ceil(height / multiple) * multiple
    padded_w = math.ceil(width / multiple) * multiple
    if (padded_h, padded_w) == (height, width):
        return x
    x = x.index_select(-2, _reflect_indices(height, padded_h, x.device))
    return x.index_select(-1, _reflect_indices(width, padded_w, x.device))


def conv(dim_in: int, dim_out: int, kernel_size: int = 3) -> nn.Conv2d:
    """Bias-free "same" convolution, the official ``default_conv``."""
    return nn.Conv2d(dim_in, dim_out, kernel_size, padding=kernel_size // 2, bias=False)


def downsample(dim_in: int, dim_out: int) -> nn.Conv2d:
    """Halve the resolution with a 4x4 stride-2 convolution."""
    return nn.Conv2d(dim_in, dim_out, 4, 2, 1)


def upsample(dim_in: int, dim_out: int) -> nn.Sequential:
    """Double the resolution: nearest-neighbour upsampling, then a 3x3 convolution."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(dim_in, dim_out, 3, 1, 1))


class SinusoidalEmbedding(nn.Module):
    """Sinusoidal embedding of a 1-D tensor of timesteps: ``[sin(t f), cos(t f)]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, time: Tensor) -> Tensor:
        half = self.dim // 2
        step = math.log(10000) / (half - 1)
        freqs = torch.exp(torch.arange(half, device=time.device) * -step)
        angles = time[:, None] * freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _inference() -> bool:
    """No autograd here: intermediate tensors may be modified in place (same results, less memory)."""
    return not torch.is_grad_enabled()


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of an image tensor, with a gain and no bias."""

    def __init__(self, dim: int):
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))

    @staticmethod
    def _eps(x: Tensor) -> float:
        return 1e-5 if x.dtype == torch.float32 else 1e-3

    def over_last_axis(self, x: Tensor) -> Tensor:
        """The norm of ``x`` laid out ``(..., channels)``: one fused ``layer_norm`` pass."""
        normed = F.layer_norm(x, (x.shape[-1],), eps=self._eps(x))
        gain = self.g.view(-1)
        return normed.mul_(gain) if _inference() else normed * gain

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # channels last: each pixel's channels are contiguous, so the (free) NHWC view
            # takes the fused norm over its last axis
            return self.over_last_axis(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        eps = self._eps(x)
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        if _inference():  # the same operations, in place: one full-size tensor instead of three
            return (x - mean).mul_((var + eps).rsqrt()).mul_(self.g)
        return (x - mean) * (var + eps).rsqrt() * self.g


class ConvBlock(nn.Module):
    """Convolution, optional FiLM modulation ``x (1 + scale) + shift``, then SiLU."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = conv(dim_in, dim_out)

    def forward(self, x: Tensor, scale_shift: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = self.proj(x)
        inplace = _inference()  # x is new here: modify it rather than allocate more of its size
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x.mul_(scale + 1).add_(shift) if inplace else x * (scale + 1) + shift
        return F.silu(x, inplace=inplace)


class ResBlock(nn.Module):
    """Two convolution blocks with a residual connection, modulated by the time embedding."""

    def __init__(self, dim_in: int, dim_out: int, time_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, dim_out * 2))
        self.block1 = ConvBlock(dim_in, dim_out)
        self.block2 = ConvBlock(dim_out, dim_out)
        self.res_conv = conv(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: Tensor, time_emb: Tensor) -> Tensor:
        scale_shift = self.mlp(time_emb)[:, :, None, None].chunk(2, dim=1)
        h = self.block2(self.block1(x, scale_shift))
        return h.add_(self.res_conv(x)) if _inference() else h + self.res_conv(x)


class LinearAttention(nn.Module):
    """Linear attention (softmax over channels for queries, over pixels for keys).

    Its queries, keys and values have ``3 * heads * head_dim`` channels (384: twelve times
    the tiny model's width) at the full resolution of the level. In inference, large inputs
    are therefore streamed over pixels, :data:`CHUNK` at a time: the keys' softmax over all
    pixels is accumulated online (as in flash attention), and queries, output projection and
    norm act on one chunk at a time. Same result, to float32 rounding.
    """

    #: Pixels per chunk when streaming.
    CHUNK = 16384

    def __init__(self, dim: int, heads: int = 4, head_dim: int = 32):
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        self.to_qkv = nn.Conv2d(dim, heads * head_dim * 3, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(heads * head_dim, dim, 1), ChannelLayerNorm(dim))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Attend over ``x``; ``context`` is accepted for a uniform interface and ignored."""
        if _inference() and x.shape[-2] * x.shape[-1] > self.CHUNK:
            return self._streamed(x)
        b, _, h, w = x.shape
        qkv = self.to_qkv(x).reshape(b, 3, self.heads, self.head_dim, h * w)
        q, k, v = qkv.unbind(1)
        q = q.softmax(dim=-2) * self.head_dim**-0.5
        k = k.softmax(dim=-1)
        v = v / (h * w)
        summary = k @ v.transpose(-1, -2)  # (b, heads, d, e)
        out = summary.transpose(-1, -2) @ q  # (b, heads, e, n)
        return self.to_out(out.reshape(b, self.heads * self.head_dim, h, w))

    def _streamed(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        n, heads, d = h * w, self.heads, self.head_dim
        rows = x.flatten(2).transpose(1, 2)  # (b, n, c): a view of a channels-last x
        w_q, w_k, w_v = self.to_qkv.weight[:, :, 0, 0].chunk(3, dim=0)

        def per_head(part: Tensor, weight: Tensor) -> Tensor:  # (b, m, c) -> (b, heads, d, m)
            return F.linear(part, weight).unflatten(-1, (heads, d)).permute(0, 2, 3, 1)

        # keys and values: softmax over every pixel, accumulated with a running maximum
        peak = x.new_full((b, heads, d, 1), float("-inf"))
        total = x.new_zeros((b, heads, d, 1))
        summary = x.new_zeros((b, heads, d, d))
        for start in range(0, n, self.CHUNK):
            part = rows[:, start:start + self.CHUNK]
            k, v = per_head(part, w_k), per_head(part, w_v) / n
            new_peak = torch.maximum(peak, k.amax(dim=-1, keepdim=True))
            rescale = torch.exp(peak - new_peak)
            weights = torch.exp(k - new_peak)
            total = total * rescale + weights.sum(dim=-1, keepdim=True)
            summary = summary * rescale + weights @ v.transpose(-1, -2)
            peak = new_peak
        summary = (summary / total).transpose(-1, -2)  # (b, heads, e, d)
        # queries, output projection and norm, a chunk of pixels at a time, channels last
        project, norm = self.to_out
        out = x.new_empty((b, n, c))
        for start in range(0, n, self.CHUNK):
            q = per_head(rows[:, start:start + self.CHUNK], w_q).softmax(dim=-2) * d**-0.5
            mixed = (summary @ q).flatten(1, 2).transpose(1, 2)  # (b, m, heads * d)
            projected = F.linear(mixed, project.weight[:, :, 0, 0], project.bias)
            out[:, start:start + self.CHUNK] = norm.over_last_axis(projected)
        result = out.unflatten(1, (h, w)).permute(0, 3, 1, 2)  # channels-last memory
        return result if x.is_contiguous(memory_format=torch.channels_last) else result.contiguous()


class MultiHeadAttention(nn.Module):
    """Multi-head softmax attention of tokens ``x`` to ``context`` (to ``x`` itself if None)."""

    def __init__(self, dim: int, heads: int, head_dim: int = HEAD_DIM, context_dim: int | None = None):
        super().__init__()
        inner = heads * head_dim
        context_dim = dim if context_dim is None else context_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim))

    def _split_heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        context = x if context is None else context
        if context.shape[1] == 1:
            # A softmax over one key is exactly 1: every query receives that token's value,
            # so queries and keys drop out of the result.
            return self.to_out(self.to_v(context)).expand(-1, x.shape[1], -1)
        q, k, v = (self._split_heads(t) for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        out = attention(q, k, v).transpose(1, 2).flatten(2)
        return self.to_out(out)


class GEGLU(nn.Module):
    """Linear projection to twice the width, gated by the GELU of its second half."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: Tensor) -> Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward network with a 4x hidden width."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        # The identity stands where the official model has a no-op dropout, keeping key names.
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention to the context, and feed-forward."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int):
        super().__init__()
        self.attn1 = MultiHeadAttention(dim, heads, head_dim)
        self.ff = FeedForward(dim)
        self.attn2 = MultiHeadAttention(dim, heads, head_dim, context_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Transformer over the pixels of an image tensor, with a residual connection.

    Without context, the cross-attention falls back to self-attention, as in the official
    model (which only works when ``context_dim`` equals the width).
    """

    def __init__(self, channels: int, heads: int, head_dim: int, context_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, head_dim, context_dim)])
        self.proj_out = nn.Conv2d(inner, channels, 1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        b, _, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        return x + self.proj_out(tokens.transpose(1, 2).reshape(b, -1, h, w))


class PreNorm(nn.Module):
    """Apply :class:`ChannelLayerNorm`, then ``fn``."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.fn = fn
        self.norm = ChannelLayerNorm(dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.fn(self.norm(x), context)


class Residual(nn.Module):
    """``x + fn(x, context)``."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.fn(x, context).add_(x) if _inference() else x + self.fn(x, context)


class ConditionalUNet(nn.Module):
    """DA-CLIP's conditional UNet, predicting the noise of the state ``xt`` given ``cond``.

    Arguments follow the official ``ConditionalUNet`` configuration keys. ``context_dim``
    is the DA-CLIP embedding width (``None`` or 0: no context). ``use_degra_context`` adds
    the degradation embedding to the time embedding; ``use_image_context`` puts spatial
    transformers attending to the image embedding in the middle and at the levels the
    official code gives them (from the fourth level on for the universal model, the deepest
    level for the wild model; the two agree for the released four-level models), with
    linear attention everywhere else. ``scale=0.5`` (the wild-ir model) runs the levels at
    half resolution, with an extra down/upsampling around them.
    """

    def __init__(
        self,
        in_nc: int,
        out_nc: int,
        nf: int,
        ch_mult: Sequence[int] = (1, 2, 4, 4),
        context_dim: int | None = 512,
        use_degra_context: bool = True,
        use_image_context: bool = False,
        scale: float = 1,
    ):
        super().__init__()
        if scale not in (1, 0.5):
            raise ValueError(f"scale must be 1 or 0.5, got {scale!r}")
        context_dim = context_dim or 0
        self.context_dim = context_dim  #: the DA-CLIP feature width it is conditioned on (0: none)
        self.depth = len(ch_mult)
        self.scale = scale
        self.use_degra_context = use_degra_context and context_dim > 0
        self.use_image_context = use_image_context and context_dim > 0
        time_dim = nf * 4

        self.init_conv = conv(in_nc * 2, nf, 7)
        if scale == 0.5:
            self.downsample = downsample(nf, nf)
            self.upsample = upsample(nf, nf)
        self.time_mlp = nn.Sequential(
            SinusoidalEmbedding(nf), nn.Linear(nf, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)
        )
        if self.use_degra_context:
            self.prompt = nn.Parameter(torch.rand(1, time_dim))
            self.text_mlp = nn.Sequential(
                nn.Linear(context_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
            )
            self.prompt_mlp = nn.Linear(time_dim, time_dim)

        def attention_block(dim: int, transformer: bool) -> Residual:
            if transformer and self.use_image_context:
                block = SpatialTransformer(dim, dim // HEAD_DIM, HEAD_DIM, context_dim)
            else:
                block = LinearAttention(dim)
            return Residual(PreNorm(dim, block))

        dims = [nf * m for m in [1, *ch_mult]]
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, (dim_in, dim_out) in enumerate(zip(dims[:-1], dims[1:])):
            deepest = i == self.depth - 1
            transformer = deepest if scale == 0.5 else i >= 3
            self.downs.append(nn.ModuleList([
                ResBlock(dim_in, dim_in, time_dim),
                ResBlock(dim_in, dim_in, time_dim),
                attention_block(dim_in, transformer),
                conv(dim_in, dim_out) if deepest else downsample(dim_in, dim_out),
            ]))
            self.ups.insert(0, nn.ModuleList([
                ResBlock(dim_out + dim_in, dim_out, time_dim),
                ResBlock(dim_out + dim_in, dim_out, time_dim),
                attention_block(dim_out, transformer),
                conv(dim_out, dim_in) if i == 0 else upsample(dim_out, dim_in),
            ]))

        mid_dim = dims[-1]
        self.mid_block1 = ResBlock(mid_dim, mid_dim, time_dim)
        self.mid_attn = attention_block(mid_dim, True)
        self.mid_block2 = ResBlock(mid_dim, mid_dim, time_dim)
        self.final_res_block = ResBlock(nf * 2, nf, time_dim)
        self.final_conv = nn.Conv2d(nf, out_nc, 3, 1, 1)

    #: The peak working memory of one inference call, in full-resolution float32 tensors of
    #: ``nf`` channels (measured with benchmarks/bench_memory.py: 10-12 for the tiny,
    #: universal-ir and wild-ir UNets at 512 px; rounded up).
    WORKING_TENSORS = 13

    def working_bytes_per_pixel(self) -> int:
        """Bytes of working memory one call needs per pixel of its input (see :data:`WORKING_TENSORS`)."""
        return self.WORKING_TENSORS * self.init_conv.out_channels * 4

    def _embed(self, xt: Tensor, time: Tensor | float, text_context: Tensor | None) -> Tensor:
        """Time embedding, plus the degradation prompt embedding when there is one."""
        time = torch.as_tensor(time, device=xt.device).reshape(-1)
        emb = self.time_mlp(time.to(xt.dtype))
        if self.use_degra_context and text_context is not None:
            weights = torch.softmax(self.text_mlp(text_context), dim=1)
            emb = emb + self.prompt_mlp(weights * self.prompt)
        return emb

    def forward(
        self,
        xt: Tensor,
        cond: Tensor,
        time: Tensor | float,
        text_context: Tensor | None = None,
        image_context: Tensor | None = None,
    ) -> Tensor:
        """Predict the noise in ``xt`` (B, C, H, W), given the low-quality image ``cond``.

        ``time`` is a number, or a tensor of one or B timesteps. ``text_context`` is the
        DA-CLIP degradation embedding and ``image_context`` the content embedding, each
        (B, context_dim); either may be None. Any H and W work: the input is padded
        bottom/right to a multiple of ``2 ** len(ch_mult)`` and the output cropped back.
        """
        height, width = xt.shape[-2:]
        x = pad_to_multiple(torch.cat([xt - cond, cond], dim=1), 2**self.depth)
        x = self.init_conv(x)
        full_res = x
        if self.scale == 0.5:
            x = self.downsample(x)

        t = self._embed(xt, time, text_context)
        context = image_context[:, None] if self.use_image_context and image_context is not None else None

        skips = []
        for block1, block2, attn, down in self.downs:
            x = block1(x, t)
            skips.append(x)
            x = attn(block2(x, t), context)
            skips.append(x)
            x = down(x)

        x = self.mid_block1(x, t)
        x = self.mid_attn(x, context)
        x = self.mid_block2(x, t)

        for block1, block2, attn, up in self.ups:
            x = torch.cat([x, skips.pop()], dim=1)  # rebinding x frees the parts at once
            x = block1(x, t)
            x = torch.cat([x, skips.pop()], dim=1)
            x = block2(x, t)
            x = up(attn(x, context))

        if self.scale == 0.5:
            x = self.upsample(x)
        x = self.final_res_block(torch.cat([x, full_res], dim=1), t)
        return self.final_conv(x)[..., :height, :width]
