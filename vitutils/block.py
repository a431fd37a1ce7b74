"""The Transformer encoder block of ViT: pre-norm attention and MLP with residuals (chapter 5).

Implements equations (2) and (3) of the ViT paper (Dosovitskiy et al., 2021, §3.1):

    z'_l = MSA(LN(z_{l-1})) + z_{l-1},        z_l = MLP(LN(z'_l)) + z'_l,

where the MLP has two layers with a GELU in between (hidden width mlp_ratio · D, 4D in the paper).
Stochastic depth (Huang et al., 2016), used to train larger ViTs (DeiT, AugReg), drops the residual
branch of a whole sample with a probability that grows linearly with depth (`drop_path_rates`).

Names and state-dict keys follow timm: `norm1`, `attn.qkv`, `attn.proj`, `norm2`, `mlp.fc1`,
`mlp.fc2`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from vitutils.attention import Attention
from vitutils.axial import AxialAttention

if TYPE_CHECKING:
    from vitutils.positional import RelativePositionBias

__all__ = ["Block", "DropPath", "Mlp", "drop_path", "drop_path_rates"]


class Mlp(nn.Module):
    """The two-layer feed-forward network of a block: fc1 → GELU → dropout → fc2 → dropout.

    Shapes: (..., in_features) → (..., out_features); hidden width `hidden_features` (4D in ViT).

    Book: chapter 5, "The MLP".
    """

    def __init__(
        self,
        *,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop1(self.act(self.fc1(x)))  # (..., hidden_features)
        return self.drop2(self.fc2(x))  # (..., out_features)


def drop_path(
    x: Tensor, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True
) -> Tensor:
    """Stochastic depth: zero the whole of x for a random subset of samples.

    Each sample of the batch (first dimension) is kept with probability keep = 1 - drop_prob and, if
    `scale_by_keep`, multiplied by 1/keep so that the expectation of the output equals x. Identity
    when not training or when drop_prob is 0. Shapes: (B, ...) → (B, ...).

    Book: chapter 5, "Stochastic depth".
    """
    if not 0.0 <= drop_prob <= 1.0:
        raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob}")
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # (B, 1, ..., 1): one coin per sample
    keep = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0 and scale_by_keep:
        keep.div_(keep_prob)
    return x * keep


class DropPath(nn.Module):
    """`drop_path` as a module, active only in training mode.

    Book: chapter 5, "Stochastic depth".
    """

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob}")
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


def drop_path_rates(drop_path_rate: float, depth: int) -> list[float]:
    """Stochastic-depth probability of each of `depth` blocks, linear from 0 to `drop_path_rate`.

    The first block is never dropped and the last one with probability `drop_path_rate` (as in timm
    and DeiT). Returns a list of `depth` floats.

    Book: chapter 5, "Stochastic depth".
    """
    if depth <= 0:
        raise ValueError(f"depth must be positive, got {depth}")
    if not 0.0 <= drop_path_rate <= 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1], got {drop_path_rate}")
    return torch.linspace(0.0, drop_path_rate, depth, device="cpu").tolist()


class Block(nn.Module):
    """Pre-norm Transformer encoder block: x + MSA(LN(x)), then x + MLP(LN(x)) (ViT eq. 2-3).

    Args:
        dim: token width D.
        num_heads: attention heads h (D divisible by h).
        mlp_ratio: MLP hidden width / D (4 in ViT).
        qkv_bias: bias in the fused qkv projection (True in ViT).
        proj_drop: dropout after `attn.proj` and after both MLP layers (`mlp.drop1`, `mlp.drop2`);
            timm's `proj_drop_rate` sets it in every block.
        attn_drop: dropout on the attention weights (`attn.attn_drop`).
        drop_path: stochastic-depth probability of this block.
        norm_layer: builds a normalisation layer from D; default `nn.LayerNorm(D, eps=1e-6)` as in
            timm.
        act_layer: MLP activation class (GELU).
        fused_attn: fused (`F.scaled_dot_product_attention`) or teaching attention path.
        rel_pos_bias: optional relative position bias handed to `Attention`.
        attn_type: "full" self-attention, or "axial" (`vitutils.axial.AxialAttention`: the token's row,
            then its column, of the `grid_size` = (gh, gw) grid; chapter 10).
        sum_axial_out: with "axial", add the row and column steps instead of composing them.

    Shapes: forward (B, N, D) → (B, N, D).

    Book: chapter 5, "The encoder block".
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer: Callable[[int], nn.Module] | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        fused_attn: bool = True,
        rel_pos_bias: RelativePositionBias | None = None,
        attn_type: str = "full",
        grid_size: tuple[int, int] | None = None,
        sum_axial_out: bool = False,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-6)
        self.norm1 = norm_layer(dim)
        common = dict(
            dim=dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            fused_attn=fused_attn,
        )
        if attn_type == "full":
            self.attn = Attention(**common, rel_pos_bias=rel_pos_bias)
        elif attn_type == "axial":
            if grid_size is None or rel_pos_bias is not None:
                raise ValueError("attn_type='axial' needs grid_size and takes no rel_pos_bias")
            self.attn = AxialAttention(**common, grid_size=grid_size, sum_axial_out=sum_axial_out)
        else:
            raise ValueError(f"attn_type must be 'full' or 'axial', got {attn_type!r}")
        self.drop_path1 = DropPath(drop_path) if drop_path != 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(
            in_features=dim,
            hidden_features=int(dim * mlp_ratio),
            act_layer=act_layer,
            drop=proj_drop,
        )
        self.drop_path2 = DropPath(drop_path) if drop_path != 0.0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))  # (B, N, D), eq. 2
        return x + self.drop_path2(self.mlp(self.norm2(x)))  # (B, N, D), eq. 3
