"""Tests for vitutils.positional against independent formulas and F.interpolate."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitutils.positional import (
    ENCODING_KINDS,
    RelativePositionBias,
    example_encoding,
    init_learned_pos_embed,
    pos_embed_similarity,
    posemb_sincos_2d,
    relative_position_index,
    resample_pos_embed,
    sincos_1d,
    sincos_2d,
)


def numpy_sincos_1d(num_positions: int, dim: int, temperature: float = 10000.0) -> np.ndarray:
    """Reference: Vaswani et al. §3.5, written out entry by entry in float64."""
    pe = np.zeros((num_positions, dim), dtype=np.float64)
    for p in range(num_positions):
        for i in range(dim // 2):
            angle = p / temperature ** (2 * i / dim)
            pe[p, 2 * i] = math.sin(angle)
            pe[p, 2 * i + 1] = math.cos(angle)
    return pe


# ----------------------------------------------------------------------------- learned


@pytest.mark.parametrize(("num_tokens", "D"), [(197, 768), (1, 8), (65, 32)])
def test_init_learned_pos_embed(num_tokens, D):
    torch.manual_seed(0)
    pos_embed = init_learned_pos_embed(num_tokens, D)
    assert isinstance(pos_embed, torch.nn.Parameter)
    assert pos_embed.shape == (1, num_tokens, D)
    assert pos_embed.requires_grad
    if num_tokens * D >= 10_000:  # enough samples to pin down the std
        assert abs(pos_embed.std().item() - 0.02) < 0.002


def test_init_learned_pos_embed_errors():
    with pytest.raises(ValueError, match="num_tokens must be positive, got 0"):
        init_learned_pos_embed(0, 8)
    with pytest.raises(ValueError, match="embed_dim must be positive, got -1"):
        init_learned_pos_embed(5, -1)


# ----------------------------------------------------------------------------- sincos_1d


@pytest.mark.parametrize(
    ("num_positions", "dim", "temperature"),
    [(1, 2, 10000.0), (50, 64, 10000.0), (197, 768, 10000.0), (7, 6, 100.0), (16, 10, 10000.0)],
)
def test_sincos_1d_equals_formula(num_positions, dim, temperature):
    pe = sincos_1d(num_positions, dim, temperature)
    assert pe.shape == (num_positions, dim)
    assert pe.dtype == torch.float32
    reference = torch.from_numpy(numpy_sincos_1d(num_positions, dim, temperature)).float()
    torch.testing.assert_close(pe, reference, atol=1e-6, rtol=0)


def test_sincos_1d_values_by_hand():
    pe = sincos_1d(3, 4)
    # Position 0: sin 0 = 0, cos 0 = 1 in every pair.
    assert pe[0].tolist() == [0.0, 1.0, 0.0, 1.0]
    # Position 1, pair 0 has frequency 1; pair 1 has frequency 10000^(-1/2) = 0.01.
    expected = [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)]
    torch.testing.assert_close(pe[1], torch.tensor(expected), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dim", [16, 64, 128])
def test_sincos_1d_dot_product_depends_only_on_offset(dim):
    # <PE[p], PE[p+k]> = sum_i cos(k ω_i): a function of k alone (Vaswani et al. §3.5).
    pe = sincos_1d(64, dim).double()
    omega = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    for k in [0, 1, 3, 10]:
        dots = torch.stack([pe[p] @ pe[p + k] for p in [0, 5, 17, 40, 53]])
        torch.testing.assert_close(dots, dots[0].expand_as(dots), atol=1e-4, rtol=0)
        expected = torch.cos(k * omega).sum()
        torch.testing.assert_close(dots[0], expected, atol=1e-4, rtol=0)
    # And it does change with k, or the check above would be empty.
    assert not math.isclose(float(pe[0] @ pe[1]), float(pe[0] @ pe[10]), abs_tol=1e-2)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((10, 7), "dim must be even .* got 7"),
        ((10, 0), "dim must be positive, got 0"),
        ((0, 8), "num_positions must be positive, got 0"),
        ((-3, 8), "num_positions must be positive, got -3"),
        ((10, 8, 0.0), "temperature must be positive, got 0.0"),
    ],
)
def test_sincos_1d_errors(args, match):
    with pytest.raises(ValueError, match=match):
        sincos_1d(*args)


# ----------------------------------------------------------------------------- sincos_2d


@pytest.mark.parametrize(("gh", "gw", "dim"), [(14, 14, 768), (2, 3, 8), (1, 1, 4), (4, 7, 32)])
def test_sincos_2d_halves_are_row_and_column_encodings(gh, gw, dim):
    pe = sincos_2d(gh, gw, dim)
    assert pe.shape == (gh * gw, dim)
    rows, cols = sincos_1d(gh, dim // 2), sincos_1d(gw, dim // 2)
    for n in range(gh * gw):
        r, c = divmod(n, gw)  # raster order
        assert torch.equal(pe[n, : dim // 2], rows[r])
        assert torch.equal(pe[n, dim // 2 :], cols[c])


def test_sincos_2d_equals_formula():
    gh, gw, dim = 3, 5, 12
    ref_rows, ref_cols = numpy_sincos_1d(gh, dim // 2), numpy_sincos_1d(gw, dim // 2)
    reference = np.stack(
        [np.concatenate([ref_rows[r], ref_cols[c]]) for r in range(gh) for c in range(gw)]
    )
    torch.testing.assert_close(
        sincos_2d(gh, gw, dim), torch.from_numpy(reference).float(), atol=1e-6, rtol=0
    )


def test_sincos_2d_positions_are_distinct():
    pe = sincos_2d(6, 6, 32)
    distances = torch.cdist(pe, pe)
    off_diagonal = distances[~torch.eye(36, dtype=torch.bool)]
    assert off_diagonal.min() > 1e-3


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((4, 4, 6), "dim must be divisible by 4 .* got 6"),
        ((4, 4, 10), "dim must be divisible by 4 .* got 10"),
        ((0, 4, 8), "grid_h must be positive, got 0"),
        ((4, -1, 8), "grid_w must be positive, got -1"),
    ],
)
def test_sincos_2d_errors(args, match):
    with pytest.raises(ValueError, match=match):
        sincos_2d(*args)


# ----------------------------------------------------------------------------- relative bias


def test_relative_position_index_by_hand_2x3():
    index = relative_position_index(2, 3)
    assert index.shape == (6, 6)
    assert index.dtype == torch.int64
    # 2 x 3 grid: (2*2-1) * (2*3-1) = 15 offsets, index = (Δrow + 1) * 5 + (Δcol + 2).
    # Token 0 is (0, 0), token 2 is (0, 2), token 3 is (1, 0), token 5 is (1, 2).
    assert index[0, 0] == 7  # (0, 0): the centre of the table
    assert index[0, 5] == 0  # (0, 0) - (1, 2) = (-1, -2)
    assert index[5, 0] == 14  # (1, 2) - (0, 0) = (+1, +2)
    assert index[2, 3] == 4  # (0, 2) - (1, 0) = (-1, +2)
    assert index[3, 2] == 10  # (1, 0) - (0, 2) = (+1, -2)
    assert index[4, 1] == 12  # (1, 1) - (0, 1) = (+1, 0)
    assert torch.equal(torch.diagonal(index), torch.full((6,), 7))


@pytest.mark.parametrize(("gh", "gw"), [(2, 3), (3, 3), (1, 4), (4, 1), (1, 1), (5, 2)])
def test_relative_position_index_is_a_function_of_the_offset(gh, gw):
    index = relative_position_index(gh, gw)
    coords = [divmod(n, gw) for n in range(gh * gw)]
    offset_to_index: dict[tuple[int, int], int] = {}
    for i, (ri, ci) in enumerate(coords):
        for j, (rj, cj) in enumerate(coords):
            offset = (ri - rj, ci - cj)
            offset_to_index.setdefault(offset, int(index[i, j]))
            assert offset_to_index[offset] == index[i, j]  # equal offsets -> equal index
    # Different offsets -> different indices, and every table row is used.
    assert len(set(offset_to_index.values())) == len(offset_to_index) == (2 * gh - 1) * (2 * gw - 1)
    assert sorted(offset_to_index.values()) == list(range((2 * gh - 1) * (2 * gw - 1)))


def test_relative_position_index_errors():
    with pytest.raises(ValueError, match="grid_h must be positive, got 0"):
        relative_position_index(0, 3)


@pytest.mark.parametrize(
    ("grid_size", "num_heads", "prefix"), [((2, 3), 4, 1), (3, 2, 0), ((1, 1), 1, 2), (4, 3, 1)]
)
def test_relative_position_bias(grid_size, num_heads, prefix):
    torch.manual_seed(0)
    module = RelativePositionBias(
        grid_size=grid_size, num_heads=num_heads, num_prefix_tokens=prefix
    )
    gh, gw = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    N = gh * gw
    table = module.relative_position_bias_table
    assert table.shape == ((2 * gh - 1) * (2 * gw - 1), num_heads)
    assert table.abs().sum() > 0  # trunc-normal init, not zeros
    bias = module()
    assert bias.shape == (num_heads, N + prefix, N + prefix)
    # Prefix rows and columns are zero.
    assert torch.equal(bias[:, :prefix, :], torch.zeros(num_heads, prefix, N + prefix))
    assert torch.equal(bias[:, :, :prefix], torch.zeros(num_heads, N + prefix, prefix))
    # Every patch pair reads its row of the table.
    index = relative_position_index(gh, gw)
    for i in range(N):
        for j in range(N):
            assert torch.equal(bias[:, prefix + i, prefix + j], table[index[i, j]])
    # Gradients reach the table.
    bias.sum().backward()
    assert table.grad is not None and table.grad.abs().sum() > 0


def test_relative_position_bias_state_dict():
    module = RelativePositionBias(grid_size=(2, 3), num_heads=2)
    # The index is a non-persistent buffer: recomputed, not saved.
    assert list(module.state_dict()) == ["relative_position_bias_table"]
    assert torch.equal(module.relative_position_index, relative_position_index(2, 3))


def test_relative_position_bias_errors():
    with pytest.raises(ValueError, match="num_heads must be positive, got 0"):
        RelativePositionBias(grid_size=4, num_heads=0)
    with pytest.raises(ValueError, match="num_prefix_tokens must be >= 0, got -1"):
        RelativePositionBias(grid_size=4, num_heads=2, num_prefix_tokens=-1)
    with pytest.raises(TypeError):
        RelativePositionBias(4, 2)  # type: ignore[misc]


# ----------------------------------------------------------------------------- resampling


def interpolate_reference(pos_embed, old_grid, new_grid, prefix, mode="bicubic", antialias=True):
    """Reference written with reshape/permute instead of einops."""
    D = pos_embed.shape[-1]
    patches = pos_embed[0, prefix:].reshape(old_grid[0], old_grid[1], D).permute(2, 0, 1)
    kwargs = {"align_corners": False, "antialias": antialias} if mode != "nearest" else {}
    resized = F.interpolate(patches[None], size=new_grid, mode=mode, **kwargs)[0]
    resized = resized.permute(1, 2, 0).reshape(1, new_grid[0] * new_grid[1], D)
    return torch.cat([pos_embed[:, :prefix], resized], dim=1)


@pytest.mark.parametrize(
    ("old_grid", "new_grid", "prefix"),
    [((14, 14), (14, 14), 1), ((4, 6), (4, 6), 0), ((7, 7), (7, 7), 2)],
)
def test_resample_identity_when_grid_unchanged(old_grid, new_grid, prefix):
    torch.manual_seed(0)
    pos_embed = torch.randn(1, prefix + old_grid[0] * old_grid[1], 16)
    out = resample_pos_embed(pos_embed, new_grid, old_grid=old_grid, num_prefix_tokens=prefix)
    torch.testing.assert_close(out, pos_embed, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("old_grid", "new_grid", "prefix", "mode", "antialias"),
    [
        ((14, 14), (24, 24), 1, "bicubic", True),  # 224 -> 384 with P = 16
        ((24, 24), (14, 14), 1, "bicubic", True),  # downsampling: antialias matters
        ((24, 24), (14, 14), 1, "bicubic", False),
        ((4, 6), (8, 3), 0, "bilinear", True),
        ((3, 3), (5, 7), 2, "nearest", True),
        ((1, 1), (2, 2), 1, "bicubic", True),
    ],
)
def test_resample_equals_interpolate_reference(old_grid, new_grid, prefix, mode, antialias):
    torch.manual_seed(0)
    D = 8
    pos_embed = torch.randn(1, prefix + old_grid[0] * old_grid[1], D)
    out = resample_pos_embed(
        pos_embed,
        new_grid,
        old_grid=old_grid,
        num_prefix_tokens=prefix,
        mode=mode,
        antialias=antialias,
    )
    assert out.shape == (1, prefix + new_grid[0] * new_grid[1], D)
    assert torch.equal(out[:, :prefix], pos_embed[:, :prefix])  # class token kept as is
    reference = interpolate_reference(pos_embed, old_grid, new_grid, prefix, mode, antialias)
    torch.testing.assert_close(out, reference, atol=1e-6, rtol=0)


def test_resample_14_to_24_infers_square_grid_and_keeps_class_token():
    torch.manual_seed(0)
    pos_embed = torch.randn(1, 197, 32)
    out = resample_pos_embed(pos_embed, 24)
    assert out.shape == (1, 577, 32)
    assert torch.equal(out[:, 0], pos_embed[:, 0])
    # A smooth (linear in the row) embedding stays linear in the row after resizing.
    rows = torch.arange(14.0).repeat_interleave(14)  # (196,)
    ramp = torch.cat([torch.zeros(1, 1, 1), rows.view(1, 196, 1)], dim=1)  # (1, 197, 1)
    resized = resample_pos_embed(ramp, 28, antialias=False)[0, 1:, 0].view(28, 28)
    assert torch.allclose(resized[:, 0], resized[:, -1], atol=1e-5)  # constant along a row
    assert (resized[1:, 0] > resized[:-1, 0]).all()  # increasing down the columns


def test_resample_keeps_dtype():
    pos_embed = torch.randn(1, 17, 8, dtype=torch.float16)
    out = resample_pos_embed(pos_embed, 6)
    assert out.dtype == torch.float16
    assert out.shape == (1, 37, 8)


def test_resample_errors():
    with pytest.raises(ValueError, match="cannot infer a square grid from 50 patch tokens"):
        resample_pos_embed(torch.zeros(1, 51, 8), 8)
    with pytest.raises(ValueError, match=r"old grid 4 x 4 = 16 does not match the 24 patch tokens"):
        resample_pos_embed(torch.zeros(1, 25, 8), 8, old_grid=4)
    with pytest.raises(ValueError, match=r"expected pos_embed of shape \(1, T, D\)"):
        resample_pos_embed(torch.zeros(197, 8), 24)
    with pytest.raises(ValueError, match=r"num_prefix_tokens must be in \[0, 5\], got 6"):
        resample_pos_embed(torch.zeros(1, 5, 8), 2, num_prefix_tokens=6)
    with pytest.raises(ValueError, match="new_grid_h must be positive, got 0"):
        resample_pos_embed(torch.zeros(1, 17, 8), (0, 4))


# ----------------------------------------------------------------------------- posemb_sincos_2d


def loop_posemb_sincos_2d(grid_h: int, grid_w: int, dim: int, temperature: float) -> np.ndarray:
    """Reference: big_vision's layout written out entry by entry in float64."""
    q = dim // 4
    pe = np.zeros((grid_h * grid_w, dim), dtype=np.float64)
    for y in range(grid_h):
        for x in range(grid_w):
            n = y * grid_w + x  # raster order
            for k in range(q):
                omega = temperature ** (-k / (q - 1))
                pe[n, k] = math.sin(x * omega)
                pe[n, q + k] = math.cos(x * omega)
                pe[n, 2 * q + k] = math.sin(y * omega)
                pe[n, 3 * q + k] = math.cos(y * omega)
    return pe


@pytest.mark.parametrize("dim", [8, 16, 64])
@pytest.mark.parametrize(("gh", "gw"), [(3, 5), (4, 4), (1, 7)])
def test_posemb_sincos_2d_equals_formula(gh, gw, dim):
    pe = posemb_sincos_2d(gh, gw, dim)
    assert pe.shape == (gh * gw, dim)
    assert pe.dtype == torch.float32
    reference = torch.from_numpy(loop_posemb_sincos_2d(gh, gw, dim, 10000.0)).float()
    torch.testing.assert_close(pe, reference, atol=1e-6, rtol=0)


def test_posemb_sincos_2d_other_temperature_and_dim_12():
    pe = posemb_sincos_2d(2, 3, 12, temperature=100.0)  # 12: a multiple of 4, at least 8
    reference = torch.from_numpy(loop_posemb_sincos_2d(2, 3, 12, 100.0)).float()
    torch.testing.assert_close(pe, reference, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("gh", "gw", "dim"), [(3, 5, 16), (4, 4, 8), (5, 2, 32)])
def test_posemb_sincos_2d_blocks_follow_one_axis(gh, gw, dim):
    pe = posemb_sincos_2d(gh, gw, dim)
    q = dim // 4
    for n in range(gh * gw):
        y, x = divmod(n, gw)
        # Blocks 1-2 (sin x, cos x) are those of the patch in row 0 with the same column ...
        assert torch.equal(pe[n, : 2 * q], pe[x, : 2 * q])
        # ... and blocks 3-4 (sin y, cos y) those of the patch in column 0 with the same row.
        assert torch.equal(pe[n, 2 * q :], pe[y * gw, 2 * q :])
    # Both axes do change the code, so the equalities above are not trivially true.
    assert not torch.equal(pe[0, :q], pe[1, :q])  # next column
    assert not torch.equal(pe[0, 2 * q : 3 * q], pe[gw, 2 * q : 3 * q])  # next row


@pytest.mark.parametrize("temperature", [10000.0, 100.0])
@pytest.mark.parametrize("dim", [8, 64])
def test_posemb_sincos_2d_frequencies_span_one_to_one_over_temperature(dim, temperature):
    pe = posemb_sincos_2d(2, 2, dim, temperature).double()
    q = dim // 4
    # Patch 1 is at x = 1, y = 0: its first two blocks are sin(ω_k), cos(ω_k).
    omega = torch.atan2(pe[1, :q], pe[1, q : 2 * q])  # (dim/4,)
    torch.testing.assert_close(omega[0], torch.tensor(1.0, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        omega[-1], torch.tensor(1 / temperature, dtype=torch.float64), atol=0, rtol=1e-4
    )
    # Geometric in between: a constant ratio, so the endpoints are the extremes.
    ratios = omega[1:] / omega[:-1]
    expected = torch.full_like(ratios, temperature ** (-1 / (q - 1)))
    torch.testing.assert_close(ratios, expected, atol=0, rtol=1e-4)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((4, 4, 6), "dim must be a multiple of 4 and at least 8, got 6"),
        ((4, 4, 10), "dim must be a multiple of 4 and at least 8, got 10"),
        ((4, 4, 4), "dim must be a multiple of 4 and at least 8, got 4"),
        ((0, 4, 8), "grid_h must be positive, got 0"),
        ((4, -2, 8), "grid_w must be positive, got -2"),
    ],
)
def test_posemb_sincos_2d_errors(args, match):
    with pytest.raises(ValueError, match=match):
        posemb_sincos_2d(*args)


@pytest.mark.parametrize(("gh", "gw", "dim"), [(4, 6, 32), (3, 3, 16), (1, 5, 8)])
def test_posemb_sincos_2d_dot_product_depends_only_on_2d_offset(gh, gw, dim):
    # <PE[i], PE[j]> = Σ_k cos(ω_k Δx) + Σ_k cos(ω_k Δy), with (Δy, Δx) the offset of the patches.
    pe = posemb_sincos_2d(gh, gw, dim).double()
    gram = pe @ pe.T  # (N, N)
    q = dim // 4
    omegas = [10000.0 ** (-k / (q - 1)) for k in range(q)]
    N = gh * gw
    expected = torch.zeros(N, N, dtype=torch.float64)
    for i in range(N):
        yi, xi = divmod(i, gw)
        for j in range(N):
            yj, xj = divmod(j, gw)
            expected[i, j] = sum(math.cos(w * (xi - xj)) for w in omegas) + sum(
                math.cos(w * (yi - yj)) for w in omegas
            )
    torch.testing.assert_close(gram, expected, atol=1e-5, rtol=0)
    # The similarity does vary with the offset.
    assert gram.max() - gram.min() > 0.1


# ----------------------------------------------------------------------------- resampling like vit_jax


@pytest.mark.parametrize(
    ("old_grid", "new_grid"), [((14, 14), (24, 24)), ((7, 7), (12, 12)), ((4, 6), (8, 9))]
)
def test_resample_align_corners_equals_scipy_zoom(old_grid, new_grid):
    ndimage = pytest.importorskip("scipy.ndimage")
    torch.manual_seed(0)
    (gh, gw), (new_gh, new_gw), D = old_grid, new_grid, 8
    pos_embed = torch.randn(1, 1 + gh * gw, D)
    out = resample_pos_embed(
        pos_embed,
        new_grid,
        old_grid=old_grid,
        num_prefix_tokens=1,
        mode="bilinear",
        antialias=False,
        align_corners=True,
    )
    assert out.shape == (1, 1 + new_gh * new_gw, D)
    assert torch.equal(out[:, 0], pos_embed[:, 0])  # class token unchanged
    # vit_jax's resize: scipy.ndimage.zoom of the (gh, gw, D) grid, linear, one zoom per axis.
    grid = pos_embed[0, 1:].reshape(gh, gw, D).double().numpy()
    zoomed = ndimage.zoom(grid, (new_gh / gh, new_gw / gw, 1), order=1)
    assert zoomed.shape == (new_gh, new_gw, D)
    patches = out[0, 1:].reshape(new_gh, new_gw, D).double()
    torch.testing.assert_close(patches, torch.from_numpy(zoomed), atol=1e-5, rtol=0)
    # timm's default (bicubic, patch centres aligned) is a different resize: the distinction is real.
    default = resample_pos_embed(pos_embed, new_grid, old_grid=old_grid)[0, 1:]
    difference = (default.reshape(new_gh, new_gw, D).double() - torch.from_numpy(zoomed)).abs()
    assert difference.max() > 1e-3


# ----------------------------------------------------------------------------- similarity maps


@pytest.mark.parametrize(("N", "D"), [(16, 8), (1, 4), (35, 64)])
def test_pos_embed_similarity_equals_cosine_similarity(N, D):
    torch.manual_seed(0)
    pe = torch.randn(N, D)
    reference = F.cosine_similarity(pe[:, None], pe[None], dim=-1)  # (N, N)
    similarity = pos_embed_similarity(pe)
    assert similarity.shape == (N, N)
    torch.testing.assert_close(similarity, reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.diagonal(similarity), torch.ones(N), atol=1e-6, rtol=0)
    # A (1, N, D) parameter gives the same matrix; a matching grid is accepted.
    torch.testing.assert_close(pos_embed_similarity(pe[None]), reference, atol=1e-6, rtol=0)
    parameter = torch.nn.Parameter(pe[None].clone())
    torch.testing.assert_close(
        pos_embed_similarity(parameter, (1, N)), reference, atol=1e-6, rtol=0
    )


def test_pos_embed_similarity_errors():
    with pytest.raises(ValueError, match=r"4 × 4 grid needs 16 encodings, got 17 .*class token"):
        pos_embed_similarity(torch.randn(1, 17, 8), (4, 4))
    with pytest.raises(ValueError, match=r"expected encodings of shape \(N, D\), got \(8,\)"):
        pos_embed_similarity(torch.randn(8))
    with pytest.raises(ValueError, match=r"expected encodings of shape \(N, D\), got \(2, 4, 8\)"):
        pos_embed_similarity(torch.randn(2, 4, 8))


# ----------------------------------------------------------------------------- example_encoding


@pytest.mark.parametrize(("grid", "dim"), [(4, 16), ((3, 5), 8), ((1, 1), 4)])
def test_example_encoding_learned_is_seeded_without_touching_the_global_rng(grid, dim):
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = example_encoding("learned", grid, dim, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is untouched
    assert a.shape == (gh * gw, dim)
    assert not a.requires_grad
    assert torch.equal(example_encoding("learned", grid, dim, seed=3), a)  # same seed, same code
    assert not torch.equal(example_encoding("learned", grid, dim, seed=4), a)  # another seed
    # Reference: the package's learned initialisation drawn right after seeding.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        reference = init_learned_pos_embed(gh * gw, dim)[0].detach()
    assert torch.equal(a, reference)


@pytest.mark.parametrize(("grid", "dim"), [(4, 16), ((3, 5), 8), ((1, 6), 32)])
def test_example_encoding_sincos_kinds(grid, dim):
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    assert set(ENCODING_KINDS) == {"learned", "sincos_1d", "sincos_2d"}
    assert torch.equal(example_encoding("sincos_1d", grid, dim), sincos_1d(gh * gw, dim))
    assert torch.equal(example_encoding("sincos_2d", grid, dim), sincos_2d(gh, gw, dim))


def test_example_encoding_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind 'rope'; expected one of"):
        example_encoding("rope", 4, 8)


def test_resample_refuses_antialias_with_aligned_corners():
    """F.interpolate ignores align_corners=True when antialias is on (a 14 → 24 ramp lands on a third
    grid); the package refuses the combination instead of resampling somewhere unexpected."""
    pe = torch.randn(1, 1 + 14 * 14, 8)
    with pytest.raises(ValueError, match="antialias=True ignores align_corners=True"):
        resample_pos_embed(pe, (24, 24), mode="bilinear", align_corners=True)
    ramp = torch.arange(14.0).repeat(14, 1).reshape(1, 196, 1)  # column index as the code
    out = resample_pos_embed(
        ramp, (24, 24), num_prefix_tokens=0, mode="bilinear", antialias=False, align_corners=True
    )
    first_row = out[0, :24, 0]
    torch.testing.assert_close(first_row, torch.linspace(0, 13, 24), atol=1e-5, rtol=0)
