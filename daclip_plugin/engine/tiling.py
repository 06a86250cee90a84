"""Overlapping tiles: run a network on large images in pieces, blending the seams.

Used per sampling step, so every step sees one consistent full-size state and only the
network's working memory is bounded by the tile size.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Optional

import torch
from torch import Tensor

from ..steps import Step, Steps, finish

DEFAULT_OVERLAP = 64
#: The smallest tile, and the most tiles a run may cut an image into.
MIN_TILE = 32
MAX_TILES = 4096
#: Tiles chosen for a memory budget: a multiple of this, and never smaller than BUDGET_MIN_TILE
#: (smaller tiles would see too little of the image).
BUDGET_STEP, BUDGET_MIN_TILE = 64, 128


def budget_tile(budget: int, bytes_per_pixel: int) -> int:
    """The largest square tile whose working memory fits ``budget`` bytes."""
    side = int(math.sqrt(max(budget, 0) / max(bytes_per_pixel, 1)))
    return max(BUDGET_MIN_TILE, side // BUDGET_STEP * BUDGET_STEP)


def balanced_tile(size: int, largest: int, overlap: int) -> int:
    """The smallest tile (a multiple of 16 from :data:`BUDGET_MIN_TILE` to ``largest``) needing as
    few tiles along ``size`` as ``largest``.

    Tiles of the largest size that fits would waste work: a 1024 px side in 640 px tiles
    computes 1280 px; two 544 px tiles do the same job.
    """
    overlap = min(overlap, largest // 4)
    if largest >= size:
        return largest
    count = math.ceil((size - overlap) / (largest - overlap))
    tile = math.ceil((size - overlap) / count) + overlap
    return min(largest, max(BUDGET_MIN_TILE, -(-tile // 16) * 16))


def resolve_tile_size(
    shape, tile_size: Optional[int], overlap: int, bytes_per_pixel: int, budget: int
) -> tuple[int, int]:
    """The ``(tile size, overlap)`` for an image of ``shape`` (H, W); a tile size 0 means one pass.

    ``None`` decides by memory: one pass if ``H * W * bytes_per_pixel`` fits ``budget``
    bytes, else tiles that do (see :func:`budget_tile`), as few and as small as the image
    allows (see :func:`balanced_tile`). The overlap is at most a
    quarter of the tile, and a tile size that would cut the image into more than
    :data:`MAX_TILES` tiles (a practical hang) is refused.
    """
    if tile_size is None:
        fits = shape[0] * shape[1] * bytes_per_pixel <= budget
        tile_size = 0 if fits else balanced_tile(max(shape), budget_tile(budget, bytes_per_pixel), overlap)
    if not tile_size:
        return 0, overlap
    if tile_size < MIN_TILE:
        raise ValueError(f"tile_size must be 0 (no tiles) or at least {MIN_TILE} px, got {tile_size}")
    overlap = min(overlap, tile_size // 4)
    count = len(tile_starts(shape[0], tile_size, overlap)) * len(tile_starts(shape[1], tile_size, overlap))
    if count > MAX_TILES:
        raise ValueError(
            f"tile_size {tile_size} would cut this {shape[1]} x {shape[0]} px image into {count} tiles "
            f"(at most {MAX_TILES}): use larger tiles, or a larger memory budget"
        )
    return tile_size, overlap


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``0..size`` with at least ``overlap``."""
    if tile >= size:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _ramp(length: int, overlap: int, device, dtype) -> Tensor:
    """1 in the middle, falling linearly to ``1 / (overlap + 1)`` at both ends."""
    index = torch.arange(length, device=device, dtype=dtype)
    distance = torch.minimum(index + 1, length - index)
    return distance.clamp(max=overlap + 1) / (overlap + 1)


def apply_tiled(
    fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    cond: Tensor,
    tile: int,
    overlap: int,
) -> Tensor:
    """``fn(x, cond)`` computed on overlapping ``tile`` x ``tile`` crops, blended linearly.

    ``x`` and ``cond`` are ``(B, C, H, W)``; ``fn`` must keep the spatial size. With one tile
    covering the image this is exactly ``fn(x, cond)``.
    """
    return finish(iter_tiled(fn, x, cond, tile, overlap))


def iter_tiled(
    fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    cond: Tensor,
    tile: int,
    overlap: int,
) -> Steps[Tensor]:
    """:func:`apply_tiled` as a generator: a step after each tile's call of ``fn``."""
    if not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap={overlap}, tile={tile}")
    return _iter_tiled(fn, x, cond, tile, overlap)


def _iter_tiled(fn, x: Tensor, cond: Tensor, tile: int, overlap: int) -> Steps[Tensor]:
    height, width = x.shape[-2:]
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    total = len(rows) * len(cols)
    if total == 1:
        out = fn(x, cond)
        yield Step(1, 1)
        return out
    out = weight_sum = None
    for number, (top, left) in enumerate(itertools.product(rows, cols), 1):
        window = (..., slice(top, top + tile), slice(left, left + tile))
        piece = fn(x[window], cond[window])
        weight = _ramp(piece.shape[-2], overlap, x.device, piece.dtype)[:, None] * _ramp(
            piece.shape[-1], overlap, x.device, piece.dtype
        )
        if out is None:
            out = piece.new_zeros(piece.shape[:-2] + (height, width))
            weight_sum = piece.new_zeros((height, width))
        out[window] += piece * weight
        weight_sum[window[1:]] += weight
        del piece, weight
        yield Step(number, total)
    return out.div_(weight_sum)  # in place: no second full-size result
