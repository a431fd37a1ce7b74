"""Figure of chapter 6: the whole Vision Transformer as boxes and arrows, with its tensor shapes.

The top row is the model from image to logits, one box per timm module (`patch_embed`, `cls_token`
and `pos_embed`, `blocks`, `norm`, the pooling with `fc_norm`, `head`); below it, one encoder block
drawn once and expanded (norm1 → attn → +, norm2 → mlp → +), repeated L times. Every box shows the
shape of its output in letters and in numbers. The numbers are measured, not typed: the model is
built on PyTorch's meta device (no memory, no weights), a meta batch of images goes through it, and
forward hooks record the shape each module returns.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyBboxPatch
from torch import nn

from vitutils.patches import to_2tuple
from vitutils.vit import PRESETS, ViT, ViTConfig, vit_config

# The paper's model sizes (its Table 1, with DeiT's Ti and S): (D, L, h) → name.
_SIZES = {(192, 12, 3): "Ti", (384, 12, 6): "S", (768, 12, 12): "B", (1024, 24, 16): "L"}
_SIZES[(1280, 32, 16)] = "H"
_HOOKED = ["patch_embed", "blocks.0", "norm", "fc_norm", "pre_logits", "head"]
_HOOKED += [f"blocks.0.{name}" for name in ("norm1", "attn", "norm2", "mlp", "mlp.fc1")]
_ARROW = {"arrowstyle": "-|>", "color": "0.2", "lw": 1.2, "shrinkA": 0, "shrinkB": 0}
_MONO = {"family": "monospace", "fontweight": "bold", "fontsize": 9}

__all__ = ["plot_architecture"]


def _measured_shapes(config: ViTConfig, batch_size: int) -> dict[str, tuple[int, ...]]:
    """Module name → shape of its output, for a meta-device ViT run on a meta batch of images.

    Keys: the names in `_HOOKED` that the model has (`pre_logits` only when it is a real layer),
    "image" (the input of `patch_embed`), "tokens" (the input of `blocks.0`: the patch tokens with
    the class token prepended and the position embedding added), and "cls_token" and "pos_embed"
    (the shapes of these tensors) when the model has them.
    """
    with torch.device("meta"):
        model = ViT.from_config(config)
    modules = dict(model.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}
    for key in ("cls_token", "pos_embed"):  # (1, 1, D), (1, T, D); None when the model has none
        if getattr(model, key, None) is not None:
            shapes[key] = tuple(getattr(model, key).shape)

    def keep(key: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor | None = None) -> None:
            shapes[key] = tuple((args[0] if output is None else output).shape)

        return hook

    hooks = [modules["patch_embed"].register_forward_pre_hook(keep("image"))]
    hooks.append(modules["blocks.0"].register_forward_pre_hook(keep("tokens")))
    for name in _HOOKED:
        if name in modules and not (name == "pre_logits" and type(modules[name]) is nn.Identity):
            hooks.append(modules[name].register_forward_hook(keep(name)))
    H, W = to_2tuple(config.img_size)
    try:
        with torch.no_grad():
            model(torch.empty(batch_size, config.in_chans, H, W, device="meta"))  # (B, K)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def _tint(t: float, amount: float = 0.3) -> tuple[float, ...]:
    """A light tint of viridis(t), so that black text on it stays readable."""
    return tuple(1 - amount + amount * np.array(plt.get_cmap("viridis")(t)[:3]))


def _shape(letters: str, shape: tuple[int, ...]) -> str:
    return f"({letters})\n= ({', '.join(map(str, shape))})"


def _box(ax: Axes, box: tuple[float, float, float, float], t: float, *text: str) -> None:
    """A rounded box (x, y, w, h) in viridis(t) with up to three texts: name, what, shape."""
    x, y, w, h = box
    style = "round,pad=0,rounding_size=0.08"
    edge = plt.get_cmap("viridis")(t)
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=style, fc=_tint(t), ec=edge, lw=1.2))
    name, what, shape = (*text, "", "")[:3]
    top = y + h - 0.08
    ax.text(x + w / 2, top, name, ha="center", va="top", linespacing=1.1, **_MONO)
    below = top - 0.17 * (name.count("\n") + 1) - 0.03
    ax.text(x + w / 2, below, what, ha="center", va="top", fontsize=8, color="0.15")
    ax.text(x + w / 2, y + 0.08, shape, ha="center", va="bottom", fontsize=8)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops=_ARROW)


def plot_architecture(
    config: ViTConfig | str = "vit_base_patch16_224", *, batch_size: int = 1
) -> Figure:
    """The whole ViT from image to logits, one encoder block expanded, with measured shapes.

    `config` is a `ViTConfig` or the name of a preset (a key of `vitutils.vit.PRESETS`). Each box
    names the timm module and the shape of what it returns, in letters and in numbers for a batch
    of `batch_size` images; the numbers come from a forward pass on the meta device.

    Book: chapter 6, "The whole model".
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    cfg = vit_config(config) if isinstance(config, str) else config
    s = _measured_shapes(cfg, batch_size)
    _, C, H, W = s["image"]  # (B, C, H, W)
    B, N, D = s["patch_embed"]  # (B, N, D)
    T = s["tokens"][1]  # (B, T, D), T = N + 1 with a class token
    T_letters = "N" if T == N else f"N + {T - N}"
    tokens = f"B, {T_letters}, D"
    ph, pw = to_2tuple(cfg.patch_size)
    L, h, avg = cfg.depth, cfg.num_heads, cfg.global_pool == "avg"
    size = _SIZES.get((D, L, h))
    name = f"ViT-{size}/{ph if ph == pw else f'{ph} × {pw}'}" if size else None
    name = name or next((k for k, v in PRESETS.items() if v == cfg), config)  # preset's name
    name = name if isinstance(name, str) else "ViT"
    extras = [", mean pooling"] * avg + [", no class token"] * ("cls_token" not in s)
    fig = plt.figure(figsize=(10, 4.5))
    ax = fig.add_axes((0, 0, 1, 0.9))  # data units are inches
    ax.set(xlim=(0, 10), ylim=(0, 4.05))
    ax.axis("off")
    title = f"{name} at {H} × {W}: N = {H // ph} × {W // pw} = {N} patches, D = {D}, L = {L}"
    ax.set_title(f"{title}, h = {h}{''.join(extras)}", fontsize=11)

    # Top row, the model left to right: (name, what it does, shape of its output, colour, width).
    embed = ["cls_token +"] * ("cls_token" in s) + ["pos_embed"] * ("pos_embed" in s)
    embed_what = ["prepend"] * ("cls_token" in s) + ["add"] * ("pos_embed" in s)
    pooled = s.get("pre_logits", s["fc_norm"])  # (B, D), or (B, R) after a pre-logits layer
    pool, pool_what = (["mean →", "fc_norm"], "pool, LayerNorm") if avg else (["x[:, 0]"], "")
    if "pre_logits" in s:  # the paper's pre-training head: a tanh layer
        pool, pool_what = [pool[-1] + " →", "pre_logits"], "mean, LN, tanh" if avg else "tanh"
    pooled_letters = "B, D" if pooled[1] == D else "B, R"
    head = ("linear, K = {}", "B, K") if cfg.num_classes else ("Identity (no head)", pooled_letters)
    blocks = f"blocks.0 …\nblocks.{L - 1}" if L > 1 else "blocks.0"
    row = [
        ("image", f"C = {C}, {H} × {W}", _shape("B, C, H, W", s["image"]), 0.0, 1.3),
        ("patch_embed", f"{ph} × {pw} patches → D", _shape("B, N, D", s["patch_embed"]), 0.2, 1.3),
        ("\n".join(embed) or "(none)", ", ".join(embed_what), _shape(tokens, s["tokens"]), 0.35),
        (blocks, f"L = {L} block{'s' * (L > 1)}", _shape(tokens, s["blocks.0"]), 0.5),
        ("norm", "Identity" if avg else "LayerNorm", _shape(tokens, s["norm"]), 0.65),
        ("\n".join(pool), pool_what or "class token", _shape(pooled_letters, pooled), 0.8, 1.1),
        ("head", head[0].format(s["head"][1]), _shape(head[1], s["head"]), 0.9, 1.1),
    ]
    widths = [spec[4] if len(spec) > 4 else 1.25 for spec in row]
    gap = (9.8 - sum(widths)) / (len(row) - 1)
    x, y0, hgt = 0.1, 2.8, 1.1
    for i, ((nm, what, shape, t, *_), w) in enumerate(zip(row, widths, strict=True)):
        _box(ax, (x, y0, w, hgt), t, nm, what, shape)
        if i == 3:  # zoom lines from the blocks box to the expanded block
            ax.plot([x, 0.4], [y0, 2.3], [x + w, 9.6], [y0, 2.3], color="0.5", lw=0.8, ls="--")
        if i:
            _arrow(ax, (x - gap, y0 + hgt / 2), (x, y0 + hgt / 2))
        x += w + gap

    # Below: one encoder block, drawn once, eqs. (2)-(3): pre-norm branches added to the stream.
    style = "round,pad=0,rounding_size=0.1"
    frame = FancyBboxPatch((0.3, 0.05), 9.4, 2.25, boxstyle=style, fc=_tint(0.5, 0.06), ec="0.5")
    ax.add_patch(frame).set_linestyle("--")
    header = f"one encoder block, blocks.i for i = 0 … {L - 1}"
    ax.text(0.45, 2.2, header, va="top", fontsize=9, fontweight="bold")
    ax.text(9.55, 2.22, f"× L = {L}", ha="right", va="top", fontsize=14, fontweight="bold")
    hidden = s["blocks.0.mlp.fc1"]  # (B, T, mlp_ratio · D)
    r = f"{hidden[2] / D:g}"
    sub = [
        ("norm1", "LayerNorm", 1.15),
        ("attn", f"h = {h} heads, d = {D // h}", 1.6),
        ("norm2", "LayerNorm", 1.15),
        ("mlp", f"D → {r}D → D, GELU", 1.6),
    ]
    ym, bh, ys = 0.92, 0.95, 1.65  # main line, box height, height of the residual connections
    ax.text(0.42, ym, "$z_{\\ell-1}$", va="center", fontsize=10)
    x, prev = 1.25, 0.8
    for i, (nm, what, w) in enumerate(sub):
        if i % 2 == 0:  # the residual branches off here ...
            split = x - 0.25
            ax.plot(
                [split, split], [ym, ys], color="0.2", lw=1.2, marker="o", ms=3.5, markevery=[0]
            )
        _arrow(ax, (prev, ym), (x, ym))
        _box(ax, (x, ym - bh / 2, w, bh), 0.5, nm, what, _shape(tokens, s[f"blocks.0.{nm}"]))
        prev, x = x + w, x + w + 0.3
        if i % 2 == 1:  # ... and is added back here
            ax.plot([split, x], [ys, ys], color="0.2", lw=1.2)
            _arrow(ax, (x, ys), (x, ym + 0.12))
            _arrow(ax, (prev, ym), (x - 0.12, ym))
            ax.add_patch(Circle((x, ym), 0.12, fc="white", ec="0.2", lw=1.2))
            ax.text(x, ym, "+", ha="center", va="center", fontsize=11)
            prev, x = x + 0.12, x + 0.55
    _arrow(ax, (prev, ym), (prev + 0.45, ym))
    ax.text(prev + 0.55, ym, "$z_\\ell$", va="center", fontsize=10)
    mlp = f"inside mlp: fc1 → (B, {T_letters}, {r}D) = ({', '.join(map(str, hidden))}), GELU"
    ax.text(0.45, 0.13, f"{mlp}, fc2 → ({tokens})", va="bottom", fontsize=8)
    return fig
