"""Figures of chapter 1: an image as a grid and as a sequence of patches (ViT paper, eq. 1).

An `image` argument is an (H, W, 3) array (uint8, or float in [0, 1]) or a (3, H, W) tensor in [0, 1]
(anything `vitutils.data.to_tensor` accepts); its height and width must be multiples of the patch size P.
Patches come from `vitutils.patches.patchify`; these functions only draw them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from vitutils.data.images import SAMPLE_IMAGES, square_photo
from vitutils.explorer import Control, Explorer
from vitutils.patches import to_2tuple, valid_patch_sizes
from vitutils.viz._common import centre_ticks, image_and_tiles, outline, p_label, rgb, tile

__all__ = [
    "patch_explorer",
    "plot_image_with_grid",
    "plot_patch_explorer",
    "plot_patch_grid",
    "plot_patch_sequence",
]


def plot_patch_grid(image: np.ndarray | Tensor, patch_size: int, *, gap: float = 0.06) -> Figure:
    """The image cut into its gh × gw patches, drawn apart with white gaps of `gap` × P pixels.

    Book: chapter 1, "Images as sequences of patches".
    """
    x, tiles, (gh, gw) = image_and_tiles(image, patch_size)
    _, H, W = x.shape
    ph, pw = to_2tuple(patch_size)
    g = max(1, round(gap * max(ph, pw))) if gap > 0 else 0
    fig, ax = plt.subplots(figsize=(5, min(8, 5 * H / W) + 0.6), layout="constrained")
    ax.imshow(tile(tiles, gh, gw, g))
    centre_ticks(ax, "x", gw, pw + g)
    centre_ticks(ax, "y", gh, ph + g)
    ax.set(xlabel="patch column", ylabel="patch row")
    ax.set_title(f"{H} × {W} image, {p_label(patch_size)}: N = {gh} × {gw} = {gh * gw} patches")
    return fig


def plot_patch_sequence(
    image: np.ndarray | Tensor, patch_size: int, *, max_patches: int | None = None
) -> Figure:
    """The flattened sequence: patches side by side in raster order, numbered by token index n.

    Shows the first `max_patches` patches (all of them if None); a long sequence wraps after 32 tokens,
    like a line of text.

    Book: chapter 1, "Images as sequences of patches".
    """
    _, tiles, _ = image_and_tiles(image, patch_size)
    N, C, ph, pw = tiles.shape
    if max_patches is not None and max_patches < 1:
        raise ValueError(f"max_patches must be at least 1, got {max_patches}")
    K = N if max_patches is None else min(N, max_patches)
    cols = min(K, 32)
    rows = math.ceil(K / cols)
    g = max(1, round(0.15 * max(ph, pw)))
    width = min(10, max(4, 0.35 * cols))
    fig, ax = plt.subplots(figsize=(width, width * rows / cols + 1.2), layout="constrained")
    ax.imshow(tile(tiles[:K], rows, cols, g))
    centre_ticks(ax, "x", cols, pw + g)
    if rows > 1:
        centre_ticks(ax, "y", rows, ph + g, every=cols)
        ax.set(xlabel="token index n − first index of the line", ylabel="first index of the line")
    else:
        ax.set_yticks([])
        ax.set(xlabel="token index n (raster order: n = row · gw + column)")
    shown = f", first {K} shown" if K < N else ""
    ax.set_title(
        f"The sequence: N = {N} patches of C·P·P = {C}·{ph}·{pw} = {C * ph * pw} values{shown}"
    )
    return fig


def plot_image_with_grid(
    image: np.ndarray | Tensor, patch_size: int, *, show_grid: bool = True, ax: Axes | None = None
) -> Figure:
    """The image with its patch grid drawn on top (patch numbers too when there are at most 64 patches).

    Book: chapter 1, "Images as sequences of patches".
    """
    x, _, (gh, gw) = image_and_tiles(image, patch_size)
    C, H, W = x.shape
    ph, pw = to_2tuple(patch_size)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, min(8, 5 * H / W) + 0.6), layout="constrained")
    ax.imshow(rgb(x), extent=(0, W, H, 0))
    if show_grid:
        cell_pt = ax.bbox.width * 72 / ax.figure.dpi / gw  # patch width in points, roughly
        lw = float(np.clip(0.08 * cell_pt, 0.2, 1.5))
        ax.vlines(np.arange(0, W + 1, pw), 0, H, colors="white", linewidth=lw)
        ax.hlines(np.arange(0, H + 1, ph), 0, W, colors="white", linewidth=lw)
        if gh * gw <= 64:
            for n in range(gh * gw):
                r, c = divmod(n, gw)
                ax.text(
                    c * pw + 2,
                    r * ph + 2,
                    str(n),
                    color="white",
                    fontsize=7,
                    va="top",
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0},
                )
    ax.set(xlim=(0, W), ylim=(H, 0), xlabel="x (pixels)", ylabel="y (pixels)")
    grid = f", {p_label(patch_size)} grid: {gh} × {gw} = {gh * gw} patches" if show_grid else ""
    ax.set_title(f"{H} × {W} image{grid}")
    return ax.figure


def plot_patch_explorer(
    image: np.ndarray | Tensor, patch_size: int, show_grid: bool = True
) -> Figure:
    """The patch explorer's view: the image with its grid, the start of the sequence, one patch flattened.

    Book: chapter 1, "Images as sequences of patches".
    """
    x, tiles, (gh, gw) = image_and_tiles(image, patch_size)
    N, C, ph, pw = tiles.shape
    # a fixed layout: frames of the explorer line up, and it draws much faster than a layout engine
    fig = plt.figure(figsize=(9, 4))
    ax_img = fig.add_axes((0.07, 0.11, 0.36, 0.74))
    ax_seq = fig.add_axes((0.5, 0.57, 0.48, 0.22))
    ax_vec = fig.add_axes((0.5, 0.13, 0.48, 0.24))
    plot_image_with_grid(x, patch_size, show_grid=show_grid, ax=ax_img)
    ax_img.set_title("the image and its patch grid" if show_grid else "the image")

    # the sequence: the first patches, an ellipsis, the last patch
    shown = list(range(min(N, 8))) + ([N - 1] if N > 8 else [])
    slots = shown if N <= 9 else [*shown[:-1], None, shown[-1]]
    g = max(1, round(0.2 * max(ph, pw)))
    blank = torch.ones(C, ph, pw)
    ax_seq.imshow(
        tile(torch.stack([tiles[n] if n is not None else blank for n in slots]), 1, len(slots), g)
    )
    ax_seq.set_xticks(
        [k * (pw + g) + pw / 2 - 0.5 for k in range(len(slots))],
        ["…" if n is None else str(n) for n in slots],
    )
    ax_seq.set_yticks([])
    ax_seq.set(xlabel="token index n", title=f"the sequence (raster order), {N} tokens")
    for n in shown:
        outline(ax_img, n // gw, n % gw, ph, pw, color="gold", lw=1.2)

    # patch 0 flattened in (c, p1, p2) order: the vector the patch embedding multiplies
    ax_vec.imshow(tiles[0].reshape(1, -1).numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax_vec.set_xticks([(c + 0.5) * ph * pw for c in range(C)], "RGB"[:C] if C == 3 else range(C))
    ax_vec.vlines([c * ph * pw - 0.5 for c in range(1, C)], -0.5, 0.5, colors="white", linewidth=1)
    ax_vec.set_yticks([])
    ax_vec.set(
        xlabel="feature index in (c, p1, p2) order, value in [0, 1]",
        title=f"patch 0 flattened: C·P·P = {C}·{ph}·{pw} = {C * ph * pw} numbers",
    )
    fig.suptitle(f"{p_label(patch_size)}: N = {gh} × {gw} = {N} patches", fontweight="bold")
    return fig


def _photo_frame(photos: dict, image: str, patch_size: int, show_grid: bool) -> Figure:
    return plot_patch_explorer(photos[image], patch_size, show_grid=show_grid)


def patch_explorer(
    images: Sequence[str] | Mapping[str, np.ndarray] = SAMPLE_IMAGES,
    *,
    size: int = 224,
    static_images: Sequence[str] | None = None,
    static_patch_sizes: Sequence[int] | None = None,
) -> Explorer:
    """The patch explorer: a photo, a patch size P (divisors of `size` from 4 up) and the grid overlay,
    drawn by `plot_patch_explorer`.

    `images` are sample names or {name: (H, W, 3) uint8 array}; each is cut to a size × size square. The
    static book pre-renders `static_images` (default: the first two) × `static_patch_sizes` (default: the
    valid sizes from 7 to 56, for 224 pixels 7, 8, 14, 16, 28, 32 and 56).

    Book: chapter 1, "Explore: patch size and sequence length".
    """
    items = images.items() if isinstance(images, Mapping) else ((n, n) for n in images)
    photos = {name: square_photo(image, size) for name, image in items}
    sizes = valid_patch_sizes(size, size, min_size=4)
    default = 16 if 16 in sizes else sizes[len(sizes) // 2]
    if static_patch_sizes is None:
        static_patch_sizes = [p for p in sizes if 7 <= p <= 56]
    static_sizes = sorted({*static_patch_sizes, default})
    return Explorer(
        title="Patch explorer",
        plot=_photo_frame,
        controls=(
            Control("image", tuple(photos), static=tuple(static_images or list(photos)[:2])),
            Control(
                "patch_size",
                tuple(sizes),
                label="patch size P",
                default=default,
                static=tuple(static_sizes),
            ),
            Control("show_grid", (True, False), label="grid overlay"),
        ),
        fixed={"photos": photos},
        static_format="jpeg",
        static_dpi=65,
    )
