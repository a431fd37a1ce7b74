"""Figures of chapter 3: position encodings as heatmaps and as the similarity maps of the ViT paper's Figure 7.

An encoding argument `pe` is (N, D) or (1, N, D). The similarities come from
`vitutils.positional.pos_embed_similarity` and the example encodings from
`vitutils.positional.example_encoding`; these functions only draw them.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from vitutils.explorer import Control, Explorer
from vitutils.patches import grid_index, to_2tuple
from vitutils.positional import ENCODING_KINDS, example_encoding, pos_embed_similarity
from vitutils.viz._common import centre_ticks

__all__ = [
    "plot_position_similarity",
    "plot_positional_explorer",
    "plot_positional_heatmap",
    "plot_similarity_grid",
    "positional_explorer",
]


def _low(sim: Tensor, vmin: float | None) -> float:
    """Bottom of the colour scale: the smallest similarity rounded down to 0.1, unless given."""
    return math.floor(float(sim.min()) * 10) / 10 if vmin is None else vmin


def plot_positional_heatmap(
    pe: Tensor, *, title: str | None = None, ax: Axes | None = None
) -> Figure:
    """Encodings as an image: one row per position, one column per dimension (RdBu, centred on 0).

    Book: chapter 3, "Positional encodings".
    """
    pe = torch.as_tensor(pe).detach().float().cpu()
    pe = pe[0] if pe.ndim == 3 and pe.shape[0] == 1 else pe
    if pe.ndim != 2:
        raise ValueError(f"expected encodings of shape (N, D), got {tuple(pe.shape)}")
    N, D = pe.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    vmax = float(pe.abs().max()) or 1.0
    im = ax.imshow(
        pe.numpy(), cmap="RdBu", vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest"
    )
    ax.figure.colorbar(im, ax=ax, label="value")
    ax.set(xlabel="embedding dimension", ylabel="position (token index)")
    ax.set_title(title or f"Positional encodings: N = {N} positions × D = {D} dimensions")
    return ax.figure


def plot_similarity_grid(
    pe: Tensor,
    grid_size: int | tuple[int, int],
    *,
    title: str | None = None,
    vmin: float | None = None,
) -> Figure:
    """Figure 7 of the ViT paper: for each position (r, c) of the gh × gw grid, a small map of the cosine
    similarity between its encoding and the encoding of every position. One viridis scale for all maps,
    from `vmin` (default: the smallest similarity, rounded down to 0.1; the paper uses -1) to 1.

    Book: chapter 3, "Positional encodings".
    """
    gh, gw = to_2tuple(grid_size)
    sim = pos_embed_similarity(pe, (gh, gw))  # (N, N)
    low = _low(sim, vmin)
    sim = sim.reshape(gh * gw, gh, gw).numpy()  # (N, gh, gw)
    width = min(9.0, max(3.5, 0.5 * gw + 1))
    fig, axes = plt.subplots(gh, gw, figsize=(width, (width - 0.8) * gh / gw + 0.8), squeeze=False)
    fig.subplots_adjust(left=0.08, right=0.86, bottom=0.07, top=0.9, wspace=0.08, hspace=0.08)
    for n, ax in enumerate(axes.flat):
        im = ax.imshow(sim[n], cmap="viridis", vmin=low, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    for r in range(gh):
        axes[r, 0].set_ylabel(str(r), rotation=0, ha="right", va="center", fontsize=7)
    for c in range(gw):
        axes[-1, c].set_xlabel(str(c), fontsize=7)
    fig.colorbar(im, cax=fig.add_axes((0.89, 0.15, 0.025, 0.7)), label="cosine similarity")
    fig.supxlabel("input patch column", fontsize=10)
    fig.supylabel("input patch row", fontsize=10)
    fig.suptitle(title or "Similarity of each position's encoding to all others")
    return fig


def plot_position_similarity(
    pe: Tensor,
    grid_size: int | tuple[int, int],
    position: int | tuple[int, int],
    *,
    vmin: float | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Cosine similarity of one position's encoding (raster index or (row, col)) with every position.

    The colour scale runs from `vmin` (default: the smallest similarity between any two positions,
    rounded down to 0.1, so it does not change with `position`) to 1.

    Book: chapter 3, "Positional encodings".
    """
    gh, gw = to_2tuple(grid_size)
    sim = pos_embed_similarity(pe, (gh, gw))  # (N, N)
    n, r, c = grid_index(position, (gh, gw))
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.6), layout="constrained")
    im = ax.imshow(
        sim[n].reshape(gh, gw).numpy(),
        cmap="viridis",
        vmin=_low(sim, vmin),
        vmax=1,
        interpolation="nearest",
    )
    ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.figure.colorbar(im, ax=ax, label="cosine similarity")
    centre_ticks(ax, "x", gw, 1)
    centre_ticks(ax, "y", gh, 1)
    ax.set(
        xlabel="patch column",
        ylabel="patch row",
        title=f"similarity to position {n} (row {r}, col {c})",
    )
    return ax.figure


def plot_positional_explorer(
    kind: str,
    dim: int,
    position: int | tuple[int, int],
    *,
    grid_size: int | tuple[int, int] = (8, 8),
) -> Figure:
    """The positional explorer's view: a `kind` encoding of width `dim` as a heatmap, and the similarity
    of the chosen position to every other. "learned" is the untrained initialisation (seed 0).

    Book: chapter 3, "Positional encodings".
    """
    gh, gw = to_2tuple(grid_size)
    pe = example_encoding(kind, (gh, gw), dim)  # (N, D)
    n, r, c = grid_index(position, (gh, gw))
    fig = plt.figure(figsize=(9, 3.6))  # fixed layout, as in plot_patch_explorer
    ax_pe = fig.add_axes((0.07, 0.14, 0.47, 0.7))
    ax_sim = fig.add_axes((0.63, 0.14, 0.33, 0.7))
    plot_positional_heatmap(pe, title=f"encodings: {gh * gw} positions × D = {dim}", ax=ax_pe)
    ax_pe.axhspan(n - 0.5, n + 0.5, fill=False, edgecolor="black", linewidth=1.2)
    plot_position_similarity(pe, (gh, gw), n, ax=ax_sim)
    name = {
        "learned": "learned (untrained, random init)",
        "sincos_1d": "1D sin-cos of the raster index",
        "sincos_2d": "2D sin-cos (row half, column half)",
    }[kind]
    fig.suptitle(f"{name} on a {gh} × {gw} grid", fontweight="bold")
    return fig


def positional_explorer(
    *,
    grid_size: tuple[int, int] = (8, 8),
    dims: tuple[int, ...] = (8, 16, 32, 64, 128, 256),
    static_dims: tuple[int, ...] = (16, 64),
    static_positions: tuple[int, ...] | None = None,
) -> Explorer:
    """The positional explorer: the kind of encoding, its width D and a position on the grid, drawn by
    `plot_positional_explorer`. The static book pre-renders every kind at `static_dims` and
    `static_positions` (default: the corner and the centre).

    Book: chapter 3, "Explore".
    """
    gh, gw = to_2tuple(grid_size)
    centre = (gh // 2) * gw + gw // 2
    return Explorer(
        title="Positional-encoding explorer",
        plot=plot_positional_explorer,
        controls=(
            Control("kind", ENCODING_KINDS, default="sincos_2d"),
            Control("dim", dims, label="D", default=64, static=static_dims),
            Control(
                "position",
                tuple(range(gh * gw)),
                default=centre,
                static=static_positions or (0, centre),
            ),
        ),
        fixed={"grid_size": (gh, gw)},
        static_dpi=60,
    )
