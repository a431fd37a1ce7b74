"""Figures of chapter 4: where a patch of a real photo attends, before any training.

The weights come from `vitutils.attention.patch_attention` (hand-made patch features as queries and keys)
and their entropy from `vitutils.attention.attention_entropy`; these functions only draw them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from vitutils.attention import PATCH_FEATURE_KINDS, attention_entropy, patch_attention
from vitutils.data.images import square_photo
from vitutils.explorer import Control, Explorer
from vitutils.patches import grid_index, grid_size, to_2tuple
from vitutils.viz._common import image_and_tiles, outline, p_label, query_control, rgb
from vitutils.viz.patches import plot_image_with_grid

__all__ = ["attention_explorer", "plot_patch_attention"]

# Temperatures offered live: 4 steps per decade from 0.01 to 10, rounded so that 0.01, 0.1, 1 and 10 are
# exactly among them.
TEMPERATURES = tuple(round(10 ** (k / 4), 4) for k in range(-8, 5))


def plot_patch_attention(
    image: np.ndarray | Tensor,
    patch_size: int,
    query: int | tuple[int, int],
    *,
    kind: str = "pixels",
    temperature: float = 1.0,
) -> Figure:
    """Where one patch attends: the query patch outlined, and its attention weights over all patches
    (magma) on top of the image. The title gives the weights' entropy in nats (log N when uniform).

    Book: chapter 4, "Attention on a real photo".
    """
    x, _, (gh, gw) = image_and_tiles(image, patch_size)
    C, H, W = x.shape
    ph, pw = to_2tuple(patch_size)
    n, r, c = grid_index(query, (gh, gw))
    w = patch_attention(x, patch_size, kind=kind, temperature=temperature)[n]  # (N,)
    entropy = float(attention_entropy(w))
    height = 3.2 * H / W + 1.3
    fig = plt.figure(figsize=(8.5, height))  # fixed layout, as in plot_patch_explorer
    grid = fig.add_gridspec(
        1, 2, left=0.07, right=0.88, wspace=0.3, bottom=0.45 / height, top=1 - 0.8 / height
    )
    ax_img, ax_att = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    cax = ax_att.inset_axes((1.05, 0, 0.05, 1))  # follows the image's box, whatever its aspect
    plot_image_with_grid(x, patch_size, show_grid=False, ax=ax_img)
    ax_img.set_title("query patch (outlined)")
    ax_att.imshow(rgb(x), extent=(0, W, H, 0))
    im = ax_att.imshow(
        w.reshape(gh, gw).numpy(),
        cmap="magma",
        alpha=0.7,
        extent=(0, W, H, 0),
        interpolation="nearest",
        vmin=0,
    )
    fig.colorbar(im, cax=cax, label="attention weight")
    ax_att.set(
        xlabel="x (pixels)", ylabel="y (pixels)", title=f"its weights over all {gh * gw} patches"
    )
    for ax in (ax_img, ax_att):
        outline(ax, r, c, ph, pw)
    fig.suptitle(
        f"{p_label(patch_size)}, query {n} (row {r}, col {c}), kind = {kind}, temperature = {temperature:g}\n"
        f"entropy of the weights {entropy:.2f} nats (uniform: log N = {math.log(gh * gw):.2f})"
    )
    return fig


def _query_frame(image, patch_size, query, kind, temperature) -> Figure:
    return plot_patch_attention(image, patch_size, query, kind=kind, temperature=temperature)


def attention_explorer(
    image: str | np.ndarray = "chelsea",
    *,
    size: int = 224,
    patch_size: int = 16,
    static_queries: Sequence[tuple[int, int]] | None = None,
    static_temperatures: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
) -> Explorer:
    """The attention explorer: a query patch (row, col), the kind of features and the temperature, drawn by
    `plot_patch_attention` on `image` (a sample name or an (H, W, 3) uint8 photo) cut to a size × size
    square. The static book pre-renders `static_queries` (default: three spread over the grid) × every kind ×
    `static_temperatures`.

    Book: chapter 4, "Attention on a real photo".
    """
    photo = square_photo(image, size)  # (size, size, 3)
    gh, gw = grid_size(size, patch_size)
    return Explorer(
        title="Attention explorer",
        plot=_query_frame,
        controls=(
            query_control(gh, gw, static_queries),
            Control("kind", PATCH_FEATURE_KINDS, label="features"),
            Control("temperature", TEMPERATURES, default=1.0, static=tuple(static_temperatures)),
        ),
        fixed={"image": photo, "patch_size": patch_size},
        static_format="jpeg",
        static_dpi=60,
    )
