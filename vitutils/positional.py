"""Position information for a sequence of patch tokens: learned, sinusoidal and relative.

A Transformer treats its input as a set, so ViT adds a position term E_pos to the tokens
(equation 1 of Dosovitskiy et al., 2021). This module holds every variant the book compares:

- `init_learned_pos_embed`: ViT's learnable E_pos ∈ R^((N+1)×D), stored as (1, N + 1, D) like timm.
- `sincos_1d`: the fixed sinusoids of Vaswani et al. (2017, §3.5),
  PE(p, 2i) = sin(p / T^(2i/D)),  PE(p, 2i+1) = cos(p / T^(2i/D)),  T = 10000.
- `sincos_2d`: the same along both axes of the patch grid, half the channels for the row and half
  for the column (a fixed counterpart of the 2D embeddings compared in ViT appendix D.4), each half
  interleaved as in `sincos_1d`.
- `posemb_sincos_2d`: the layout of big_vision's and vit-pytorch's `posemb_sincos_2d` (Simple ViT,
  Beyer et al., 2022): blocks [sin x, cos x, sin y, cos y] with frequencies T^(-k/(D/4 - 1)).
- `relative_position_index`, `RelativePositionBias`: a learnable bias B[Δrow, Δcol] added to the
  attention logits (Shaw et al., 2018, in the 2D form of Swin, Liu et al., 2021, §3.2, eq. 4).
- `resample_pos_embed`: 2D interpolation of a learned E_pos to a new grid when fine-tuning at a
  higher resolution (ViT §3.2, "Fine-tuning and higher resolution").
- `pos_embed_similarity`: the cosine similarity of every position's encoding to every other (the
  maps of Figure 7, centre, of the ViT paper).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from vitutils.patches import to_2tuple

__all__ = [
    "ENCODING_KINDS",
    "RelativePositionBias",
    "example_encoding",
    "init_learned_pos_embed",
    "pos_embed_similarity",
    "posemb_sincos_2d",
    "relative_position_index",
    "resample_pos_embed",
    "sincos_1d",
    "sincos_2d",
]


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def init_learned_pos_embed(num_tokens: int, embed_dim: int) -> nn.Parameter:
    """A learnable position embedding (1, num_tokens, D), truncated normal with std 0.02 (timm).

    For a ViT with a class token, num_tokens = N + 1 and row 0 belongs to the class token.

    Book: chapter 3, "Learned position embeddings".
    """
    _check_positive(num_tokens=num_tokens, embed_dim=embed_dim)
    pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))  # (1, N + 1, D)
    nn.init.trunc_normal_(pos_embed, std=0.02)
    return pos_embed


def sincos_1d(num_positions: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """Fixed sinusoidal encodings of positions 0 … num_positions - 1, shape (num_positions, dim).

    Channels are interleaved: PE[p, 2i] = sin(p ω_i), PE[p, 2i+1] = cos(p ω_i) with
    ω_i = temperature^(-2i/dim), so wavelengths run from 2π to 2π·temperature. Computed in float64,
    returned as float32.

    Book: chapter 3, "Sinusoidal encodings".
    """
    _check_positive(num_positions=num_positions, dim=dim)
    if dim % 2 != 0:
        raise ValueError(f"dim must be even (sin/cos pairs), got {dim}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    positions = torch.arange(num_positions, dtype=torch.float64)  # (num_positions,)
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)  # (dim/2,)
    omega = temperature ** (-two_i / dim)  # (dim/2,)
    angles = positions[:, None] * omega[None, :]  # (num_positions, dim/2)
    pe = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (num_positions, dim/2, 2)
    return rearrange(pe, "n i two -> n (i two)").float()  # (num_positions, dim)


def sincos_2d(grid_h: int, grid_w: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """Fixed 2D sinusoidal encodings of a grid_h × grid_w patch grid, shape (grid_h·grid_w, dim).

    Positions are in raster order (token n is at row n // grid_w, column n % grid_w), as produced
    by `vitutils.patches.patchify`. Channels [0, dim/2) are `sincos_1d` of the row index and
    [dim/2, dim) of the column index, so dim must be divisible by 4.

    Book: chapter 3, "Two-dimensional sinusoidal encodings".
    """
    _check_positive(grid_h=grid_h, grid_w=grid_w, dim=dim)
    if dim % 4 != 0:
        raise ValueError(f"dim must be divisible by 4 for 2D sin-cos encodings, got {dim}")
    rows = sincos_1d(grid_h, dim // 2, temperature)  # (gh, dim/2)
    cols = sincos_1d(grid_w, dim // 2, temperature)  # (gw, dim/2)
    rows = repeat(rows, "gh d -> (gh gw) d", gw=grid_w)  # (N, dim/2)
    cols = repeat(cols, "gw d -> (gh gw) d", gh=grid_h)  # (N, dim/2)
    return torch.cat([rows, cols], dim=1)  # (N, dim)


def posemb_sincos_2d(grid_h: int, grid_w: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """Fixed 2D sin-cos encodings in the layout of big_vision and vit-pytorch (Simple ViT), (N, dim).

    For the patch at row y, column x (raster order, N = grid_h·grid_w) and k = 0 … dim/4 - 1, with
    ω_k = temperature^(-k / (dim/4 - 1)) (from 1 down to exactly 1/temperature):

        PE[n] = [sin(x ω_0) … sin(x ω_{dim/4-1}),  cos(x ω_k) …,  sin(y ω_k) …,  cos(y ω_k) …].

    Same ingredients as `sincos_2d`, other layout: four blocks instead of interleaved pairs, the column
    index first, and a slightly different set of frequencies. dim must be divisible by 4 and at least 8.

    Book: chapter 3, "Two-dimensional sinusoidal encodings".
    """
    _check_positive(grid_h=grid_h, grid_w=grid_w, dim=dim)
    if dim % 4 != 0 or dim < 8:
        raise ValueError(f"dim must be a multiple of 4 and at least 8, got {dim}")
    y, x = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64),
        torch.arange(grid_w, dtype=torch.float64),
        indexing="ij",
    )  # (gh, gw) each
    omega = temperature ** -(torch.arange(dim // 4, dtype=torch.float64) / (dim // 4 - 1))  # (D/4,)
    x = x.flatten()[:, None] * omega[None, :]  # (N, D/4)
    y = y.flatten()[:, None] * omega[None, :]  # (N, D/4)
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1).float()  # (N, dim)


ENCODING_KINDS = ("learned", "sincos_1d", "sincos_2d")


def example_encoding(kind: str, grid: int | tuple[int, int], dim: int, *, seed: int = 0) -> Tensor:
    """An (N, dim) encoding of a grid of N = gh·gw positions, of one of `ENCODING_KINDS`.

    "learned" is an *untrained* learned embedding (`init_learned_pos_embed` drawn with `seed`, without
    touching the global random state), "sincos_1d" the 1D encoding of the raster index, "sincos_2d" the 2D
    one.

    Book: chapter 3, "Positional encodings".
    """
    gh, gw = to_2tuple(grid)
    if kind == "learned":
        with torch.random.fork_rng(
            devices=[]
        ):  # the same encoding every time, global seed untouched
            torch.manual_seed(seed)
            return init_learned_pos_embed(gh * gw, dim)[0].detach()  # (N, D)
    if kind == "sincos_1d":
        return sincos_1d(gh * gw, dim)  # (N, D)
    if kind == "sincos_2d":
        return sincos_2d(gh, gw, dim)  # (N, D)
    raise ValueError(f"unknown kind {kind!r}; expected one of {ENCODING_KINDS}")


def pos_embed_similarity(pos_embed: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
    """Cosine similarity of every position's encoding with every other: (N, D) or (1, N, D) -> (N, N).

    With `grid` = (gh, gw), checks that there is one encoding per patch (drop a class token's row first).

    Book: chapter 3, "Positional encodings".
    """
    pe = torch.as_tensor(pos_embed).detach().float().cpu()
    if pe.ndim == 3 and pe.shape[0] == 1:
        pe = pe[0]  # (N, D) from a (1, N, D) parameter
    if pe.ndim != 2:
        raise ValueError(f"expected encodings of shape (N, D), got {tuple(pe.shape)}")
    if grid is not None and pe.shape[0] != grid[0] * grid[1]:
        raise ValueError(
            f"{grid[0]} × {grid[1]} grid needs {grid[0] * grid[1]} encodings, got {pe.shape[0]} "
            "(drop the class token's row first)"
        )
    unit = F.normalize(pe, dim=-1)  # (N, D)
    return unit @ unit.T  # (N, N)


def relative_position_index(grid_h: int, grid_w: int) -> Tensor:
    """For every pair of patches (i, j) the index of their offset in a relative bias table.

    The offset is (Δrow, Δcol) = position(i) - position(j), with Δrow ∈ [-(gh-1), gh-1] and
    Δcol ∈ [-(gw-1), gw-1]; it maps to (Δrow + gh - 1)·(2gw - 1) + (Δcol + gw - 1), one index per
    distinct offset in [0, (2gh-1)(2gw-1)). Returns (N, N) int64, N = gh·gw, raster order.

    Book: chapter 3, "Relative position bias".
    """
    _check_positive(grid_h=grid_h, grid_w=grid_w)
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()], dim=1)  # (N, 2)
    delta = coords[:, None, :] - coords[None, :, :]  # (N, N, 2)
    d_row = delta[..., 0] + (grid_h - 1)  # (N, N), shifted to start at 0
    d_col = delta[..., 1] + (grid_w - 1)  # (N, N)
    return d_row * (2 * grid_w - 1) + d_col  # (N, N)


class RelativePositionBias(nn.Module):
    """A learnable bias per head and per 2D offset, to add to the attention logits.

    Parameter `relative_position_bias_table` ((2gh-1)(2gw-1), h); buffer `relative_position_index`
    (N, N), not saved in the state dict since it is recomputed from the grid. `forward()` returns
    (h, prefix + N, prefix + N); rows and columns of prefix tokens (the class token) get bias 0
    because they have no place on the grid.

    Book: chapter 3, "Relative position bias".
    """

    def __init__(
        self, *, grid_size: int | tuple[int, int], num_heads: int, num_prefix_tokens: int = 0
    ) -> None:
        super().__init__()
        self.grid_size = to_2tuple(grid_size)
        gh, gw = self.grid_size
        _check_positive(grid_h=gh, grid_w=gw, num_heads=num_heads)
        if num_prefix_tokens < 0:
            raise ValueError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}")
        self.num_heads = num_heads
        self.num_prefix_tokens = num_prefix_tokens
        self.num_patches = gh * gw
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * gh - 1) * (2 * gw - 1), num_heads)
        )  # ((2gh-1)(2gw-1), h)
        # Not zeros: a random start makes the bias visible in the book's pictures.
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer(
            "relative_position_index", relative_position_index(gh, gw), persistent=False
        )  # (N, N)

    def forward(self) -> Tensor:
        N, p = self.num_patches, self.num_prefix_tokens
        bias = self.relative_position_bias_table[self.relative_position_index.flatten()]  # (N*N, h)
        bias = rearrange(bias, "(i j) h -> h i j", i=N, j=N)  # (h, N, N)
        return F.pad(bias, (p, 0, p, 0))  # (h, p + N, p + N)

    def extra_repr(self) -> str:
        return (
            f"grid_size={self.grid_size}, num_heads={self.num_heads}, "
            f"num_prefix_tokens={self.num_prefix_tokens}"
        )


def resample_pos_embed(
    pos_embed: Tensor,
    new_grid: int | tuple[int, int],
    *,
    old_grid: int | tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    mode: str = "bicubic",
    antialias: bool = True,
    align_corners: bool = False,
) -> Tensor:
    """Interpolate a learned position embedding to a new patch grid, e.g. 14 × 14 → 24 × 24.

    pos_embed: (1, prefix + gh·gw, D), patch tokens in raster order after `num_prefix_tokens`
    prefix tokens (the class token), which are copied unchanged. The patch part is viewed as a
    D-channel gh × gw image and resized with `F.interpolate`. old_grid defaults to a square grid.
    Returns (1, prefix + gh'·gw', D) in the input's dtype.

    The defaults are timm's (`resample_abs_pos_embed`): bicubic, antialiased, patch centres aligned
    (align_corners=False). With antialias=True PyTorch's bicubic mode uses another cubic kernel (PIL's),
    so it changes an enlargement too, not only a reduction. The ViT paper's reference code (vit_jax)
    resizes linearly with the corner patches aligned, `scipy.ndimage.zoom(..., order=1)`: that is
    ``mode="bilinear", antialias=False, align_corners=True``. PyTorch ignores align_corners when
    antialias is on, so that combination raises ValueError instead of silently doing something else.

    Book: chapter 3, "Changing the resolution".
    """
    if pos_embed.ndim != 3:
        raise ValueError(f"expected pos_embed of shape (1, T, D), got {tuple(pos_embed.shape)}")
    T = pos_embed.shape[1]
    if not 0 <= num_prefix_tokens <= T:
        raise ValueError(f"num_prefix_tokens must be in [0, {T}], got {num_prefix_tokens}")
    num_patches = T - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(num_patches)
        if side * side != num_patches or side == 0:
            raise ValueError(
                f"cannot infer a square grid from {num_patches} patch tokens "
                f"({T} tokens - {num_prefix_tokens} prefix); pass old_grid"
            )
        old_grid = (side, side)
    gh, gw = to_2tuple(old_grid)
    new_gh, new_gw = to_2tuple(new_grid)
    _check_positive(old_grid_h=gh, old_grid_w=gw, new_grid_h=new_gh, new_grid_w=new_gw)
    if gh * gw != num_patches:
        raise ValueError(
            f"old grid {gh} x {gw} = {gh * gw} does not match the {num_patches} patch tokens "
            f"({T} tokens - {num_prefix_tokens} prefix)"
        )

    smooth = mode in ("bilinear", "bicubic")
    if align_corners and antialias and smooth:
        raise ValueError(
            "antialias=True ignores align_corners=True in F.interpolate; pass antialias=False "
            "to align the corner patches (the ViT paper's linear resize)"
        )
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    grid = rearrange(patches, "b (gh gw) d -> b d gh gw", gh=gh, gw=gw)  # (1, D, gh, gw)
    grid = F.interpolate(
        grid.float(),  # interpolate in float32 even for half-precision checkpoints
        size=(new_gh, new_gw),
        mode=mode,
        align_corners=align_corners
        if mode in ("linear", "bilinear", "bicubic", "trilinear")
        else None,
        antialias=antialias and smooth,
    ).to(pos_embed.dtype)  # (1, D, gh', gw')
    patches = rearrange(grid, "b d gh gw -> b (gh gw) d")  # (1, gh'*gw', D)
    return torch.cat([prefix, patches], dim=1)  # (1, prefix + gh'*gw', D)
