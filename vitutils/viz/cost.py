"""Figures of chapter 9: what a ViT costs, FLOPs per part and memory at the peak, and the cost explorer.

Every number comes from `vitutils.cost` (`forward_flops`, `memory`, `num_tokens`); these functions only
draw it, in a unit chosen for its size (MFLOPs to PFLOPs, kB to TB, decimal), with the value written beside
each bar so that a part far smaller than the largest one still reads. Memory is shown for the teaching
path (explicit softmax, which keeps h × T × T attention weights) beside the fused one.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vitutils import cost
from vitutils.explorer import Control, Explorer
from vitutils.vit import vit_config

__all__ = ["cost_explorer", "plot_cost"]

# The paper's model sizes (its Table 1, with DeiT's Ti and S) as the menu writes them.
_MODEL_NAMES = {
    "vit_tiny_patch16_224": "ViT-Ti",
    "vit_small_patch16_224": "ViT-S",
    "vit_base_patch16_224": "ViT-B",
    "vit_large_patch16_224": "ViT-L",
}
_FLOP_UNITS = (("MFLOPs", 1e6), ("GFLOPs", 1e9), ("TFLOPs", 1e12), ("PFLOPs", 1e15))
_BYTE_UNITS = (("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12))
_PATHS = {"teaching path\n(fused=False)": False, "fused path\n(fused=True)": True}
# The keys of `cost.memory`; the T × T weights in viridis's yellow, the rest darker
_COLOURS = {
    "parameters": plt.get_cmap("viridis")(0.1),
    "AdamW moments": plt.get_cmap("viridis")(0.3),
    "gradients": plt.get_cmap("viridis")(0.5),
    "other activations": plt.get_cmap("viridis")(0.72),
    cost.ATTENTION_WEIGHTS: plt.get_cmap("viridis")(0.95),
}
_BAR = plt.get_cmap("viridis")(0.35)
# The FLOPs of QKᵀ and AV, the products that make the T × T weights: coloured like them
_QUADRATIC = next(part for part in cost.PARTS if part.startswith("attention"))


def _unit(value: float, units: tuple[tuple[str, float], ...]) -> tuple[str, float]:
    """(name, size) of the largest unit in which `value` is at least 1 (the smallest unit if none)."""
    chosen = units[0]
    for name, size in units:
        if value >= size:
            chosen = (name, size)
    return chosen


def _amount(value: float, units: tuple[tuple[str, float], ...]) -> str:
    """A value in its own unit with three significant digits: 2.1e10 FLOPs -> "21.1 GFLOPs"."""
    if value == 0:
        return "0"
    name, size = _unit(value, units)
    return f"{value / size:.3g} {name}"


def _flop_panel(ax: Axes, flops: dict[str, int]) -> None:
    name, size = _unit(max(flops.values()), _FLOP_UNITS)
    parts = list(flops)
    colours = [_COLOURS[cost.ATTENTION_WEIGHTS] if p == _QUADRATIC else _BAR for p in parts]
    bars = ax.barh(parts, [flops[p] / size for p in parts], color=colours)
    ax.bar_label(bars, [_amount(flops[p], _FLOP_UNITS) for p in parts], padding=3, fontsize=8)
    ax.invert_yaxis()  # the parts in the order the image meets them
    ax.set_xlim(0, max(flops.values()) / size * 1.4)  # room for the values
    ax.tick_params(labelsize=8)
    ax.set_xlabel(f"forward FLOPs per image ({name})", fontsize=8)
    total = _amount(sum(flops.values()), _FLOP_UNITS)
    ax.set_title(f"(a) FLOPs of a forward pass: {total}", fontsize=9)


def _memory_panel(ax: Axes, need: dict[bool, dict[str, int]], title: str) -> None:
    """Stacked bars, one per path, one segment per key of `cost.memory` (labelled with the key)."""
    totals = {fused: sum(parts.values()) for fused, parts in need.items()}
    name, size = _unit(max(totals.values()), _BYTE_UNITS)
    labels = list(_PATHS)
    left = [0.0] * len(labels)
    for key in need[True]:  # the keys of `cost.memory`, in its order
        widths = [need[_PATHS[label]][key] / size for label in labels]
        ax.barh(labels, widths, left=left, color=_COLOURS[key], label=key, height=0.6)
        left = [a + w for a, w in zip(left, widths, strict=True)]  # the next segment starts here
    for y, label in enumerate(labels):
        text = _amount(totals[_PATHS[label]], _BYTE_UNITS)
        ax.annotate(
            text, (left[y], y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8
        )
    ax.invert_yaxis()
    ax.set_xlim(0, max(left) * 1.3)
    ax.tick_params(labelsize=8)
    ax.set_xlabel(f"memory at the peak ({name})", fontsize=8)
    ax.set_title(title, fontsize=9)


def plot_cost(
    model: str = "vit_base_patch16_224", img_size: int = 224, patch_size: int = 16
) -> Figure:
    """What one image costs preset `model` at a square `img_size` with `patch_size`: (a) forward FLOPs
    per part (`cost.forward_flops`), (b) the memory of an inference forward pass and (c) of one AdamW
    training step, both at batch 1 in float32 (`cost.memory`), for the teaching and the fused path.

    Book: chapter 9, "Explore the cost".
    """
    overrides = {"img_size": img_size, "patch_size": patch_size}
    c = vit_config(model, **overrides)
    T = cost.num_tokens(model, **overrides)
    # Fixed margins (the tick labels are fixed strings): twice as fast as a constrained layout.
    fig = plt.figure(figsize=(8, 3.8))
    _flop_panel(
        fig.add_gridspec(left=0.16, right=0.49, top=0.84, bottom=0.13).subplots(),
        cost.forward_flops(model, **overrides),
    )
    grid = fig.add_gridspec(2, 1, left=0.65, right=0.98, top=0.84, bottom=0.25, hspace=0.9)
    top, bottom = grid.subplots()
    for ax, training, title in (
        (top, False, "(b) inference, batch 1"),
        (bottom, True, "(c) one training step (AdamW), batch 1"),
    ):
        need = {
            fused: cost.memory(model, batch_size=1, training=training, fused=fused, **overrides)
            for fused in (False, True)
        }
        _memory_panel(ax, need, title)
    handles, labels = bottom.get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower right",  # under the memory panels, whatever the width of its columns
        bbox_to_anchor=(1, 0),
        ncols=3,
        fontsize=7.5,
        frameon=False,
        columnspacing=0.8,
        handlelength=1.2,
    )
    name = _MODEL_NAMES.get(model, model)
    fig.suptitle(
        f"{name} (D = {c.embed_dim}, L = {c.depth}, h = {c.num_heads}) on a {img_size} × {img_size} "
        f"image, P = {patch_size}: T = {T} tokens",
        fontsize=10,
        y=0.98,
    )
    return fig


def cost_explorer(
    *,
    img_sizes: tuple[int, ...] = (224, 384, 512, 768, 1024),
    patch_sizes: tuple[int, ...] = (8, 16, 32),
    static_img_sizes: tuple[int, ...] = (224, 512, 1024),
) -> Explorer:
    """The cost explorer: a model size, an image size and a patch size, drawn by `plot_cost`. Every patch
    size must divide every image size. The static book pre-renders every model and patch size at
    `static_img_sizes` (4 × 3 × 3 frames by default, about 1.3 MB).

    Book: chapter 9, "Explore the cost".
    """
    stray = [(s, p) for s in img_sizes for p in patch_sizes if s % p]
    if stray:
        raise ValueError(
            f"every patch size must divide every image size, got (size, patch) {stray}"
        )
    return Explorer(
        title="What a ViT costs: FLOPs and memory by part",
        plot=plot_cost,
        controls=(
            Control(
                "model",
                tuple(_MODEL_NAMES),
                default="vit_base_patch16_224",
                format=_MODEL_NAMES.__getitem__,
            ),
            Control(
                "img_size", img_sizes, label="image size", default=224, static=static_img_sizes
            ),
            Control("patch_size", patch_sizes, label="patch size", default=16),
        ),
        static_format="jpeg",
        static_dpi=70,
    )
