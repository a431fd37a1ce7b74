"""The book's figures: pure plotting functions that each return a matplotlib Figure.

They draw what the other modules compute and never redo their maths: patches come from
`vitutils.patches.patchify`, encodings from `vitutils.positional`, attention weights from
`vitutils.attention.scaled_dot_product_attention`. Figures illustrate §3.1 of the ViT paper (Dosovitskiy et
al., 2021): the patch sequence of equation (1), and the position-embedding similarities of its Figure 7.

An `image` argument is an (H, W, 3) array (uint8, or float in [0, 1]) or a (3, H, W) tensor in [0, 1]; its
height and width must be multiples of the patch size P. Every figure has a title and labelled axes;
colour maps are viridis/magma, and RdBu for signed values. The explorers in `vitutils.widgets` call these.
"""

from __future__ import annotations

import inspect
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Code
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from vitutils.attention import scaled_dot_product_attention
from vitutils.patches import grid_size as _grid_size
from vitutils.patches import patchify, to_2tuple
from vitutils.positional import init_learned_pos_embed, sincos_1d, sincos_2d

POSITIONAL_KINDS = ("learned", "sincos_1d", "sincos_2d")
PATCH_FEATURE_KINDS = ("pixels", "colour", "texture")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 grey, as in OpenCV's RGB2GRAY


def show_source(obj: object) -> Code:
    """The source code of a function, class or module of the package, rendered as Python in a notebook.

    Book: chapter 1, "Images as sequences of patches".
    """
    return Code(inspect.getsource(obj), language="python")


# --- helpers --------------------------------------------------------------------------------------------------


def _as_chw(image: np.ndarray | Tensor) -> Tensor:
    """Any accepted image -> (C, H, W) float32 tensor in [0, 1]."""
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(image.shape)}")
        return image.detach().float().cpu().clamp(0, 1)
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]  # (H, W, 1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"expected an (H, W, 3) image array, got shape {array.shape}")
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float()  # (C, H, W)
    return x / 255 if array.dtype == np.uint8 else x.clamp(0, 1)


def _patches(image, patch_size) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """image -> (its (C, H, W) tensor, patches (N, C, ph, pw), grid (gh, gw))."""
    x = _as_chw(image)
    C, H, W = x.shape
    ph, pw = to_2tuple(patch_size)
    grid = _grid_size((H, W), (ph, pw))
    tiles = patchify(x[None], (ph, pw))[0].reshape(-1, C, ph, pw)  # (N, C, ph, pw)
    return x, tiles, grid


def _p(patch_size) -> str:
    ph, pw = to_2tuple(patch_size)
    return f"P = {ph}" if ph == pw else f"P = {ph} × {pw}"


def _tile(tiles: Tensor, rows: int, cols: int, gap: int) -> np.ndarray:
    """Lay (K, C, ph, pw) patches out row by row on a white canvas with `gap` pixels between them."""
    K, C, ph, pw = tiles.shape
    canvas = np.ones((rows * ph + (rows - 1) * gap, cols * pw + (cols - 1) * gap, 3), np.float32)
    for k in range(K):
        r, c = divmod(k, cols)
        top, left = r * (ph + gap), c * (pw + gap)
        canvas[top : top + ph, left : left + pw] = tiles[k].expand(3, ph, pw).permute(1, 2, 0)
    return canvas


def _centre_ticks(
    ax: Axes, axis: str, count: int, step: float, first: int = 0, every: int = 1
) -> None:
    """Tick labels first, first + every, … at the centres of `count` cells `step` pixels apart (≤ ~16)."""
    thin = max(1, math.ceil(count / 16))
    index = np.arange(0, count, thin)
    (ax.set_xticks if axis == "x" else ax.set_yticks)(
        index * step + step / 2 - 0.5, first + every * index
    )


def _outline(
    ax: Axes, row: int, col: int, ph: int, pw: int, color: str = "cyan", lw: float = 2
) -> None:
    ax.add_patch(Rectangle((col * pw, row * ph), pw, ph, fill=False, edgecolor=color, linewidth=lw))


def _query_index(query: int | tuple[int, int], gh: int, gw: int) -> tuple[int, int, int]:
    """A raster index or a (row, col) pair -> (index, row, col), checked against the grid."""
    if isinstance(query, tuple | list):
        r, c = (int(v) for v in query)
        if not (0 <= r < gh and 0 <= c < gw):
            raise ValueError(f"position (row {r}, col {c}) is outside the {gh} × {gw} grid")
        return r * gw + c, r, c
    n = int(query)
    if not 0 <= n < gh * gw:
        raise ValueError(f"position {n} is outside 0 … {gh * gw - 1} ({gh} × {gw} grid)")
    return n, n // gw, n % gw


# --- chapter 1: images as sequences of patches ----------------------------------------------------------------


def plot_patch_grid(image: np.ndarray | Tensor, patch_size: int, *, gap: float = 0.06) -> Figure:
    """The image cut into its gh × gw patches, drawn apart with white gaps of `gap` × P pixels.

    Book: chapter 1, "Images as sequences of patches".
    """
    x, tiles, (gh, gw) = _patches(image, patch_size)
    _, H, W = x.shape
    ph, pw = to_2tuple(patch_size)
    g = max(1, round(gap * max(ph, pw))) if gap > 0 else 0
    fig, ax = plt.subplots(figsize=(5, min(8, 5 * H / W) + 0.6), layout="constrained")
    ax.imshow(_tile(tiles, gh, gw, g))
    _centre_ticks(ax, "x", gw, pw + g)
    _centre_ticks(ax, "y", gh, ph + g)
    ax.set(xlabel="patch column", ylabel="patch row")
    ax.set_title(f"{H} × {W} image, {_p(patch_size)}: N = {gh} × {gw} = {gh * gw} patches")
    return fig


def plot_patch_sequence(
    image: np.ndarray | Tensor, patch_size: int, *, max_patches: int | None = None
) -> Figure:
    """The flattened sequence: patches side by side in raster order, numbered by token index n.

    Shows the first `max_patches` patches (all of them if None); a long sequence wraps after 32 tokens,
    like a line of text.

    Book: chapter 1, "Images as sequences of patches".
    """
    _, tiles, _ = _patches(image, patch_size)
    N, C, ph, pw = tiles.shape
    if max_patches is not None and max_patches < 1:
        raise ValueError(f"max_patches must be at least 1, got {max_patches}")
    K = N if max_patches is None else min(N, max_patches)
    cols = min(K, 32)
    rows = math.ceil(K / cols)
    g = max(1, round(0.15 * max(ph, pw)))
    width = min(10, max(4, 0.35 * cols))
    fig, ax = plt.subplots(figsize=(width, width * rows / cols + 1.2), layout="constrained")
    ax.imshow(_tile(tiles[:K], rows, cols, g))
    _centre_ticks(ax, "x", cols, pw + g)
    if rows > 1:
        _centre_ticks(ax, "y", rows, ph + g, every=cols)
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
    x, _, (gh, gw) = _patches(image, patch_size)
    C, H, W = x.shape
    ph, pw = to_2tuple(patch_size)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, min(8, 5 * H / W) + 0.6), layout="constrained")
    ax.imshow(x.expand(3, H, W).permute(1, 2, 0).numpy(), extent=(0, W, H, 0))
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
    grid = f", {_p(patch_size)} grid: {gh} × {gw} = {gh * gw} patches" if show_grid else ""
    ax.set_title(f"{H} × {W} image{grid}")
    return ax.figure


def plot_patch_explorer(
    image: np.ndarray | Tensor, patch_size: int, show_grid: bool = True
) -> Figure:
    """The patch explorer's view: the image with its grid, the start of the sequence, one patch flattened.

    Book: chapter 1, "Images as sequences of patches".
    """
    x, tiles, (gh, gw) = _patches(image, patch_size)
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
        _tile(torch.stack([tiles[n] if n is not None else blank for n in slots]), 1, len(slots), g)
    )
    ax_seq.set_xticks(
        [k * (pw + g) + pw / 2 - 0.5 for k in range(len(slots))],
        ["…" if n is None else str(n) for n in slots],
    )
    ax_seq.set_yticks([])
    ax_seq.set(xlabel="token index n", title=f"the sequence (raster order), {N} tokens")
    for n in shown:
        _outline(ax_img, n // gw, n % gw, ph, pw, color="gold", lw=1.2)

    # patch 0 flattened in (c, p1, p2) order: the vector the patch embedding multiplies
    ax_vec.imshow(tiles[0].reshape(1, -1).numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax_vec.set_xticks([(c + 0.5) * ph * pw for c in range(C)], "RGB"[:C] if C == 3 else range(C))
    ax_vec.vlines([c * ph * pw - 0.5 for c in range(1, C)], -0.5, 0.5, colors="white", linewidth=1)
    ax_vec.set_yticks([])
    ax_vec.set(
        xlabel="feature index in (c, p1, p2) order, value in [0, 1]",
        title=f"patch 0 flattened: C·P·P = {C}·{ph}·{pw} = {C * ph * pw} numbers",
    )
    fig.suptitle(f"{_p(patch_size)}: N = {gh} × {gw} = {N} patches", fontweight="bold")
    return fig


# --- chapter 3: positional encodings --------------------------------------------------------------------------


def _as_positions(pe: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
    pe = torch.as_tensor(pe).detach().float().cpu()
    if pe.ndim == 3 and pe.shape[0] == 1:
        pe = pe[0]  # (N, D) from a (1, N, D) parameter
    if pe.ndim != 2:
        raise ValueError(f"expected encodings of shape (N, D), got {tuple(pe.shape)}")
    if grid is not None and pe.shape[0] != grid[0] * grid[1]:
        raise ValueError(
            f"{grid[0]} × {grid[1]} grid needs {grid[0] * grid[1]} encodings, got {pe.shape[0]} "
            "(drop the class token's row first)"
        )
    return pe


def _similarity(pe: Tensor) -> Tensor:
    unit = F.normalize(pe, dim=-1)  # (N, D)
    return unit @ unit.T  # (N, N) cosine similarities


def _low(sim: Tensor, vmin: float | None) -> float:
    """Bottom of the colour scale: the smallest similarity rounded down to 0.1, unless given."""
    return math.floor(float(sim.min()) * 10) / 10 if vmin is None else vmin


def plot_positional_heatmap(
    pe: Tensor, *, title: str | None = None, ax: Axes | None = None
) -> Figure:
    """Encodings as an image: one row per position, one column per dimension (RdBu, centred on 0).

    Book: chapter 3, "Positional encodings".
    """
    pe = _as_positions(pe)
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
    sim = _similarity(_as_positions(pe, (gh, gw)))  # (N, N)
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
    sim = _similarity(_as_positions(pe, (gh, gw)))  # (N, N)
    n, r, c = _query_index(position, gh, gw)
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
    _centre_ticks(ax, "x", gw, 1)
    _centre_ticks(ax, "y", gh, 1)
    ax.set(
        xlabel="patch column",
        ylabel="patch row",
        title=f"similarity to position {n} (row {r}, col {c})",
    )
    return ax.figure


def _example_encoding(kind: str, gh: int, gw: int, dim: int) -> Tensor:
    if kind == "learned":
        with (
            torch.random.fork_rng()
        ):  # the same picture every time, without touching the global seed
            torch.manual_seed(0)
            return init_learned_pos_embed(gh * gw, dim)[0].detach()  # (N, D)
    if kind == "sincos_1d":
        return sincos_1d(gh * gw, dim)  # (N, D)
    if kind == "sincos_2d":
        return sincos_2d(gh, gw, dim)  # (N, D)
    raise ValueError(f"unknown kind {kind!r}; expected one of {POSITIONAL_KINDS}")


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
    pe = _example_encoding(kind, gh, gw, dim)  # (N, D)
    n, r, c = _query_index(position, gh, gw)
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


# --- chapter 4: attention on a real photo, before any training -----------------------------------------------


def patch_features(image: np.ndarray | Tensor, patch_size: int, kind: str = "pixels") -> Tensor:
    """Hand-made patch embeddings (N, F), to use directly as queries and keys before any training.

    "pixels": each flattened patch (F = C·P·P, values in [0, 1]) standardised per feature over the patches;
    "colour": each patch's mean RGB (F = 3), standardised the same way; "texture": the grey patch (F = P·P)
    minus its own mean, scaled to unit norm (so q·k is the correlation of two patches' textures).

    Book: chapter 4, "Attention on a real photo".
    """
    if kind not in PATCH_FEATURE_KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {PATCH_FEATURE_KINDS}")
    _, tiles, _ = _patches(image, patch_size)
    N, C, ph, pw = tiles.shape
    flat = tiles.reshape(N, C, ph * pw)  # (N, C, P*P)
    if kind == "texture":
        weights = torch.tensor(_LUMA) if C == 3 else torch.ones(C) / C
        grey = (flat * weights[:, None]).sum(dim=1)  # (N, P*P)
        grey = grey - grey.mean(dim=1, keepdim=True)
        return grey / grey.norm(dim=1, keepdim=True).clamp_min(1e-8)  # (N, P*P); flat patches -> 0
    feats = flat.reshape(N, -1) if kind == "pixels" else flat.mean(dim=-1)  # (N, C*P*P) or (N, C)
    std = feats.std(dim=0, unbiased=False, keepdim=True).clamp_min(1e-6)
    return (feats - feats.mean(dim=0, keepdim=True)) / std


def patch_attention(
    image: np.ndarray | Tensor, patch_size: int, *, kind: str = "pixels", temperature: float = 1.0
) -> Tensor:
    """Self-attention weights (N, N) among the patches, with Q = K = V = `patch_features(image, P, kind)`.

    logits = q·kᵀ / (√F · temperature); the temperature is applied by scaling the queries.

    Book: chapter 4, "Attention on a real photo".
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    feats = patch_features(image, patch_size, kind)  # (N, F)
    _, weights = scaled_dot_product_attention(feats / temperature, feats, feats)  # (N, F), (N, N)
    return weights


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
    x, _, (gh, gw) = _patches(image, patch_size)
    C, H, W = x.shape
    ph, pw = to_2tuple(patch_size)
    n, r, c = _query_index(query, gh, gw)
    w = patch_attention(x, patch_size, kind=kind, temperature=temperature)[n]  # (N,)
    entropy = max(0.0, float(-(w * w.clamp_min(1e-30).log()).sum()))  # no "-0.00"
    height = 3.2 * H / W + 1.3
    fig = plt.figure(figsize=(8.5, height))  # fixed layout, as in plot_patch_explorer
    grid = fig.add_gridspec(
        1, 2, left=0.07, right=0.88, wspace=0.3, bottom=0.45 / height, top=1 - 0.8 / height
    )
    ax_img, ax_att = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    cax = ax_att.inset_axes((1.05, 0, 0.05, 1))  # follows the image's box, whatever its aspect
    plot_image_with_grid(x, patch_size, show_grid=False, ax=ax_img)
    ax_img.set_title("query patch (outlined)")
    rgb = x.expand(3, H, W).permute(1, 2, 0).numpy()
    ax_att.imshow(rgb, extent=(0, W, H, 0))
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
        _outline(ax, r, c, ph, pw)
    fig.suptitle(
        f"{_p(patch_size)}, query {n} (row {r}, col {c}), kind = {kind}, temperature = {temperature:g}\n"
        f"entropy of the weights {entropy:.2f} nats (uniform: log N = {math.log(gh * gw):.2f})"
    )
    return fig
