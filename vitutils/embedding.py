"""Patch embedding and the class token: the start of the ViT encoder.

Implements the input of equation (1) of the ViT paper (Dosovitskiy et al., 2021, §3.1):

    z_0 = [x_class; x_p^1 E; x_p^2 E; ...; x_p^N E] + E_pos,   E ∈ R^((P²·C)×D).

`PatchEmbedding` computes x_p^n E for every patch n. A linear map applied to non-overlapping
P × P patches is exactly a convolution with kernel size = stride = P (the "hybrid" remark of §3.1),
so it is an `nn.Conv2d` named `proj`, as in timm's `PatchEmbed`, and a checkpoint's
`patch_embed.proj.weight` (D, C, P, P) loads unchanged. Flattening that weight to (D, C·P·P) gives
the matrix E^T in the (c, p1, p2) order used by `vitutils.patches.patchify`.

`init_class_token` and `prepend_class_token` provide the learnable x_class; the position term
E_pos lives in `vitutils.positional`. `PatchDropout` (timm's, from Liu et al. 2022, "PatchDropout") keeps a
random subset of the patch tokens during training only: fewer tokens, a cheaper step (chapter 7).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from vitutils.patches import grid_size as _grid_size
from vitutils.patches import to_2tuple

__all__ = ["PatchDropout", "PatchEmbedding", "init_class_token", "prepend_class_token"]


class PatchEmbedding(nn.Module):
    """Cut an image into P × P patches and map each one linearly to a D-dimensional token.

    Input (B, C, H, W) with (H, W) = img_size and C = in_chans; output (B, N, D) with
    N = num_patches tokens in raster order. Attributes: `img_size`, `patch_size`, `grid_size`
    (all (height, width) tuples), `num_patches` (int) and `proj`, the `nn.Conv2d` holding E.

    Book: chapter 2, "Patch embedding".
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_chans <= 0 or embed_dim <= 0:
            raise ValueError(
                f"in_chans and embed_dim must be positive, got in_chans={in_chans}, "
                f"embed_dim={embed_dim}"
            )
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        self.grid_size = _grid_size(self.img_size, self.patch_size)  # raises if P does not divide
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        # A linear layer on non-overlapping patches == a convolution with kernel = stride = P.
        self.proj = nn.Conv2d(
            in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size, bias=bias
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(
                f"expected a batch of images (B, C, H, W), got a tensor of shape {tuple(x.shape)}"
            )
        C, H, W = x.shape[1:]
        if C != self.in_chans:
            raise ValueError(f"expected {self.in_chans} input channels, got {C}")
        if (H, W) != self.img_size:
            raise ValueError(
                f"expected images of size {self.img_size[0]} x {self.img_size[1]} (H x W), "
                f"got {H} x {W}"
            )
        x = self.proj(x)  # (B, D, gh, gw)
        return rearrange(x, "b d gh gw -> b (gh gw) d")  # (B, N, D)

    def extra_repr(self) -> str:
        return (
            f"img_size={self.img_size}, grid_size={self.grid_size}, num_patches={self.num_patches}"
        )


def init_class_token(embed_dim: int) -> nn.Parameter:
    """A learnable class token x_class of shape (1, 1, D), initialised like timm (normal, std 1e-6).

    Book: chapter 2, "The class token".
    """
    if embed_dim <= 0:
        raise ValueError(f"embed_dim must be positive, got {embed_dim}")
    cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))  # (1, 1, D)
    nn.init.normal_(cls_token, std=1e-6)
    return cls_token


def prepend_class_token(tokens: Tensor, cls_token: Tensor) -> Tensor:
    """Put the class token in front of every sequence: (B, N, D), (1, 1, D) -> (B, N + 1, D).

    The same token is shared by the whole batch; gradients flow back into `cls_token`.

    Book: chapter 2, "The class token".
    """
    if tokens.ndim != 3:
        raise ValueError(f"expected tokens of shape (B, N, D), got {tuple(tokens.shape)}")
    B, _, D = tokens.shape
    if cls_token.shape != (1, 1, D):
        raise ValueError(
            f"expected a class token of shape (1, 1, {D}), got {tuple(cls_token.shape)}"
        )
    cls = cls_token.expand(B, -1, -1)  # (B, 1, D)
    return torch.cat([cls, tokens], dim=1)  # (B, N + 1, D)


class PatchDropout(nn.Module):
    """In training, keep a random max(1, int(N · (1 − prob))) of the N patch tokens of every image.

    Input (B, T, D) with T = num_prefix_tokens + N; output (B, num_prefix_tokens + K, D): the prefix (class)
    tokens always stay, the kept patch tokens follow in random order (timm's `PatchDropout`, `ordered=False`;
    order does not matter once the position embedding has been added). In eval mode, or with prob 0, it
    returns its input. Unlike `nn.Dropout` nothing is rescaled: a token is dropped, not zeroed.

    Book: chapter 7, "Seeing more images per second".
    """

    def __init__(self, prob: float = 0.5, *, num_prefix_tokens: int = 1) -> None:
        super().__init__()
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"patch dropout probability must be in [0, 1), got {prob}")
        self.prob = prob
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.prob == 0.0:
            return x
        prefix, x = x[:, : self.num_prefix_tokens], x[:, self.num_prefix_tokens :]
        B, N, D = x.shape
        keep = max(1, int(N * (1.0 - self.prob)))
        # A uniformly random subset per image: the first K of a random permutation.
        idx = torch.argsort(torch.rand(B, N, device=x.device), dim=1)[:, :keep]  # (B, K)
        x = x.gather(1, idx[:, :, None].expand(-1, -1, D))  # (B, K, D)
        return torch.cat([prefix, x], dim=1)  # (B, prefix + K, D)

    def extra_repr(self) -> str:
        return f"prob={self.prob}, num_prefix_tokens={self.num_prefix_tokens}"
