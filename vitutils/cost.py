"""What a forward pass of a ViT costs, in FLOPs per part: the book's one set of cost formulas.

Conventions are PyTorch's FLOP counter's (`torch.utils.flop_counter.FlopCounterMode`): one multiply-add is
2 FLOPs; only matrix products and convolutions count (LayerNorm, softmax, GELU, biases and residual
additions are O(T·D) and left out). For one image with N patches and T = N + 1 tokens (T = N without a
class token), width D, MLP width 4D (mlp_ratio · D) and L blocks:

    patch embedding        2 · N · (P²C) · D
    qkv + proj, per block  2T·D·3D + 2T·D·D     = 8·T·D²
    attention, per block   2T²·D (QKᵀ) + 2T²·D (AV) = 4·T²·D
    MLP, per block         2T·D·4D + 2T·4D·D    = 16·T·D²
    head                   2·D·K  (plus 2·D·D for a tanh pre-logits layer)

Everything but attention grows linearly with the number of tokens; attention grows quadratically. It
overtakes the MLP when 4T²D > 16TD², i.e. T > 4D, and all the linear layers of a block (qkv, proj and MLP,
24·T·D²) when T > 6D: two thresholds, one formula. Chapter 1 and chapter 6 both use these functions.
"""

from __future__ import annotations

from typing import Literal

from vitutils.patches import grid_size, to_2tuple
from vitutils.vit import ViTConfig, vit_config

__all__ = ["PARTS", "crossover_image_size", "crossover_tokens", "forward_flops"]

PARTS = ("patch embedding", "qkv + proj", "attention (QKᵀ, AV)", "MLP", "head")


def _config(config: ViTConfig | str, overrides: dict) -> ViTConfig:
    if isinstance(config, str):
        return vit_config(config, **overrides)
    return config.replace(**overrides)


def forward_flops(config: ViTConfig | str, **overrides) -> dict[str, int]:
    """FLOPs of one image's forward pass, per part of the model (keys `PARTS`), for a config or a preset
    name; `overrides` replace config fields (e.g. ``img_size=384``).

    Book: chapter 6, "Where the compute goes".
    """
    c = _config(config, overrides)
    ph, pw = to_2tuple(c.patch_size)
    gh, gw = grid_size(c.img_size, c.patch_size)
    N = gh * gw  # patches
    T = N + (1 if c.class_token else 0)  # tokens
    D, L = c.embed_dim, c.depth
    hidden = int(D * c.mlp_ratio)  # MLP width, 4D
    head_in = c.representation_size or D
    pre_logits = 2 * D * c.representation_size if c.representation_size else 0
    return {
        "patch embedding": 2 * N * (ph * pw * c.in_chans) * D,
        "qkv + proj": L * (2 * T * D * 3 * D + 2 * T * D * D),
        "attention (QKᵀ, AV)": L * (2 * T * T * D + 2 * T * T * D),
        "MLP": L * (2 * T * D * hidden + 2 * T * hidden * D),
        "head": pre_logits + 2 * head_in * c.num_classes,
    }


def crossover_tokens(config: ViTConfig | str, *, against: Literal["mlp", "linear"] = "mlp") -> int:
    """The number of tokens T above which attention costs more FLOPs than the MLP (T > mlp_ratio·D,
    4D in ViT) or than all the linear layers of a block (qkv, proj and MLP: T > (2 + mlp_ratio)·D, 6D).

    Book: chapter 1, "How many patches? Patch size is the compute knob".
    """
    c = _config(config, {})
    hidden = int(c.embed_dim * c.mlp_ratio)
    if against == "mlp":
        return hidden  # 4T²D > 4·T·D·hidden
    if against == "linear":
        return 2 * c.embed_dim + hidden  # 4T²D > 8TD² + 4·T·D·hidden
    raise ValueError(f"against must be 'mlp' or 'linear', got {against!r}")


def crossover_image_size(
    config: ViTConfig | str, *, against: Literal["mlp", "linear"] = "mlp"
) -> int:
    """The smallest square image side S (a multiple of P) at which attention costs more FLOPs than the MLP
    (or than all linear layers of a block), found by comparing `forward_flops` size by size.

    Book: chapter 6, "Where the compute goes".
    """
    c = _config(config, {})
    if against not in ("mlp", "linear"):
        raise ValueError(f"against must be 'mlp' or 'linear', got {against!r}")
    ph, pw = to_2tuple(c.patch_size)
    if ph != pw:
        raise ValueError(f"square patches only, got patch size {(ph, pw)}")
    side = ph  # attention grows as S⁴ and the rest as S², so the loop ends
    while True:
        f = forward_flops(c, img_size=side)
        linear = f["MLP"] + (f["qkv + proj"] if against == "linear" else 0)
        if f["attention (QKᵀ, AV)"] > linear:
            return side
        side += ph
