"""Scaled dot-product attention and multi-head self-attention (chapter 4).

Implements equation (1) of Vaswani et al. (2017), Attention(Q, K, V) = softmax(QKᵀ / √d) V, and the
multi-head self-attention (MSA) of the ViT paper (Dosovitskiy et al., 2021, eq. 5-8 of appendix A).

Two paths compute the same thing behind one switch, `Attention.fused_attn`, which
`set_fused_attn(model, enabled)` sets for every attention layer of a model at once (as timm's
`set_fused_attn`):

- the *teaching* path writes the softmax out (`attention_weights`) and can hand the weights over for
  plots;
- the *fused* path calls `torch.nn.functional.scaled_dot_product_attention`, which never
  materialises the (N, N) weight matrix in memory-efficient kernels and is the one to train and
  benchmark with.

`record_attention(model)` is the documented way to look at the weights: inside the `with` block
every `Attention` of the model takes the teaching path and stores its weights; outside it nothing is
stored.

Chapter 4 also looks at attention on a real photo before any training, with hand-made patch features as
queries and keys (`patch_features`, `patch_attention`, `attention_entropy`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitutils.data.images import to_tensor
from vitutils.patches import patchify

if TYPE_CHECKING:  # only for the type hint: positional.py does not import this module
    from vitutils.positional import RelativePositionBias

__all__ = [
    "PATCH_FEATURE_KINDS",
    "Attention",
    "attention_entropy",
    "attention_weights",
    "patch_attention",
    "patch_features",
    "record_attention",
    "scaled_dot_product_attention",
    "set_fused_attn",
]

PATCH_FEATURE_KINDS = ("pixels", "colour", "texture")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 grey, as in OpenCV's RGB2GRAY


def attention_weights(
    q: Tensor, k: Tensor, mask: Tensor | None = None, *, scale: float | None = None
) -> Tensor:
    """The attention weights softmax(QKᵀ · scale + mask), one row per query.

    Args:
        q: queries (..., N, d).
        k: keys (..., M, d).
        mask: optional, broadcastable to (..., N, M). Boolean: True = the query may attend to that
            key (PyTorch's convention). Float: added to the logits (a relative position bias, or
            -inf). A query row with no key left is undefined: it comes out as NaN here (PyTorch's
            fused kernel returns zeros for it).
        scale: multiplies the logits; default 1/√d.

    Returns:
        weights (..., N, M); every row is non-negative and sums to 1.

    Book: chapter 4, "Scaled dot-product attention".
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"queries and keys must have the same width d, got {q.shape[-1]} and {k.shape[-1]}"
        )
    d = q.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    logits = (q * scale) @ k.transpose(-2, -1)  # (..., N, M)
    if mask is not None:
        if mask.dtype == torch.bool:
            logits = logits.masked_fill(~mask, float("-inf"))
        else:
            logits = logits + mask
    return logits.softmax(dim=-1)


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, scale: float | None = None
) -> tuple[Tensor, Tensor]:
    """Attention(Q, K, V) = softmax(QKᵀ/√d) V, written out (Vaswani et al., 2017, eq. 1).

    Args:
        q: queries (..., N, d).
        k: keys (..., M, d).
        v: values (..., M, d_v).
        mask: optional boolean (True = keep) or additive float mask broadcastable to (..., N, M),
            as in `attention_weights`.
        scale: multiplies the logits; default 1/√d.

    Returns:
        (output (..., N, d_v), weights (..., N, M)). Same output as
        `torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)`.

    Book: chapter 4, "Scaled dot-product attention".
    """
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            "keys and values must have the same number of tokens, "
            f"got {k.shape[-2]} and {v.shape[-2]}"
        )
    weights = attention_weights(q, k, mask, scale=scale)  # (..., N, M)
    return weights @ v, weights  # (..., N, d_v), (..., N, M)


class Attention(nn.Module):
    """Multi-head self-attention with timm's layout (`qkv` fused, then `proj`).

    The input is projected once to queries, keys and values for all h heads (`qkv`: D → 3D), each
    head attends with width d = D/h, the heads are concatenated and mixed by `proj` (D → D). With
    `rel_pos_bias` set, its (h, N, N) output is added to the logits of every image (chapter 3);
    without it the state dict is exactly timm's: `qkv.weight`, `qkv.bias` (if `qkv_bias`),
    `proj.weight`, `proj.bias`.

    Args:
        dim: token width D.
        num_heads: number of heads h; D must be divisible by h.
        qkv_bias: whether `qkv` has a bias (True in ViT, the default here follows timm's module).
        attn_drop: dropout probability on the attention weights.
        proj_drop: dropout probability after `proj`.
        fused_attn: use `F.scaled_dot_product_attention` (True) or the written-out softmax (False).
        rel_pos_bias: optional `vitutils.positional.RelativePositionBias` for N tokens and h heads.

    Shapes: forward (B, N, D) → (B, N, D). The attribute `recorder` is set only by
    `record_attention`; while it is set, forward takes the teaching path and hands it the weights.

    Book: chapter 4, "Multi-head self-attention".
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        fused_attn: bool = True,
        rel_pos_bias: RelativePositionBias | None = None,
    ) -> None:
        super().__init__()
        if num_heads <= 0 or dim % num_heads != 0:
            raise ValueError(
                f"dim {dim} must be divisible by num_heads {num_heads} "
                "(each head gets dim / num_heads)"
            )
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rel_pos_bias = rel_pos_bias
        # Set only by `record_attention`: receives the (B, h, N, N) weights of each forward.
        self.recorder: Callable[[Tensor], None] | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Self-attention over the tokens x (B, N, D) → (B, N, D)."""
        B, N, D = x.shape
        if D != self.dim:
            raise ValueError(f"expected tokens of width {self.dim}, got {D}")
        h, d = self.num_heads, self.head_dim
        qkv = self.qkv(x).reshape(B, N, 3, h, d)  # (B, N, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 × (B, h, N, d)
        bias = None
        if self.rel_pos_bias is not None:
            bias = self.rel_pos_bias()  # (h, N, N), broadcast over the batch
            if bias.shape != (h, N, N):
                raise ValueError(
                    f"relative position bias has shape {tuple(bias.shape)}, expected {(h, N, N)}"
                )
        x = self.attend(q, k, v, bias)  # (B, h, N, d)
        x = x.transpose(1, 2).reshape(B, N, D)  # (B, N, D): heads concatenated
        return self.proj_drop(self.proj(x))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None) -> Tensor:
        """The heads' attention: q, k, v (..., h, N, d) → (..., h, N, d), with `bias` added to the logits.

        The fused kernel, or the written-out softmax when `fused_attn` is off or a recorder is set (the
        recorder receives the weights (..., h, N, N)). `forward` calls it, and so does
        `vitutils.axial.AxialAttention`, which hands it strided views of the grid's columns.
        """
        if self.fused_attn and self.recorder is None:
            dropout_p = self.attn_drop.p if self.training else 0.0
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=self.scale
            )  # (..., h, N, d)
        weights = attention_weights(q, k, bias, scale=self.scale)  # (..., h, N, N)
        if self.recorder is not None:
            self.recorder(weights.detach())
        return self.attn_drop(weights) @ v  # (..., h, N, d)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, fused_attn={self.fused_attn}"


def set_fused_attn(model: nn.Module, enabled: bool = True) -> None:
    """Switch every `Attention` of `model` to the fused path (True) or the teaching path (False).

    The one switch for a whole model: the benchmark, the tests and the chapters use it instead of setting
    `fused_attn` layer by layer. It changes the modules, not a model's `config`, which records how the model
    was built. Raises ValueError if `model` holds no `Attention`.

    Book: chapter 4, "The package version".
    """
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    if not layers:
        raise ValueError(f"{type(model).__name__} contains no vitutils Attention module")
    for layer in layers:
        layer.fused_attn = bool(enabled)


@contextmanager
def record_attention(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Record the attention weights of every `Attention` in `model` while the block runs.

    Yields a dict that fills up as the model runs: module name (e.g. ``"blocks.3.attn"``, in layer
    order) → weights (B, h, N, N), detached, post-softmax and before attention dropout. A second
    forward inside the block overwrites the entries. Inside the block the modules take the teaching
    path (the fused kernel never forms the weights); on exit they go back to their own `fused_attn`
    setting and nothing more is stored, so recording costs nothing when off.

    Example::

        with record_attention(model) as attn:
            model(images)
        attn["blocks.0.attn"].shape  # (B, h, N, N)

    Book: chapter 4, "Looking at the attention weights".
    """
    modules = [(name, m) for name, m in model.named_modules() if isinstance(m, Attention)]
    if not modules:
        raise ValueError(f"{type(model).__name__} contains no vitutils Attention module to record")
    records: dict[str, Tensor] = {}
    previous = [m.recorder for _, m in modules]
    for name, m in modules:
        m.recorder = partial(records.__setitem__, name)
    try:
        yield records
    finally:
        for (_, m), recorder in zip(modules, previous, strict=True):
            m.recorder = recorder


# --- attention on a real photo, before any training (chapter 4) -------------------------------------------------


def patch_features(image: np.ndarray | Tensor, patch_size: int, kind: str = "pixels") -> Tensor:
    """Hand-made patch embeddings (N, F), to use directly as queries and keys before any training.

    `image` is anything `vitutils.data.to_tensor` accepts, its sides multiples of `patch_size`. "pixels":
    each flattened patch (F = C·P·P, values in [0, 1]) standardised per feature over the patches; "colour":
    each patch's mean RGB (F = 3), standardised the same way; "texture": the grey patch (F = P·P) minus its
    own mean, scaled to unit norm (so q·k is the correlation of two patches' textures).

    Book: chapter 4, "Attention on a real photo".
    """
    if kind not in PATCH_FEATURE_KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {PATCH_FEATURE_KINDS}")
    x = to_tensor(image)  # (C, H, W)
    C = x.shape[0]
    flat = patchify(x[None], patch_size)[0]  # (N, C*P*P), order (c, p1, p2)
    N = flat.shape[0]
    flat = flat.reshape(N, C, -1)  # (N, C, P*P)
    if kind == "texture":
        weights = torch.tensor(_LUMA) if C == 3 else torch.ones(C) / C
        grey = (flat * weights[:, None]).sum(dim=1)  # (N, P*P)
        grey = grey - grey.mean(dim=1, keepdim=True)
        return grey / grey.norm(dim=1, keepdim=True).clamp_min(1e-8)  # (N, P*P); flat patches -> 0
    feats = flat.reshape(N, -1) if kind == "pixels" else flat.mean(dim=-1)  # (N, C*P*P) or (N, C)
    std = feats.std(dim=0, unbiased=False, keepdim=True).clamp_min(1e-6)
    return (feats - feats.mean(dim=0, keepdim=True)) / std


def patch_attention(
    image: np.ndarray | Tensor, patch_size: int, *, kind: str = "pixels", temperature: float = 1.0
) -> Tensor:
    """Self-attention weights (N, N) among the patches, with Q = K = V = `patch_features(image, P, kind)`.

    logits = q·kᵀ / (√F · temperature); the temperature is applied by scaling the queries.

    Book: chapter 4, "Attention on a real photo".
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    feats = patch_features(image, patch_size, kind)  # (N, F)
    return attention_weights(feats / temperature, feats)  # (N, N)


def attention_entropy(weights: Tensor) -> Tensor:
    """Entropy in nats of each row of attention weights, (..., M) -> (...): 0 one-hot, log M uniform.

    Book: chapter 4, "Attention on a real photo".
    """
    entropy = -(weights * weights.clamp_min(1e-30).log()).sum(dim=-1)
    return entropy.clamp_min(0.0) + 0.0  # a one-hot row gives -0.0; adding +0.0 makes it 0.0
