"""Tests for vitutils.patches' grid helpers: grid_index against divmod and patchify, valid_patch_sizes."""

import math

import pytest
import torch

from vitutils.patches import grid_index, patchify, valid_patch_sizes

# ----------------------------------------------------------------------------- grid_index


@pytest.mark.parametrize(
    ("position", "grid", "expected"),
    [
        (0, (3, 5), (0, 0, 0)),
        (7, (3, 5), (7, 1, 2)),  # 5 patches per row: 7 = 1·5 + 2
        (14, (3, 5), (14, 2, 4)),  # the last patch
        ((2, 4), (3, 5), (14, 2, 4)),
        ([1, 0], (3, 5), (5, 1, 0)),  # a list works like a tuple
        (7, (5, 3), (7, 2, 1)),  # the transposed grid: 3 patches per row
        (5, 4, (5, 1, 1)),  # an int grid is square
        ((3, 3), 4, (15, 3, 3)),
        (0, (1, 1), (0, 0, 0)),  # one patch
    ],
)
def test_grid_index(position, grid, expected):
    assert grid_index(position, grid) == expected


@pytest.mark.parametrize("grid", [(3, 5), (5, 3), (1, 4), (4, 1)])
def test_grid_index_round_trip_equals_divmod(grid):
    gh, gw = grid
    seen = set()
    for n in range(gh * gw):
        n_out, r, c = grid_index(n, grid)
        assert (n_out, r, c) == (n, *divmod(n, gw))  # raster order
        assert grid_index((r, c), grid) == (n, r, c)  # n -> (r, c) -> n
        seen.add((r, c))
    assert seen == {(r, c) for r in range(gh) for c in range(gw)}  # every cell exactly once


def test_grid_index_agrees_with_patchify():
    # Pixel values encode their coordinates; patch n's top-left pixel is at (row · P, col · P).
    P, gh, gw = 4, 3, 5
    h, w = torch.meshgrid(torch.arange(gh * P), torch.arange(gw * P), indexing="ij")
    image = (1000 * h + w).float()[None, None]  # (1, 1, H, W)
    patches = patchify(image, P)[0]  # (N, P*P)
    for n in range(gh * gw):
        _, r, c = grid_index(n, (gh, gw))
        assert patches[n, 0].item() == 1000 * (r * P) + c * P


@pytest.mark.parametrize(
    ("position", "match"),
    [
        (15, r"position 15 is outside 0 … 14 \(3 × 5 grid\)"),
        (-1, r"position -1 is outside 0 … 14 \(3 × 5 grid\)"),
        ((3, 0), r"position \(row 3, col 0\) is outside the 3 × 5 grid"),
        ((0, 5), r"position \(row 0, col 5\) is outside the 3 × 5 grid"),
        ((-1, 2), r"position \(row -1, col 2\) is outside the 3 × 5 grid"),
    ],
)
def test_grid_index_rejects_positions_outside_the_grid(position, match):
    with pytest.raises(ValueError, match=match):
        grid_index(position, (3, 5))


# ----------------------------------------------------------------------------- valid_patch_sizes


def test_valid_patch_sizes_square():
    assert valid_patch_sizes(224, 224) == [p for p in range(2, 225) if 224 % p == 0]
    assert valid_patch_sizes(224, 224) == [2, 4, 7, 8, 14, 16, 28, 32, 56, 112, 224]


@pytest.mark.parametrize(
    ("h", "w", "kwargs", "expected"),
    [
        (224, 160, {}, [2, 4, 8, 16, 32]),
        (48, 80, {}, [2, 4, 8, 16]),
        (300, 451, {}, []),  # coprime sides: no patch size fits
        (224, 224, {"min_size": 8, "max_size": 32}, [8, 14, 16, 28, 32]),
        (32, 48, {"min_size": 1}, [1, 2, 4, 8, 16]),
    ],
)
def test_valid_patch_sizes_non_square(h, w, kwargs, expected):
    sizes = valid_patch_sizes(h, w, **kwargs)
    assert sizes == expected
    assert all(h % p == 0 and w % p == 0 for p in sizes)
    # Reference: every P in the range that divides both sides, by brute force.
    low, high = kwargs.get("min_size", 2), kwargs.get("max_size") or min(h, w)
    assert sizes == [p for p in range(low, high + 1) if h % p == 0 and w % p == 0]
    assert not sizes or math.gcd(h, w) % sizes[-1] == 0


def test_valid_patch_sizes_rejects_empty_images():
    with pytest.raises(ValueError, match="positive"):
        valid_patch_sizes(0, 32)
