"""Figures of chapter 10: axial attention on the token grid. One query patch's row-step weights, its
column-step weights and what the two steps reach together, over the image; and the explorer over images,
layers and query patches.

They draw what `vitutils.analysis` computed (`axial_to_full`, `axial_reach`): (N, N) matrices over the
grid in raster order, heads fused. Nothing here computes a quantity the chapter states.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from vitutils.explorer import Control, Explorer
from vitutils.viz._common import hwc, outline, overlay, query_control

__all__ = ["axial_explorer", "plot_axial_reach"]

_PANELS = (
    "row step:\nits own row",
    "column step:\nits own column",
    "both steps (C·R):\nevery patch",
)


def plot_axial_reach(
    image: Tensor | np.ndarray,
    row: Tensor | np.ndarray,
    col: Tensor | np.ndarray,
    reach: Tensor | np.ndarray,
    grid: tuple[int, int],
    query: tuple[int, int],
    *,
    title: str = "",
) -> Figure:
    """Where query patch `query` = (row, col) attends: the image with the query outlined, then the query's
    row of the row step's weights `row`, of the column step's `col` and of the composed reach `reach`
    (each (N, N) over the gh × gw `grid`), each over the image on its own scale.

    Book: chapter 10, "Two steps reach every token".
    """
    gh, gw = grid
    r, c = query
    if not (0 <= r < gh and 0 <= c < gw):
        raise ValueError(f"query {query} is outside the {gh} × {gw} grid")
    picture = hwc(image)
    H, W = picture.shape[:2]
    ph, pw = H // gh, W // gw
    i = r * gw + c  # the query's index in raster order
    fig, axes = plt.subplots(1, 4, figsize=(8.2, 2.6), layout="constrained")
    axes[0].imshow(picture, interpolation="nearest")
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    axes[0].set_title(f"query patch ({r}, {c})", fontsize=8)
    outline(axes[0], r, c, ph, pw)
    for ax, matrix, name in zip(axes[1:], (row, col, reach), _PANELS, strict=True):
        weights = np.asarray(matrix, dtype=np.float32)[i].reshape(gh, gw)
        im = overlay(ax, picture, weights)
        outline(ax, r, c, ph, pw)
        ax.set_title(name, fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def _axial_frame(images, titles, rows, cols, reaches, grid, image, layer, query) -> Figure:
    k = layer - 1
    return plot_axial_reach(
        images[image],
        rows[image, k],
        cols[image, k],
        reaches[image, k],
        grid,
        query,
        title=f"{titles[image]}, layer {layer} (heads averaged; each map on its own scale)",
    )


def axial_explorer(
    images: Sequence[Tensor | np.ndarray],
    titles: Sequence[str],
    rows: Tensor,
    cols: Tensor,
    reaches: Tensor,
    grid: tuple[int, int],
    *,
    static_images: Sequence[int] = (0, 1),
    static_layers: Sequence[int] | None = None,
    static_queries: Sequence[tuple[int, int]] | None = None,
) -> Explorer:
    """The chapter's explorer: an image, a layer and a query patch, drawn by `plot_axial_reach`. `rows`,
    `cols` and `reaches` are (B, L, N, N), heads fused. The static book pre-renders `static_images` ×
    `static_layers` (default: the first and the last) × `static_queries` (default: three on the diagonal).

    Book: chapter 10, "Explore".
    """
    B, L = rows.shape[:2]
    gh, gw = grid
    if not (len(images) == len(titles) == B and cols.shape == rows.shape == reaches.shape):
        raise ValueError(
            f"need one title and one (L, N, N) stack per map and image: {len(images)} images, "
            f"{len(titles)} titles, rows {tuple(rows.shape)}, cols {tuple(cols.shape)}, "
            f"reaches {tuple(reaches.shape)}"
        )
    if rows.shape[-1] != gh * gw:
        raise ValueError(f"maps over {rows.shape[-1]} tokens do not fit a {gh} × {gw} grid")
    return Explorer(
        title="Axial attention: row step, column step and what both reach",
        plot=_axial_frame,
        controls=(
            Control("image", tuple(range(B)), format=titles.__getitem__, static=static_images),
            Control("layer", tuple(range(1, L + 1)), static=static_layers or (1, L)),
            query_control(gh, gw, static_queries),
        ),
        fixed={
            "images": images,
            "titles": titles,
            "rows": rows,
            "cols": cols,
            "reaches": reaches,
            "grid": (gh, gw),
        },
        static_format="jpeg",
        static_dpi=60,
    )
