"""Looking inside a trained ViT (chapter 8): attention rollout, mean attention distance, and the three
panels of the ViT paper's Figure 7; and the maps of an axial ViT (chapter 10).

Every function takes attention weights as `vitutils.attention.record_attention` records them: one
(B, h, T, T) tensor per layer, post-softmax, T = prefix tokens + N patch tokens (the class token first),
either as the recorder's dict (its insertion order is the layer order) or as a sequence; `stack_attention`
turns both into one (L, B, h, T, T) tensor. `collect_attention` runs a model and returns that tensor.

- **Attention rollout** (Abnar & Zuidema, 2020, §3): a token's output mixes its own input (the residual
  path) with what it attends to, so layer l is modelled as A_l = ½·W_l + ½·I, its rows renormalised, with
  W_l the attention fused over heads (mean, max or min). Rolling out multiplies them from the first layer
  to the last, R = A_L ⋯ A_2 A_1: entry (i, j) is how much output token i draws on input token j through
  all layers, if attention were the whole computation. The optional discard of the lowest weights is
  jacobgil/vit-explain's; unlike that code (which divides by the sum over the wrong axis, `a.sum(dim=-1)`
  without `keepdim`), the rows here are renormalised, and the tests check that every row sums to 1.
- **Mean attention distance** (Dosovitskiy et al., 2021, Fig. 7 right and Appendix D.7): for each layer
  and head, the distance in pixels between a query patch and every key patch weighted by the attention,
  averaged over query patches and images. The class token is neither query nor key (it has no position);
  each query's weights over the patch keys are renormalised to sum to 1, so a head that attends mostly to
  the class token is not mistaken for a local one, and uniform attention gives the grid's mean pairwise
  distance.
- **Axial attention** (chapter 10): `axial_to_full` scatters a row or column step's recorded weights into
  the (N, N) matrix of full attention they stand for (zero outside the query's row or column);
  `axial_attention` does it for every layer of an axial ViT; `axial_reach` composes the column step after
  the row step, C·R, the weight with which a query's output draws on each token's value through both
  steps (heads fused, the projections between the steps ignored, as rollout ignores the MLPs).
- **Figure 7, left**: the principal components of the patch-embedding filters (`embedding_components`).
  **Centre**: the cosine similarity of the position embeddings, `vitutils.positional.pos_embed_similarity`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from vitutils.attention import record_attention
from vitutils.patches import to_2tuple

__all__ = [
    "HEAD_FUSIONS",
    "attention_rollout",
    "axial_attention",
    "axial_reach",
    "axial_to_full",
    "class_attention_maps",
    "collect_attention",
    "embedding_components",
    "fuse_heads",
    "main",
    "mean_attention_distance",
    "patch_distances",
    "stack_attention",
]

HEAD_FUSIONS = ("mean", "max", "min")


def stack_attention(attentions: Mapping[str, Tensor] | Sequence[Tensor] | Tensor) -> Tensor:
    """Per-layer attention weights as one tensor (L, B, h, T, T), checked for shape.

    Book: chapter 8, "Attention in every layer".
    """
    if isinstance(attentions, Tensor):
        layers = list(attentions) if attentions.ndim == 5 else [attentions]
    else:
        layers = list(attentions.values() if isinstance(attentions, Mapping) else attentions)
    if not layers:
        raise ValueError("no attention weights given (did the model run inside record_attention?)")
    first = layers[0]
    for i, w in enumerate(layers):
        if w.ndim != 4 or w.shape[-1] != w.shape[-2]:
            raise ValueError(
                f"layer {i}: expected attention weights (B, h, T, T), got {tuple(w.shape)}"
            )
        if w.shape != first.shape:
            raise ValueError(
                f"layer {i} has shape {tuple(w.shape)}, layer 0 has {tuple(first.shape)}"
            )
    return torch.stack([w.detach().float() for w in layers])  # (L, B, h, T, T)


@torch.no_grad()
def collect_attention(model: nn.Module, x: Tensor, *, batch_size: int = 250) -> Tensor:
    """Run `model` in eval mode on the preprocessed images `x` (B, C, H, W), in batches, and return every
    layer's attention weights (L, B, h, T, T). Memory grows as L·B·h·T²: keep B to a few hundred.

    Book: chapter 8, "Attention in every layer".
    """
    was_training = model.training
    model.eval()
    parts = []
    try:
        for start in range(0, len(x), batch_size):
            with record_attention(model) as records:
                model(x[start : start + batch_size])
            parts.append(stack_attention(records))  # (L, b, h, T, T)
    finally:
        model.train(was_training)
    return torch.cat(parts, dim=1)  # (L, B, h, T, T)


def fuse_heads(weights: Tensor, how: str = "mean") -> Tensor:
    """Fuse the heads of attention weights (..., h, T, T) -> (..., T, T) by their mean, max or min.

    Book: chapter 8, "Attention rollout".
    """
    if how == "mean":
        return weights.mean(dim=-3)
    if how == "max":
        return weights.amax(dim=-3)
    if how == "min":
        return weights.amin(dim=-3)
    raise ValueError(f"head fusion must be one of {HEAD_FUSIONS}, got {how!r}")


def attention_rollout(
    attentions: Mapping[str, Tensor] | Sequence[Tensor] | Tensor,
    *,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
) -> Tensor:
    """Attention rollout R = A_L ⋯ A_1 with A_l = rows-renormalised ½·(fused W_l) + ½·I: (B, T, T).

    Row i of R is what output token i draws on each input token; row 0 (the class token) is what gets
    plotted. `discard_ratio` sets that fraction of each image's fused weights to 0 in every layer, the
    lowest ones, before the identity is added, except the class token's attention to itself (as
    jacobgil/vit-explain).

    Book: chapter 8, "Attention rollout".
    """
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    weights = fuse_heads(stack_attention(attentions), head_fusion)  # (L, B, T, T)
    L, B, T, _ = weights.shape
    if discard_ratio > 0:
        flat = weights.reshape(L, B, T * T).clone()  # (L, B, T·T)
        k = int(T * T * discard_ratio)
        lowest = flat.topk(k, dim=-1, largest=False).indices  # (L, B, k)
        keep_cls = flat[..., 0].clone()  # (L, B): the class token attending to itself
        flat.scatter_(-1, lowest, 0.0)
        flat[..., 0] = keep_cls
        weights = flat.reshape(L, B, T, T)
    eye = torch.eye(T, dtype=weights.dtype)  # (T, T)
    a = 0.5 * weights + 0.5 * eye  # the residual path: half of each token stays itself
    a = a / a.sum(dim=-1, keepdim=True)  # rows sum to 1 again
    rollout = eye.expand(B, T, T)  # (B, T, T)
    for layer in a:  # first layer to last
        rollout = layer @ rollout  # (B, T, T)
    return rollout


def _check_tokens(T: int, num_prefix_tokens: int, gh: int, gw: int) -> None:
    if T != num_prefix_tokens + gh * gw:
        raise ValueError(
            f"{T} tokens do not make {num_prefix_tokens} prefix token(s) plus a {gh} × {gw} grid"
        )


def class_attention_maps(
    weights: Tensor, grid: int | tuple[int, int], *, num_prefix_tokens: int = 1
) -> Tensor:
    """The class token's weights over the patches as maps: (..., T, T) -> (..., gh, gw).

    Works on recorded attention (L, B, h, T, T) and on a rollout (B, T, T) alike.

    Book: chapter 8, "What the class token looks at".
    """
    gh, gw = to_2tuple(grid)
    T = weights.shape[-1]
    _check_tokens(T, num_prefix_tokens, gh, gw)
    return weights[..., 0, num_prefix_tokens:].reshape(*weights.shape[:-2], gh, gw)


def patch_distances(grid: int | tuple[int, int], patch_size: int | tuple[int, int]) -> Tensor:
    """Distance in pixels between the centres of every two patches of a gh × gw grid: (N, N), raster order.

    Book: chapter 8, "Mean attention distance".
    """
    (gh, gw), (ph, pw) = to_2tuple(grid), to_2tuple(patch_size)
    if min(gh, gw, ph, pw) < 1:
        raise ValueError(f"grid and patch size must be positive, got {(gh, gw)} and {(ph, pw)}")
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")  # (gh, gw) each
    centres = torch.stack([rows.flatten() * ph, cols.flatten() * pw], dim=-1).double()  # (N, 2)
    return torch.cdist(centres, centres).float()  # (N, N)


def mean_attention_distance(
    attentions: Mapping[str, Tensor] | Sequence[Tensor] | Tensor,
    grid: int | tuple[int, int],
    patch_size: int | tuple[int, int],
    *,
    num_prefix_tokens: int = 1,
) -> Tensor:
    """Mean attention distance in pixels per layer and head, (L, h): the ViT paper's Figure 7 (right).

    For each query patch, the attention-weighted mean distance to the key patches (weights renormalised
    over the patches, the class token left out), averaged over query patches and images.

    Book: chapter 8, "Mean attention distance".
    """
    weights = stack_attention(attentions)  # (L, B, h, T, T)
    gh, gw = to_2tuple(grid)
    T = weights.shape[-1]
    _check_tokens(T, num_prefix_tokens, gh, gw)
    p = num_prefix_tokens
    patches = weights[..., p:, p:]  # (L, B, h, N, N): patch queries, patch keys
    patches = patches / patches.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    per_query = (patches * patch_distances((gh, gw), patch_size)).sum(dim=-1)  # (L, B, h, N)
    return per_query.mean(dim=(1, 3))  # (L, h)


def embedding_components(weight: Tensor | nn.Module, k: int = 28) -> tuple[Tensor, Tensor]:
    """The leading `k` principal components of the patch-embedding filters: the ViT paper's Figure 7 (left).

    `weight` is the patch projection's (D, C, P, P) weight, or a model with `patch_embed.proj`. Each of the
    D filters is a point in C·P·P dimensions; PCA (the SVD of the centred filters) gives the directions
    they vary along most. Returns the components (k, C, P, P), unit vectors with an arbitrary sign, and the
    share of the filters' variance each one explains (k,).

    Book: chapter 8, "Figure 7 on our own model".
    """
    if isinstance(weight, nn.Module):
        weight = weight.patch_embed.proj.weight
    if weight.ndim != 4:
        raise ValueError(f"expected a (D, C, P, P) convolution weight, got {tuple(weight.shape)}")
    D, C, ph, pw = weight.shape
    filters = weight.detach().float().reshape(D, C * ph * pw)  # (D, C·P·P)
    if not 1 <= k <= min(filters.shape):
        raise ValueError(
            f"k must be in [1, {min(filters.shape)}] for {D} filters of {C * ph * pw} values, got {k}"
        )
    centred = filters - filters.mean(dim=0)  # (D, C·P·P)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (min(D, CPP), C·P·P)
    explained = s**2 / (s**2).sum()
    return vh[:k].reshape(k, C, ph, pw), explained[:k]


def axial_to_full(weights: Tensor, grid: int | tuple[int, int], axis: str) -> Tensor:
    """One axial step's weights as full attention over the grid in raster order: row weights
    (B·gh, h, gw, gw) or column weights (B·gw, h, gh, gh), as `record_attention` records them, →
    (B, h, N, N), zero outside each query's row (column). Rows still sum to 1.

    Book: chapter 10, "The row step and the column step".
    """
    gh, gw = to_2tuple(grid)
    if axis not in ("row", "col"):
        raise ValueError(f"axis must be 'row' or 'col', got {axis!r}")
    lines, length = (gh, gw) if axis == "row" else (gw, gh)
    if weights.ndim != 4 or weights.shape[-2:] != (length, length) or weights.shape[0] % lines:
        raise ValueError(
            f"{axis} weights of a {gh} × {gw} grid must be (B·{lines}, h, {length}, {length}), "
            f"got {tuple(weights.shape)}"
        )
    B, h = weights.shape[0] // lines, weights.shape[1]
    w = weights.reshape(B, lines, h, length, length).transpose(
        0, 1
    )  # (lines, B, h, length, length)
    full = weights.new_zeros(B, h, gh, gw, gh, gw)  # (B, h, query row, col, key row, col)
    line = torch.arange(lines)
    if axis == "row":
        full[:, :, line, :, line, :] = w  # query and key in the same grid row
    else:
        full[:, :, :, line, :, line] = w  # query and key in the same grid column
    return full.reshape(B, h, gh * gw, gh * gw)


def axial_attention(
    records: Mapping[str, Tensor], grid: int | tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """`record_attention`'s dict of an axial model → (row, col) weights as full attention, each
    (L, B, h, N, N) in layer order.

    Book: chapter 10, "Inside the trained axial ViT".
    """
    steps = {
        axis: [axial_to_full(w, grid, axis) for name, w in records.items() if name.endswith(axis)]
        for axis in ("row", "col")
    }
    if not steps["row"] or len(steps["row"]) != len(steps["col"]):
        raise ValueError(f"expected .row and .col records of axial attention, got {list(records)}")
    return torch.stack(steps["row"]), torch.stack(steps["col"])


def axial_reach(row: Tensor, col: Tensor, head_fusion: str = "mean") -> Tensor:
    """The reach of both steps, C·R (..., N, N): row i is how much query i's output draws on each token
    through the row step R then the column step C, with heads fused (`fuse_heads`) in each step. Inputs
    (..., h, N, N) from `axial_to_full`. Every entry is positive once both steps have run: two steps reach
    every token.

    Book: chapter 10, "Two steps reach every token".
    """
    return fuse_heads(col, head_fusion) @ fuse_heads(row, head_fusion)  # (..., N, N)


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: the row and column attention (heads fused by their mean) of a trained axial run on
    the first test images, in every layer, as JSON for chapter 10, with the command, date and commit."""
    from vitutils.augment import normalize_uint8  # here: the analysis functions need no data code
    from vitutils.checkpoint import environment, load_run
    from vitutils.evaluation import load_split
    from vitutils.patches import grid_size

    parser = argparse.ArgumentParser(prog="python -m vitutils.analysis", description=main.__doc__)
    parser.add_argument("--run", type=Path, required=True, help="an axial training run's directory")
    parser.add_argument(
        "--images", type=int, default=6, help="how many test images, from the first"
    )
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    model, recipe, _ = load_run(args.run)
    if recipe.model.attn_type != "axial":
        raise ValueError(f"{args.run} is not an axial run (attn_type={recipe.model.attn_type!r})")
    images, labels = load_split("test")
    with torch.no_grad(), record_attention(model) as records:
        logits = model(normalize_uint8(images[: args.images]))
    gh, gw = grid_size(recipe.model.img_size, recipe.model.patch_size)
    B = args.images

    def fused(name: str, lines: int) -> list:  # (B·lines, h, n, n) → (B, lines, n, n), 4 decimals
        w = records[name].mean(dim=1).double()  # double: 4 decimals print as 4 decimals
        return w.reshape(B, lines, *w.shape[-2:]).mul(1e4).round().div(1e4).tolist()

    report = {
        "command": " ".join(["python -m vitutils.analysis", *argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment("cpu", 1),
        "run": args.run.as_posix(),
        "grid": [gh, gw],
        "test_indices": list(range(B)),
        "labels": labels[:B].tolist(),
        "predictions": logits.argmax(-1).tolist(),
        # per layer, per image: row weights (gh, gw, gw) and column weights (gw, gh, gh), head mean
        "layers": [
            {"row": fused(f"blocks.{i}.attn.row", gh), "col": fused(f"blocks.{i}.attn.col", gw)}
            for i in range(recipe.model.depth)
        ],
    }
    if args.out:
        args.out.write_text(json.dumps(report) + "\n")
    return report


if __name__ == "__main__":
    main()
