"""Cutting images into a sequence of flattened patches, and gluing them back.

This is the first half of equation (1) of the ViT paper (Dosovitskiy et al., 2021, §3.1): an image
x ∈ R^(H×W×C) is reshaped into a sequence of N = HW/P² flattened patches x_p ∈ R^(N×(P²·C)).

Conventions used throughout the book:

- patches are listed in raster order (row-major over the gh × gw grid), so patch n sits at grid row
  n // gw and column n % gw;
- inside a patch the features are ordered (c, p1, p2), channel-major. That is the order of
  `F.unfold` and of `nn.Conv2d.weight.reshape(D, -1)`, so a patch embedding can be written either as
  a convolution or as `patchify` followed by a linear layer with the same weights (chapter 2).

A patch size may be an int (square patches) or a (height, width) pair, like an image size.
"""

from __future__ import annotations

import math
import operator

from einops import rearrange
from torch import Tensor

__all__ = ["grid_index", "grid_size", "patchify", "to_2tuple", "unpatchify", "valid_patch_sizes"]


def to_2tuple(x: int | tuple[int, int]) -> tuple[int, int]:
    """Return `x` as a (height, width) pair: an int `s` becomes `(s, s)`.

    Book: chapter 1, "Images as sequences of patches".
    """
    try:
        s = operator.index(x)  # ints, numpy integers, 0-d integer tensors
        return (s, s)
    except TypeError:
        pass
    try:
        h, w = (operator.index(v) for v in x)
    except (TypeError, ValueError):
        raise ValueError(f"expected an int or a pair of ints (height, width), got {x!r}") from None
    return (h, w)


def grid_size(
    image_size: int | tuple[int, int], patch_size: int | tuple[int, int]
) -> tuple[int, int]:
    """Number of patches along each axis, (gh, gw) = (H / P_h, W / P_w).

    Raises ValueError if a size is not positive or the image does not divide into whole patches,
    e.g. "image height 225 is not divisible by patch size 16".

    Book: chapter 1, "Images as sequences of patches".
    """
    H, W = to_2tuple(image_size)
    ph, pw = to_2tuple(patch_size)
    if ph <= 0 or pw <= 0:
        raise ValueError(f"patch size must be positive, got {(ph, pw)}")
    if H <= 0 or W <= 0:
        raise ValueError(f"image size must be positive, got {(H, W)}")
    if H % ph != 0:
        raise ValueError(f"image height {H} is not divisible by patch size {ph}")
    if W % pw != 0:
        raise ValueError(f"image width {W} is not divisible by patch size {pw}")
    return (H // ph, W // pw)


def grid_index(position: int | tuple[int, int], grid: tuple[int, int]) -> tuple[int, int, int]:
    """A patch given by its raster index n or its (row, col) pair -> (n, row, col) on a gh × gw grid.

    Raster order: n = row · gw + col. Raises ValueError for a position outside the grid.

    Book: chapter 1, "Images as sequences of patches".
    """
    gh, gw = to_2tuple(grid)
    if isinstance(position, tuple | list):
        r, c = (operator.index(v) for v in position)
        if not (0 <= r < gh and 0 <= c < gw):
            raise ValueError(f"position (row {r}, col {c}) is outside the {gh} × {gw} grid")
        return r * gw + c, r, c
    n = operator.index(position)
    if not 0 <= n < gh * gw:
        raise ValueError(f"position {n} is outside 0 … {gh * gw - 1} ({gh} × {gw} grid)")
    return n, n // gw, n % gw


def valid_patch_sizes(
    height: int, width: int, *, min_size: int = 2, max_size: int | None = None
) -> list[int]:
    """Patch sizes P in [min_size, max_size] that divide both `height` and `width`, ascending.

    Book: chapter 1, "Images as sequences of patches".
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {(height, width)}")
    common = math.gcd(height, width)
    top = common if max_size is None else min(common, max_size)
    return [p for p in range(max(1, min_size), top + 1) if common % p == 0]


def patchify(images: Tensor, patch_size: int | tuple[int, int]) -> Tensor:
    """Cut a batch of images into flattened patches.

    images: (B, C, H, W). Returns (B, N, C·P_h·P_w) with N = (H/P_h)·(W/P_w) patches in raster order;
    each patch is flattened in (c, p1, p2) order, equal to `F.unfold(images, P, stride=P).mT`.

    Book: chapter 1, "Images as sequences of patches".
    """
    if images.ndim != 4:
        raise ValueError(
            f"expected a batch of images (B, C, H, W), got a tensor of shape {tuple(images.shape)}"
        )
    H, W = images.shape[-2:]
    ph, pw = to_2tuple(patch_size)
    grid_size((H, W), (ph, pw))  # validates divisibility
    return rearrange(
        images, "b c (gh p1) (gw p2) -> b (gh gw) (c p1 p2)", p1=ph, p2=pw
    )  # (B, N, C*P*P)


def unpatchify(
    patches: Tensor, patch_size: int | tuple[int, int], image_size: int | tuple[int, int]
) -> Tensor:
    """Glue flattened patches back into images: the exact inverse of `patchify`.

    patches: (B, N, C·P_h·P_w) in raster order; image_size: (H, W) of the original image, which
    fixes the grid gh × gw = N. Returns (B, C, H, W).

    Book: chapter 1, "Images as sequences of patches".
    """
    if patches.ndim != 3:
        raise ValueError(
            f"expected patches of shape (B, N, C*P*P), got a tensor of shape {tuple(patches.shape)}"
        )
    N, K = patches.shape[1:]  # K = C*P*P
    ph, pw = to_2tuple(patch_size)
    gh, gw = grid_size(image_size, (ph, pw))
    if N != gh * gw:
        raise ValueError(
            f"image size {to_2tuple(image_size)} with patch size {(ph, pw)} needs "
            f"{gh} x {gw} = {gh * gw} patches, got {N}"
        )
    if K % (ph * pw) != 0:
        raise ValueError(
            f"patch feature size {K} is not divisible by patch area {ph} x {pw} = {ph * pw}"
        )
    return rearrange(
        patches, "b (gh gw) (c p1 p2) -> b c (gh p1) (gw p2)", gh=gh, gw=gw, p1=ph, p2=pw
    )  # (B, C, H, W)
