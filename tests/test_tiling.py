"""Overlapping tiles give the same result as one pass for local operations."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from daclip_plugin.engine.tiling import apply_tiled, tile_starts


@given(size=st.integers(1, 300), tile=st.integers(2, 128), overlap_fraction=st.floats(0, 0.9))
def test_tiles_cover_everything_with_the_overlap(size, tile, overlap_fraction):
    overlap = int(overlap_fraction * tile)
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0
    assert min(starts[-1] + tile, size) == size or starts == [0]
    for a, b in zip(starts, starts[1:]):
        assert 0 < b - a <= tile - overlap


@settings(max_examples=25, deadline=None)
@given(height=st.integers(1, 70), width=st.integers(1, 70), tile=st.integers(8, 40), overlap=st.integers(0, 7))
def test_pointwise_functions_are_reproduced_exactly(height, width, tile, overlap):
    x, cond = torch.randn(2, 3, height, width, dtype=torch.float64).unbind(0)
    x, cond = x[None], cond[None]
    out = apply_tiled(lambda a, b: torch.tanh(a) * b + a, x, cond, tile, overlap)
    torch.testing.assert_close(out, torch.tanh(x) * cond + x)


def test_local_operation_matches_where_the_overlap_covers_its_reach():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 3, 3, padding=1).double()
    x, cond = torch.randn(1, 3, 50, 61, dtype=torch.float64), torch.randn(1, 3, 50, 61, dtype=torch.float64)
    full = conv(torch.cat([x, cond], 1))
    with torch.no_grad():
        tiled = apply_tiled(lambda a, b: conv(torch.cat([a, b], 1)), x, cond, tile=24, overlap=8)
        # each pixel's blend only mixes tiles in which it is at least 1 px from a cut edge,
        # except exactly at cut edges, whose weight is small but not zero
        inner = (tiled - full).abs()
    assert inner.max() < 0.5 * full.abs().max()
    assert torch.quantile(inner.flatten(), 0.5) < 1e-12


def test_bad_overlap_is_rejected():
    x = torch.zeros(1, 3, 10, 10)
    with pytest.raises(ValueError, match="overlap"):
        apply_tiled(lambda a, b: a, x, x, tile=8, overlap=8)


def test_tile_size_resolution():
    from daclip_plugin.engine.tiling import resolve_tile_size

    per_pixel, budget = 1000, 1000 * 512 * 512
    assert resolve_tile_size((512, 512), None, 64, per_pixel, budget) == (0, 64)  # fits: one pass
    # two tiles along 513 px: 304 px each do what 512 px tiles would
    assert resolve_tile_size((513, 512), None, 64, per_pixel, budget) == (304, 64)
    assert resolve_tile_size((3904, 3904), None, 64, per_pixel, budget * 4) == (1024, 64)  # 4 tiles of the largest
    assert resolve_tile_size((4032, 4032), None, 64, per_pixel, budget * 4) == (864, 64)  # 5 tiles: smaller ones
    assert resolve_tile_size((5000, 5000), None, 64, per_pixel, 1) == (128, 32)  # never below 128 px
    assert resolve_tile_size((5000, 5000), 0, 64, per_pixel, 1) == (0, 64)  # 0: never tile
    assert resolve_tile_size((10, 10), 96, 64, per_pixel, 0) == (96, 24)  # the overlap is at most a quarter of the tile
    # just above the default overlap: a sensible overlap, not 1 px steps over the image
    assert resolve_tile_size((96, 96), 65, 64, per_pixel, 0) == (65, 16)
    with pytest.raises(ValueError, match="at least 32 px"):
        resolve_tile_size((10, 10), 8, 64, per_pixel, 0)
    with pytest.raises(ValueError, match=r"into \d+ tiles \(at most 4096\)"):
        resolve_tile_size((4096, 4096), 32, 64, per_pixel, 0)


@given(budget=st.integers(0, 2**34), per_pixel=st.integers(1, 10**5))
def test_budget_tiles_fit_the_budget_unless_at_the_smallest_tile(budget, per_pixel):
    from daclip_plugin.engine.tiling import BUDGET_MIN_TILE, BUDGET_STEP, budget_tile

    side = budget_tile(budget, per_pixel)
    assert side % BUDGET_STEP == 0 and side >= BUDGET_MIN_TILE
    assert side * side * per_pixel <= budget or side == BUDGET_MIN_TILE
    assert (side + BUDGET_STEP) ** 2 * per_pixel > budget  # the largest that fits


@given(size=st.integers(1, 9000), largest=st.integers(128, 2048), overlap=st.integers(0, 128))
def test_balanced_tiles_are_no_larger_and_no_more_numerous(size, largest, overlap):
    from daclip_plugin.engine.tiling import balanced_tile

    tile = balanced_tile(size, largest, overlap)
    assert tile <= largest
    overlap = min(overlap, largest // 4)
    count = len(tile_starts(size, tile, min(overlap, tile // 4)))
    assert count <= len(tile_starts(size, largest, overlap))
