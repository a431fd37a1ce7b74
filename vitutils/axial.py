"""Axial attention over the token grid (chapter 10).

Full self-attention lets each of the N = gh · gw patch tokens attend to all N: O(N²) products. Axial
attention (Ho et al., 2019, "Axial Attention in Multidimensional Transformers"; Wang et al., 2020,
Axial-DeepLab) factorises it along the two axes of the grid: first every token attends to the gw tokens
of its row, then to the gh tokens of its column, O(N · (gh + gw)) in all. After both steps every token
has reached every other one, through the token at the crossing of its row and the other's column.

- `AxialAttention` is two of the package's `Attention` modules, `row` and `col` (timm's names inside:
  `row.qkv`, `row.proj`, ...), so `record_attention` (chapter 4) records the row weights
  (B·gh, h, gw, gw) and the column weights (B·gw, h, gh, gh) as they are, and `set_fused_attn` switches
  both. The rows of all images form one batch, and so do the columns: two calls of
  `F.scaled_dot_product_attention`. The row step is `row`'s forward on the grid's rows (a view); the
  column step calls `col`'s layers and its `attend` on column views of the queries, keys and values,
  so that the only copy is the column output's way back to raster order (for one image).
  `sum_axial_out=True` runs both steps on the same input and adds them (lucidrains/axial-attention's
  `sum_axial_out`) instead of composing them.
- `AxialPositionEmbedding`: one learned vector per row plus one per column, broadcast over the grid
  (gh + gw vectors instead of gh · gw).
- `axial_mask(grid, axis)`: the (N, N) boolean mask of full attention that allows exactly what the row or
  column step does; the tests and the chapter prove the module equal to masked full attention with it.

A grid has no room for a class token, so an axial ViT pools by the mean of the patch tokens
(`ViTConfig(attn_type="axial", class_token=False, global_pool="avg")`): a class token would need a
full-attention row of its own and would not belong to any row or column.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vitutils.attention import Attention
from vitutils.patches import to_2tuple

__all__ = ["AxialAttention", "AxialPositionEmbedding", "axial_mask"]


def _grid(grid_size: int | tuple[int, int]) -> tuple[int, int]:
    gh, gw = to_2tuple(grid_size)
    if gh < 1 or gw < 1:
        raise ValueError(f"grid_size must be positive, got {(gh, gw)}")
    return gh, gw


def axial_mask(grid_size: int | tuple[int, int], axis: str) -> Tensor:
    """The (N, N) boolean mask (True = may attend) of full attention over a gh × gw grid in raster order
    that keeps only the tokens of the query's row (`axis="row"`) or column (`axis="col"`).

    Book: chapter 10, "The row step and the column step".
    """
    gh, gw = _grid(grid_size)
    if axis not in ("row", "col"):
        raise ValueError(f"axis must be 'row' or 'col', got {axis!r}")
    index = torch.arange(gh * gw)
    line = index // gw if axis == "row" else index % gw  # (N,): the row (or column) of each token
    return line[:, None] == line[None, :]  # (N, N)


class AxialAttention(nn.Module):
    """Row attention, then column attention, over a grid of tokens (Ho et al., 2019).

    Args:
        dim: token width D.
        num_heads: heads h of each step.
        grid_size: (gh, gw), the token grid; the input holds its N = gh · gw tokens in raster order.
        qkv_bias, attn_drop, proj_drop, fused_attn: as for `Attention`, for both steps.
        sum_axial_out: add the two steps' outputs, each computed from the input, instead of feeding
            the row step's output to the column step.

    Shapes: forward (B, N, D) → (B, N, D).

    Book: chapter 10, "The package's module".
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        grid_size: int | tuple[int, int],
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        fused_attn: bool = True,
        sum_axial_out: bool = False,
    ) -> None:
        super().__init__()
        self.grid_size = _grid(grid_size)
        self.sum_axial_out = sum_axial_out
        kwargs = dict(
            dim=dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            fused_attn=fused_attn,
        )
        self.row = Attention(**kwargs)  # along the width: gw tokens per sequence
        self.col = Attention(**kwargs)  # along the height: gh tokens per sequence

    def forward(self, x: Tensor) -> Tensor:
        B, N, D = x.shape
        gh, gw = self.grid_size
        if N != gh * gw:
            raise ValueError(
                f"axial attention over a {gh} × {gw} grid needs {gh * gw} tokens, got {N} "
                "(a class token or dropped patches do not fit a grid)"
            )
        grid = x.reshape(B, gh, gw, D)  # (B, gh, gw, D)
        rows = self.row(grid.reshape(B * gh, gw, D)).reshape(B, gh, gw, D)  # each row on its own
        cols = self._columns(grid if self.sum_axial_out else rows)  # (B, gh, gw, D)
        out = rows + cols if self.sum_axial_out else cols
        return out.reshape(B, N, D)

    def _columns(self, grid: Tensor) -> Tensor:
        """The column step on a grid in raster order (B, gh, gw, D) → (B, gh, gw, D).

        `self.col`'s own layers and kernel, called piece by piece instead of through `self.col(...)`: the
        projections run on the tokens in raster order, and only the queries, keys and values are viewed
        column by column. For one image those views need no copy; the output's way back to raster order
        is the step's one copy (chapter 10, "Without needless copies").
        """
        B, gh, gw, D = grid.shape
        h, d = self.col.num_heads, self.col.head_dim
        qkv = self.col.qkv(grid).reshape(B, gh, gw, 3, h, d)  # (B, gh, gw, 3, h, d)
        q, k, v = (  # 3 × (B·gw, h, gh, d): a view for B = 1, a copy otherwise
            t.reshape(B * gw, h, gh, d) for t in qkv.permute(3, 0, 2, 4, 1, 5).unbind(0)
        )
        out = self.col.attend(q, k, v)  # (B·gw, h, gh, d)
        out = out.reshape(B, gw, h, gh, d).permute(0, 3, 1, 2, 4).reshape(B, gh, gw, D)  # one copy
        return self.col.proj_drop(self.col.proj(out))

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, sum_axial_out={self.sum_axial_out}"


class AxialPositionEmbedding(nn.Module):
    """One learned vector per grid row plus one per grid column: E[i, j] = row[i] + col[j].

    Shapes: forward() → (1, gh · gw, D) in raster order, to add to the patch tokens. Initialised like
    timm's learned position embedding (normal, std 0.02), each half with std 0.02 / √2 so that the sum
    has the usual scale.

    Book: chapter 10, "Axial position embedding".
    """

    def __init__(self, grid_size: int | tuple[int, int], embed_dim: int) -> None:
        super().__init__()
        gh, gw = self.grid_size = _grid(grid_size)
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be positive, got {embed_dim}")
        std = 0.02 / 2**0.5
        self.row = nn.Parameter(torch.randn(1, gh, 1, embed_dim) * std)  # (1, gh, 1, D)
        self.col = nn.Parameter(torch.randn(1, 1, gw, embed_dim) * std)  # (1, 1, gw, D)

    def forward(self) -> Tensor:
        gh, gw = self.grid_size
        return (self.row + self.col).reshape(1, gh * gw, -1)  # (1, N, D)
