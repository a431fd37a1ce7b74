"""Data augmentation for CIFAR-10, on whole uint8 batches (chapter 7).

Every transform takes a batch of images `(B, C, H, W)`, dtype uint8, and a `torch.Generator`, and returns a
batch of the same dtype: augmentation happens before normalisation, on the pixels the reader sees. Each
draws all its random numbers for the whole batch in one call from the generator it is given, so a batch's
augmentation depends only on the generator's seed: the training loop seeds one per step, which makes runs
reproducible, resumable bit for bit, and the same whatever the number of processes (every rank draws the
global batch's parameters, then keeps its own slice).

Why written here rather than imported: torchvision's transforms do not load with the book's CPU build of
torch, and they work one image at a time in a DataLoader worker, which on a 2-core laptop costs more than
the model's step. kornia (0.9, no torchvision) has batched versions, but a padded random crop is one gather
and a flip one `torch.where`: a dependency for three short functions would hide exactly what the chapter
wants to show. `random_resized_crop` follows torchvision's definition (area fraction and aspect ratio drawn
uniformly, log-uniformly for the ratio) but draws once per image instead of retrying up to ten times: a
crop that would not fit is shrunk to fit, which with the UvA recipe's ranges (scale 0.8-1, ratio 0.9-1.1)
changes at most a few pixels of a few crops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "augment_batch",
    "normalize_uint8",
    "random_crop",
    "random_horizontal_flip",
    "random_resized_crop",
]

# Per-channel mean and std of the 50,000 CIFAR-10 training images in [0, 1] (the usual constants; chapter 7
# recomputes them from the data).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _check_batch(images: Tensor) -> tuple[int, int, int, int]:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"expected a uint8 batch (B, C, H, W), got dtype {images.dtype} with shape "
            f"{tuple(images.shape)}"
        )
    B, C, H, W = images.shape
    return B, C, H, W


def random_horizontal_flip(images: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability `p`: (B, C, H, W) uint8 → same."""
    B, _, _, _ = _check_batch(images)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"flip probability must be in [0, 1], got {p}")
    flip = torch.rand(B, generator=generator) < p  # (B,)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def random_crop(images: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """Pad each side with `padding` zero pixels, then cut an H × W window at a random offset per image.

    The offset (dy, dx) is uniform in {0, ..., 2·padding}², as torchvision's `RandomCrop(H, padding)`.
    Implemented as one gather: row index dy + i and column index dx + j for every output pixel.
    """
    B, C, H, W = _check_batch(images)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0:
        return images
    padded = F.pad(images, (padding,) * 4)  # (B, C, H + 2p, W + 2p), zeros around
    offsets = torch.randint(0, 2 * padding + 1, (2, B), generator=generator)  # (2, B): dy, dx
    rows = offsets[0][:, None] + torch.arange(H)  # (B, H)
    cols = offsets[1][:, None] + torch.arange(W)  # (B, W)
    batch = torch.arange(B)[:, None, None]  # (B, 1, 1)
    # Advanced indexing on dims 0, 2, 3 puts the broadcast index dims first: (B, H, W, C).
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)


def random_resized_crop(
    images: Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Tensor:
    """Crop a random box of area fraction in `scale` and aspect ratio (w/h) in `ratio`, resize it back to
    H × W with bilinear interpolation: (B, C, H, W) uint8 → same.

    One affine sampling grid per image, all applied by one `F.grid_sample`.
    """
    B, C, H, W = _check_batch(images)
    if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
        raise ValueError(
            f"need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]; "
            f"got scale={scale}, ratio={ratio}"
        )
    u = torch.rand(4, B, generator=generator)  # (4, B)
    area = scale[0] + (scale[1] - scale[0]) * u[0]  # fraction of H·W
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1]
    aspect = torch.exp(log_r)  # w / h
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # width as a fraction of W
    h = torch.sqrt(area / aspect).clamp(max=1.0)  # height as a fraction of H
    # Centre of the box, in grid_sample's [-1, 1] coordinates, so that the box stays inside the image.
    cx = (1 - w) * (2 * u[2] - 1)
    cy = (1 - h) * (2 * u[3] - 1)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)  # (B, H, W, 2)
    out = F.grid_sample(images.float(), grid, mode="bilinear", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)  # (B, C, H, W)


def augment_batch(
    images: Tensor,
    generator: torch.Generator,
    *,
    crop_padding: int = 0,
    flip: bool = False,
    rrc_scale: tuple[float, float] | None = None,
    rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Tensor:
    """A recipe's augmentation: random-resized crop (if `rrc_scale`), padded crop, then flip; uint8 in/out."""
    if rrc_scale is not None:
        images = random_resized_crop(images, generator, scale=rrc_scale, ratio=rrc_ratio)
    if crop_padding:
        images = random_crop(images, generator, padding=crop_padding)
    if flip:
        images = random_horizontal_flip(images, generator)
    return images


def normalize_uint8(
    images: Tensor,
    mean: tuple[float, ...] = CIFAR10_MEAN,
    std: tuple[float, ...] = CIFAR10_STD,
) -> Tensor:
    """uint8 (B, C, H, W) → float32, each channel (x / 255 − mean) / std."""
    _, C, _, _ = _check_batch(images)
    if len(mean) != C or len(std) != C:
        raise ValueError(f"need one mean and std per channel ({C}), got {len(mean)} and {len(std)}")
    m = torch.tensor(mean).view(1, C, 1, 1) * 255
    s = torch.tensor(std).view(1, C, 1, 1) * 255
    return (images.float() - m) / s  # (B, C, H, W)
