"""Drawing helpers shared by the figure modules: an image cut into patch tiles, tick labels, outlines.

Nothing here computes anything a chapter states; it only lays out what other modules computed.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from torch import Tensor

from vitutils.data.images import to_tensor
from vitutils.explorer import Control
from vitutils.patches import grid_size, patchify, to_2tuple


def image_and_tiles(image, patch_size) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """image -> (its (C, H, W) tensor in [0, 1], patches (N, C, ph, pw) in raster order, grid (gh, gw))."""
    x = to_tensor(image).clamp(0, 1)  # (C, H, W)
    C, H, W = x.shape
    ph, pw = to_2tuple(patch_size)
    grid = grid_size((H, W), (ph, pw))
    tiles = patchify(x[None], (ph, pw))[0].reshape(-1, C, ph, pw)  # (N, C, ph, pw)
    return x, tiles, grid


def rgb(x: Tensor) -> np.ndarray:
    """(C, H, W) tensor, C = 1 or 3 -> (H, W, 3) array for `imshow`."""
    C, H, W = x.shape
    return x.expand(3, H, W).permute(1, 2, 0).numpy()  # (H, W, 3)


def hwc(image: Tensor | np.ndarray) -> np.ndarray:
    """An image as (C, H, W) or (H, W, C), tensor or array -> an (H, W, C) array for `imshow`."""
    a = np.asarray(image)
    return a.transpose(1, 2, 0) if a.ndim == 3 and a.shape[0] in (1, 3) else a  # (H, W, C)


def overlay(ax: Axes, image: Tensor | np.ndarray, heat: Tensor | np.ndarray, alpha: float = 0.6):
    """The image, and the (gh, gw) map stretched over it with `imshow`'s extent (magma, its own 0..max
    scale), so that nothing is resampled in Python; returns the map's image for a colour bar."""
    picture = hwc(image)
    H, W = picture.shape[:2]
    heat = np.asarray(heat, dtype=np.float32)
    ax.imshow(picture, extent=(0, W, H, 0), interpolation="nearest")
    im = ax.imshow(
        heat,
        extent=(0, W, H, 0),
        cmap="magma",
        alpha=alpha,
        vmin=0,
        vmax=float(heat.max()) or 1.0,
        interpolation="nearest",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def query_control(gh: int, gw: int, static_queries=None) -> Control:
    """An explorer's "query" control over every patch (row, col) of a gh × gw grid; the static book
    pre-renders `static_queries` (default: three on the diagonal, the first of them the default)."""
    from vitutils.explorer import (
        Control,
    )  # here: explorer imports nothing from viz, but keep it lazy

    if static_queries is None:
        static_queries = [(gh // 4, gw // 4), (gh // 2, gw // 2), (3 * gh // 4, 3 * gw // 4)]
    static_queries = tuple(tuple(q) for q in static_queries)
    return Control(
        "query",
        tuple((r, c) for r in range(gh) for c in range(gw)),
        label="query patch (row, col)",
        default=static_queries[0],
        static=static_queries,
    )


def p_label(patch_size) -> str:
    ph, pw = to_2tuple(patch_size)
    return f"P = {ph}" if ph == pw else f"P = {ph} × {pw}"


def tile(tiles: Tensor, rows: int, cols: int, gap: int) -> np.ndarray:
    """Lay (K, C, ph, pw) patches out row by row on a white canvas with `gap` pixels between them."""
    K, C, ph, pw = tiles.shape
    canvas = np.ones((rows * ph + (rows - 1) * gap, cols * pw + (cols - 1) * gap, 3), np.float32)
    for k in range(K):
        r, c = divmod(k, cols)
        top, left = r * (ph + gap), c * (pw + gap)
        canvas[top : top + ph, left : left + pw] = tiles[k].expand(3, ph, pw).permute(1, 2, 0)
    return canvas


def centre_ticks(
    ax: Axes, axis: str, count: int, step: float, first: int = 0, every: int = 1
) -> None:
    """Tick labels first, first + every, … at the centres of `count` cells `step` pixels apart (≤ ~16)."""
    thin = max(1, math.ceil(count / 16))
    index = np.arange(0, count, thin)
    (ax.set_xticks if axis == "x" else ax.set_yticks)(
        index * step + step / 2 - 0.5, first + every * index
    )


def outline(
    ax: Axes, row: int, col: int, ph: int, pw: int, color: str = "cyan", lw: float = 2
) -> None:
    """A rectangle around the patch at (row, col) of an image drawn in pixel coordinates."""
    ax.add_patch(Rectangle((col * pw, row * ph), pw, ph, fill=False, edgecolor=color, linewidth=lw))
