"""What a ViT costs: parameters, FLOPs per part and memory, the book's one set of cost formulas.

FLOP conventions are PyTorch's FLOP counter's (`torch.utils.flop_counter.FlopCounterMode`): one
multiply-add is 2 FLOPs; only matrix products and convolutions count (LayerNorm, softmax, GELU, biases and
residual additions are O(T·D) and left out). For one image with N patches and T = N + 1 tokens (T = N
without a class token), width D, MLP width H = mlp_ratio · D (4D in ViT), h heads and L blocks:

    patch embedding        2 · N · (P²C) · D
    qkv + proj, per block  2T·D·3D + 2T·D·D     = 8·T·D²
    attention, per block   2T²·D (QKᵀ) + 2T²·D (AV) = 4·T²·D
    MLP, per block         2T·D·H + 2T·H·D      = 16·T·D²
    head                   2·D·K  (plus 2·D·D for a tanh pre-logits layer)

Everything but attention grows linearly with the number of tokens; attention grows quadratically. It
overtakes the MLP when 4T²D > 16TD², i.e. T > 4D, and all the linear layers of a block (qkv, proj and MLP,
24·T·D²) when T > 6D: two thresholds, one formula. Axial attention (`ViTConfig(attn_type="axial")`,
chapter 10) has two sets of qkv and proj per block and attends along a row and a column of the gh × gw
grid: 4·T·(gh + gw)·D instead of 4·T²·D. A training step costs three forward passes (each
product's backward computes two products of the same size), except the patch embedding: the image needs
no gradient, so its backward is one product.

Memory, in values (× 4 bytes in float32) per image, counting the tensors this package's `ViT` keeps
alive (chapter 9 lists them and measures them with `vitutils.measure.peak_memory`):

- inference: the peak of the forward pass is in the MLP, (4 + 2H/D)·T·D values (the residual stream
  held twice, its LayerNorm, the MLP's hidden layer before and after GELU), or in the attention of the
  teaching path, 6·T·D + 2·h·T² at the softmax (logits and weights, each h × T × T, alive together) or
  9·T·D + h·T² at QKᵀ; the fused attention peaks at 8·T·D. (With one block, one residual copy fewer.);
- training: what autograd saves for the backward pass, per block (8D + 2H + 4)·T plus the h × T × T
  softmax output on the teaching path (h·T log-sum-exp values on the fused one), plus 2·T·D after the last
  block; the backward pass adds the gradients in flight at its peak (two h × T × T on the teaching path,
  4·T·D on the fused one: those of q, k, v and of the kernel's output). A training step also
  holds the parameters, AdamW's two moments and the gradients made so far (`memory` follows the backward
  pass block by block).

The inference formula equals the measured peak; the training formula is within 25 % below and 10 % above
it (the tests say where and why).

Chapters 1, 6 and 9 use these functions; chapter 9 checks them against measurements.
"""

from __future__ import annotations

from typing import Literal

from vitutils.patches import grid_size, to_2tuple
from vitutils.vit import ViTConfig, vit_config

__all__ = [
    "ATTENTION_WEIGHTS",
    "PARTS",
    "activation_memory",
    "crossover_image_size",
    "crossover_tokens",
    "forward_flops",
    "largest_image_size",
    "memory",
    "num_tokens",
    "parameters",
    "training_flops",
]

PARTS = ("patch embedding", "qkv + proj", "attention (QKᵀ, AV)", "MLP", "head")
ATTENTION_WEIGHTS = "attention weights (T×T)"  # the key of the quadratic term in the memory dicts
_OTHER_ACTIVATIONS = "other activations"


def _config(config: ViTConfig | str, overrides: dict) -> ViTConfig:
    if isinstance(config, str):
        return vit_config(config, **overrides)
    return config.replace(**overrides)


def num_tokens(config: ViTConfig | str, **overrides) -> int:
    """T, the number of tokens the encoder sees: patches plus the class token if there is one."""
    c = _config(config, overrides)
    gh, gw = grid_size(c.img_size, c.patch_size)
    return gh * gw + (1 if c.class_token else 0)


def parameters(config: ViTConfig | str, **overrides) -> dict[str, int]:
    """Number of parameters per part of the model (the keys of `PARTS`, plus "tokens and norms": class
    token, learned position embedding, the LayerNorms). Their sum equals `vit.count_parameters`.

    Book: chapter 9, "One set of formulas".
    """
    c = _config(config, overrides)
    ph, pw = to_2tuple(c.patch_size)
    D, L = c.embed_dim, c.depth
    H = int(D * c.mlp_ratio)
    R = c.representation_size
    head_in = R or D
    return {
        "patch embedding": ph * pw * c.in_chans * D + D,  # conv weight and bias
        "qkv + proj": _steps(c) * L * (3 * D * D + (3 * D if c.qkv_bias else 0) + D * D + D),
        "attention (QKᵀ, AV)": 0,  # products of activations: no weights
        "MLP": L * (D * H + H + H * D + D),
        "head": (D * R + R if R else 0) + (head_in * c.num_classes + c.num_classes),
        "tokens and norms": _token_params(c)  # a sin-cos table is a buffer, not a parameter
        + L * 4 * D  # norm1 and norm2 of every block
        + 2 * D,  # the final norm (or fc_norm with mean pooling)
    }


def forward_flops(config: ViTConfig | str, **overrides) -> dict[str, int]:
    """FLOPs of one image's forward pass, per part of the model (keys `PARTS`), for a config or a preset
    name; `overrides` replace config fields (e.g. ``img_size=384``).

    Book: chapter 6, "Where the compute goes".
    """
    c = _config(config, overrides)
    ph, pw = to_2tuple(c.patch_size)
    gh, gw = grid_size(c.img_size, c.patch_size)
    N = gh * gw  # patches
    T = num_tokens(c)
    D, L = c.embed_dim, c.depth
    hidden = int(D * c.mlp_ratio)  # MLP width, 4D
    head_in = c.representation_size or D
    pre_logits = 2 * D * c.representation_size if c.representation_size else 0
    return {
        "patch embedding": 2 * N * (ph * pw * c.in_chans) * D,
        "qkv + proj": _steps(c) * L * (2 * T * D * 3 * D + 2 * T * D * D),
        # Full: every token against all T. Axial: against the gw of its row, then the gh of its column.
        "attention (QKᵀ, AV)": L * 4 * T * D * ((gh + gw) if c.attn_type == "axial" else T),
        "MLP": L * (2 * T * D * hidden + 2 * T * hidden * D),
        "head": pre_logits + 2 * head_in * c.num_classes,
    }


def training_flops(config: ViTConfig | str, **overrides) -> dict[str, int]:
    """FLOPs of one image's forward and backward pass, per part (keys `PARTS`): 3× the forward FLOPs,
    2× for the patch embedding (no gradient for the image). The optimizer step is O(parameters).

    Book: chapter 9, "One set of formulas".
    """
    forward = forward_flops(config, **overrides)
    return {part: (2 if part == "patch embedding" else 3) * f for part, f in forward.items()}


def activation_memory(
    config: ViTConfig | str,
    *,
    batch_size: int = 1,
    training: bool = False,
    fused: bool = True,
    bytes_per_value: int = 4,
    **overrides,
) -> dict[str, int]:
    """Bytes of activations at the peak of a forward pass (inference) or of a forward and backward pass
    (training), split into the h × T × T attention weights (key `ATTENTION_WEIGHTS`, zero on the fused
    path) and everything else ("other activations"). Parameters are not included (see `memory`).

    Book: chapter 9, "Memory: what is alive at the peak".
    """
    c = _config(config, overrides)
    _full_attention_only(c)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    T, D, L, h = num_tokens(c), c.embed_dim, c.depth, c.num_heads
    H = int(D * c.mlp_ratio)
    if training:
        saved_square, saved_other, in_flight = _saved_per_block(c, fused)
        square = L * saved_square + (0 if fused else in_flight)
        other = L * saved_other + (in_flight if fused else 0)
        other += (
            2 * T * D if c.global_pool == "token" else 2 * D
        )  # what the final norm and head keep
    else:
        # Alive in every block: its input, and (from the second block on) the first block's input,
        # which `forward_features` still holds; then the attention's LayerNorm output and qkv (4TD),
        # or the residual sum, the MLP's LayerNorm output and its hidden layer twice (2TD + 2TH).
        # The fused attention peaks at its output projection (LayerNorm output, qkv, the kernel's output
        # and proj's: 6TD); the teaching path at QKᵀ (the scaled queries, contiguous copies of q and
        # kᵀ, the logits) or at the softmax (logits and weights).
        held = min(L, 2) * T * D
        phases = [(0, held + 2 * T * D + 2 * T * H)]  # (T×T values, other values): the MLP
        if fused:
            phases.append((0, held + 6 * T * D))
        else:
            phases += [(h * T * T, held + 7 * T * D), (2 * h * T * T, held + 4 * T * D)]
        square, other = max(phases, key=sum)
    scale = batch_size * bytes_per_value
    return {ATTENTION_WEIGHTS: scale * square, _OTHER_ACTIVATIONS: scale * other}


def memory(
    config: ViTConfig | str,
    *,
    batch_size: int = 1,
    training: bool = False,
    fused: bool = True,
    bytes_per_value: int = 4,
    **overrides,
) -> dict[str, int]:
    """Bytes a forward pass (inference) or an AdamW training step holds at its peak, by kind; sum the
    values for the total. Inference: the parameters plus `activation_memory`. Training: the parameters,
    AdamW's two moments, and the gradients and activations alive at the peak of the step, the largest of
    three moments: the last block's backward (every block's saved activations, the gradients of the head
    and the last block), the first block's backward (one block's activations, nearly every gradient) and
    the optimizer step (every gradient, no activations).

    Book: chapter 9, "The memory wall".
    """
    c = _config(config, overrides)
    _full_attention_only(c)
    params = parameters(c)
    n = sum(params.values())
    if not training:
        acts = activation_memory(
            c, batch_size=batch_size, fused=fused, bytes_per_value=bytes_per_value
        )
        return {"parameters": n * bytes_per_value} | acts
    B, b, D, L = batch_size, bytes_per_value, c.embed_dim, c.depth
    square, other, in_flight = _saved_per_block(c, fused)
    if fused:  # the gradients in flight are T·D-sized on the fused path, T×T on the teaching one
        extra_square, extra_other = 0, in_flight
    else:
        extra_square, extra_other = in_flight, 0
    embedding = params["patch embedding"] + _token_params(c)  # their gradients come last
    head = params["head"] + 2 * D  # with the final norm: their gradients come first
    block = (n - embedding - head) // L
    moments = [  # (gradients, T×T activations, other activations) in bytes
        (
            b * (head + block),
            b * B * (L * square + extra_square),
            b * B * (L * other + extra_other),
        ),
        (b * (n - embedding), b * B * (square + extra_square), b * B * (other + extra_other)),
        (b * n, 0, 0),
    ]
    grads, square_bytes, other_bytes = max(moments, key=sum)
    return {
        "parameters": b * n,
        "AdamW moments": 2 * b * n,
        "gradients": grads,
        ATTENTION_WEIGHTS: square_bytes,
        _OTHER_ACTIVATIONS: other_bytes,
    }


def _saved_per_block(c: ViTConfig, fused: bool) -> tuple[int, int, int]:
    """Values per image that autograd saves in one block, T×T and other, and the gradients in flight at
    the peak of its backward pass."""
    T, D, h = num_tokens(c), c.embed_dim, c.num_heads
    H = int(D * c.mlp_ratio)
    # x, norm1's output, 3 × TD for q, k, v (qkv; or the scaled q and contiguous q, kᵀ copies), the
    # attention output, x after the residual, norm2's output, fc1's and GELU's outputs, 4 LayerNorm
    # statistics per token; then the softmax output, or the fused kernel's log-sum-exp.
    other = T * (8 * D + 2 * H + 4 + (h if fused else 0))
    square = 0 if fused else h * T * T
    # At the peak of its backward pass: the softmax's two gradients, or the gradients of q, k, v and
    # of the kernel's output, which the fused kernel's backward makes at once.
    in_flight = 4 * T * D if fused else 2 * h * T * T
    return square, other, in_flight


def _steps(c: ViTConfig) -> int:
    """Attention modules per block: one, or two for axial attention (the row and the column step)."""
    return 2 if c.attn_type == "axial" else 1


def _full_attention_only(c: ViTConfig) -> None:
    if c.attn_type != "full":
        raise ValueError(
            "the memory formulas cover full attention; axial attention is measured in chapter 10"
        )


def _token_params(c: ViTConfig) -> int:
    """The class token and the position embedding's parameters."""
    T, D = num_tokens(c), c.embed_dim
    positions = {"learn": T * D, "axial": sum(grid_size(c.img_size, c.patch_size)) * D}
    return (D if c.class_token else 0) + positions.get(c.pos_embed, 0)


def largest_image_size(
    config: ViTConfig | str,
    memory_bytes: float,
    *,
    batch_size: int = 1,
    training: bool = False,
    fused: bool = True,
    bytes_per_value: int = 4,
) -> int:
    """The largest square image side S (a multiple of the patch size) whose `memory` fits into
    `memory_bytes`; 0 if not even one patch fits.

    Book: chapter 9, "The memory wall".
    """
    c = _config(config, {})
    p = _square_patch(c)

    def fits(side: int) -> bool:
        need = memory(
            c,
            img_size=side,
            batch_size=batch_size,
            training=training,
            fused=fused,
            bytes_per_value=bytes_per_value,
        )
        return sum(need.values()) <= memory_bytes

    if not fits(p):
        return 0
    lo, hi = 1, 2  # in patches per side; memory grows with the side, so bisect
    while fits(hi * p):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid * p) else (lo, mid)
    return lo * p


def _square_patch(c: ViTConfig) -> int:
    ph, pw = to_2tuple(c.patch_size)
    if ph != pw:
        raise ValueError(f"square patches only, got patch size {(ph, pw)}")
    return ph


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
    side = _square_patch(c)  # attention grows as S⁴ and the rest as S², so the loop ends
    step = side
    while True:
        f = forward_flops(c, img_size=side)
        linear = f["MLP"] + (f["qkv + proj"] if against == "linear" else 0)
        if f["attention (QKᵀ, AV)"] > linear:
            return side
        side += step
