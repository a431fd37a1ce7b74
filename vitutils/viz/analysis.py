"""Figures of chapter 8: inside a trained ViT. The three panels of the ViT paper's Figure 7, the class
token's attention per layer and head, attention rollout, and the explorer over images, layers and heads.

They draw what `vitutils.analysis` computed (components, maps, rollouts, distances); nothing here computes
a quantity the chapter states. Attention maps are drawn over their image with `imshow`'s extent, so a
gh × gw map covers the H × W image without resampling anything in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from vitutils.explorer import Control, Explorer
from vitutils.viz._common import hwc, overlay

__all__ = [
    "inside_explorer",
    "plot_attention_distance",
    "plot_class_attention",
    "plot_embedding_components",
    "plot_inside",
    "plot_rollouts",
]


def plot_embedding_components(
    components: Tensor, explained: Tensor, *, ncols: int = 7, title: str = ""
) -> Figure:
    """Figure 7 (left): principal components (k, C, P, P) of the patch-embedding filters as RGB patches,
    each stretched to the full colour range, with the share of variance it explains.

    Book: chapter 8, "Figure 7 on our own model".
    """
    k = len(components)
    nrows = -(-k // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.05 * ncols, 1.2 * nrows + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            c = components[i].numpy()
            lo, hi = c.min(), c.max()
            ax.imshow(((c - lo) / ((hi - lo) or 1.0)).transpose(1, 2, 0), interpolation="nearest")
            ax.set_title(f"{i + 1}: {100 * float(explained[i]):.0f} %", fontsize=7)
    fig.suptitle(title or "Principal components of the patch-embedding filters")
    fig.tight_layout()
    return fig


def plot_attention_distance(
    distances: Mapping[str, Tensor],
    *,
    reference: float | None = None,
    title: str = "Mean attention distance",
) -> Figure:
    """Figure 7 (right): each head's mean attention distance (L, h) against its layer, one marker per model;
    `reference` draws the distance of uniform attention over the grid.

    Book: chapter 8, "Mean attention distance".
    """
    fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    markers = iter(["o", "s", "^", "D"])
    colors = iter(["tab:blue", "tab:orange", "tab:green", "tab:red"])
    for name, d in distances.items():
        L, h = d.shape
        layers = np.repeat(np.arange(1, L + 1), h) + np.tile(np.linspace(-0.12, 0.12, h), L)
        ax.scatter(
            layers, d.flatten().numpy(), label=name, marker=next(markers), color=next(colors), s=28
        )
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label="uniform attention")
    ax.set(xlabel="network depth (layer)", ylabel="mean attention distance (pixels)", title=title)
    ax.set_xticks(np.arange(1, L + 1))
    ax.legend(fontsize=8)
    return fig


def plot_class_attention(image: Tensor | np.ndarray, maps: Tensor, *, title: str = "") -> Figure:
    """The class token's attention over the patches for one image, (L, h, gh, gw): a row per layer, a
    column per head, each map on its own colour scale over the image.

    Book: chapter 8, "What the class token looks at".
    """
    L, h = maps.shape[:2]
    fig, axes = plt.subplots(L, h + 1, figsize=(1.3 * (h + 1), 1.3 * L + 0.6), squeeze=False)
    for layer in range(L):
        axes[layer, 0].imshow(hwc(image), interpolation="nearest")
        axes[layer, 0].set_xticks([])
        axes[layer, 0].set_yticks([])
        axes[layer, 0].set_ylabel(f"layer {layer + 1}", fontsize=8)
        for head in range(h):
            overlay(axes[layer, head + 1], image, maps[layer, head])
            if layer == 0:
                axes[layer, head + 1].set_title(f"head {head + 1}", fontsize=8)
    fig.suptitle(title or "What the class token attends to, per layer and head")
    fig.tight_layout()
    return fig


def plot_rollouts(
    images: Sequence[Tensor | np.ndarray],
    maps: Tensor,
    titles: Sequence[str],
    *,
    title: str = "Attention rollout of the class token",
) -> Figure:
    """Images (top row) and their rollout maps (B, gh, gw) over them (bottom row).

    Book: chapter 8, "Attention rollout".
    """
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.45 * n, 3.4), squeeze=False)
    for k in range(n):
        axes[0, k].imshow(hwc(images[k]), interpolation="nearest")
        axes[0, k].set_title(titles[k], fontsize=7)
        axes[0, k].axis("off")
        overlay(axes[1, k], images[k], maps[k])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_inside(
    images: Sequence[Tensor | np.ndarray],
    titles: Sequence[str],
    maps: Tensor,
    rollouts: Tensor,
    *,
    image: int,
    layer: int,
    head: str,
) -> Figure:
    """One frame of the explorer: the class token's attention of one layer and head over image `image`
    (`maps` is (B, L, h + 1, gh, gw), the last head the mean over heads), beside its rollout (B, gh, gw).

    Book: chapter 8, "Explore".
    """
    h = maps.shape[2] - 1
    k = h if head == "mean" else int(head) - 1
    fig, axes = plt.subplots(1, 2, figsize=(4.6, 2.7), layout="constrained")
    overlay(axes[0], images[image], maps[image, layer - 1, k])
    which = "mean of the heads" if head == "mean" else f"head {head}"
    axes[0].set_title(f"class token, layer {layer},\n{which}", fontsize=8)
    overlay(axes[1], images[image], rollouts[image])
    axes[1].set_title("rollout through\nall layers", fontsize=8)
    fig.suptitle(f"{titles[image]} (each map on its own scale)", fontsize=8)
    return fig


def inside_explorer(
    images: Sequence[Tensor | np.ndarray],
    titles: Sequence[str],
    maps: Tensor,
    rollouts: Tensor,
    *,
    static_images: Sequence[int] | None = None,
) -> Explorer:
    """The chapter's explorer: an image, a layer and a head (or their mean), drawn by `plot_inside`. The
    static book pre-renders `static_images` (default: all) × every layer × every head.

    Book: chapter 8, "Explore".
    """
    B, L, heads = maps.shape[:3]
    if not len(images) == len(titles) == B == len(rollouts):
        raise ValueError(
            f"need one title, map stack and rollout per image: {len(images)} images, "
            f"{len(titles)} titles, {B} map stacks, {len(rollouts)} rollouts"
        )
    head_values = (*(str(i) for i in range(1, heads)), "mean")
    return Explorer(
        title="Inside the trained ViT: class-token attention and rollout",
        plot=plot_inside,
        controls=(
            Control(
                "image",
                tuple(range(B)),
                format=lambda i: titles[i].split("\n")[0],
                static=None if static_images is None else tuple(static_images),
            ),
            Control("layer", tuple(range(1, L + 1))),
            Control("head", head_values, default="mean"),
        ),
        fixed={"images": images, "titles": titles, "maps": maps, "rollouts": rollouts},
        static_format="jpeg",
        static_dpi=60,
    )
