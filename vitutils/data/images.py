"""Photos and their preprocessing: what the book feeds into a Vision Transformer.

Sample photos ship inside installed packages (scikit-image, matplotlib) and are read at run time. The
preprocessing is the standard ImageNet recipe of the ViT paper's fine-tuning setup (Dosovitskiy et al., 2021,
section 4.1 and appendix B.1): resize the short side, centre crop, normalise with the ImageNet mean and
standard deviation. `to_tensor` is the package's one converter from an image array to a tensor; every figure
and explorer goes through it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SAMPLE_IMAGES",
    "denormalize",
    "load_image",
    "preprocess",
    "resize_and_center_crop",
    "sample_image",
    "square_photo",
    "to_image",
    "to_tensor",
]

# The ImageNet channel statistics (timm's IMAGENET_DEFAULT_MEAN / _STD), the package's only copy.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SAMPLE_IMAGES = ("chelsea", "astronaut", "coffee", "rocket", "grace_hopper")


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 3) or (H, W, 4) uint8 -> contiguous (H, W, 3) uint8 RGB."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)  # (H, W, 3)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {tuple(image.shape)}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image (values 0-255), got dtype {image.dtype}")
    return np.ascontiguousarray(image[..., :3])


def sample_image(name: str = "chelsea") -> np.ndarray:
    """A sample photo, read from an installed package: (H, W, 3) uint8 RGB.

    `name` is one of `SAMPLE_IMAGES`: "chelsea" (a cat, 300 × 451), "astronaut" (512 × 512), "coffee"
    (400 × 600), "rocket" (427 × 640) from `skimage.data`, and "grace_hopper" (600 × 512) from matplotlib's
    bundled sample data. Nothing is downloaded and nothing is stored in the book's repository.

    Book: chapter 1, "Images as sequences of patches".
    """
    if name not in SAMPLE_IMAGES:
        raise ValueError(f"unknown sample image {name!r}; expected one of {SAMPLE_IMAGES}")
    if name == "grace_hopper":
        from matplotlib import cbook

        return load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    import skimage.data

    return _as_rgb_uint8(getattr(skimage.data, name)())


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file with OpenCV: (H, W, 3) uint8 RGB (BGR and grayscale files are converted, alpha dropped).

    Book: chapter 1, "Images as sequences of patches".
    """
    # np.fromfile + imdecode instead of cv2.imread: imread silently returns None for missing files and
    # cannot open non-ASCII paths on Windows.
    buffer = np.fromfile(os.fspath(path), dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_ANYCOLOR)  # 8-bit, (H, W) gray or (H, W, 3) BGR
    if image is None:
        raise ValueError(f"could not decode {os.fspath(path)!r} as an image")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)  # (H, W, 3)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # (H, W, 3)


def resize_and_center_crop(image: np.ndarray, size: int, crop_pct: float = 0.875) -> np.ndarray:
    """Resize the short side to `size / crop_pct` pixels, then crop the central `size × size` square.

    `image` is (H, W, 3) uint8; the result is (size, size, 3) uint8. `crop_pct = 0.875` is the usual ImageNet
    evaluation crop (256 → 224); `crop_pct = 1.0` keeps as much of the photo as a square allows. Shrinking
    uses area interpolation (no aliasing), enlarging uses bicubic.

    Book: chapter 1, "Images as sequences of patches".
    """
    image = _as_rgb_uint8(np.asarray(image))
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    H, W, _ = image.shape
    short = math.floor(size / crop_pct)
    if H <= W:
        new_h, new_w = short, max(short, int(short * W / H))
    else:
        new_h, new_w = max(short, int(short * H / W)), short
    if (new_h, new_w) != (H, W):
        interpolation = cv2.INTER_AREA if new_h < H else cv2.INTER_CUBIC
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)  # (new_h, new_w, 3)
    top = round((new_h - size) / 2)
    left = round((new_w - size) / 2)
    return np.ascontiguousarray(image[top : top + size, left : left + size])  # (size, size, 3)


def square_photo(image: str | np.ndarray, size: int) -> np.ndarray:
    """A sample name or an (H, W, 3) uint8 photo -> the largest centred square, resized to size × size.

    The explorers show their photo this way (`resize_and_center_crop` with `crop_pct=1.0`), whether they
    are given a name or an array.

    Book: chapter 1, "Images as sequences of patches".
    """
    photo = sample_image(image) if isinstance(image, str) else np.asarray(image)
    return resize_and_center_crop(photo, size, crop_pct=1.0)  # (size, size, 3)


def to_tensor(image: np.ndarray | Tensor) -> Tensor:
    """An image as a (C, H, W) float32 tensor: the package's one image converter.

    Accepts an (H, W, 3), (H, W, 1) or (H, W) array (uint8 values are divided by 255, float values are kept)
    or a (C, H, W) tensor with C = 1 or 3 (converted to float32, detached, moved to the CPU). Returns
    (C, H, W) with C = 3, or 1 for a grayscale image.

    Book: chapter 1, "Images as sequences of patches".
    """
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(image.shape)}")
        return image.detach().to("cpu", torch.float32)
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]  # (H, W, 1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"expected an (H, W, 3) image, got shape {tuple(array.shape)}")
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)  # (C, H, W)
    return x.float() / 255.0 if array.dtype == np.uint8 else x.float()


def _channel_stats(
    mean: Sequence[float], std: Sequence[float], like: Tensor
) -> tuple[Tensor, Tensor]:
    m = torch.as_tensor(mean, dtype=like.dtype, device=like.device).view(-1, 1, 1)  # (3, 1, 1)
    s = torch.as_tensor(std, dtype=like.dtype, device=like.device).view(-1, 1, 1)  # (3, 1, 1)
    return m, s


def preprocess(
    image: np.ndarray,
    size: int = 224,
    *,
    crop_pct: float = 0.875,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """(H, W, 3) uint8 photo -> (3, size, size) float32, resized, centre-cropped and normalised per channel.

    Book: chapter 2, "Patch embedding and the class token".
    """
    x = to_tensor(resize_and_center_crop(image, size, crop_pct))  # (3, size, size)
    m, s = _channel_stats(mean, std, x)
    return (x - m) / s


def denormalize(
    x: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Tensor:
    """Undo `preprocess`'s normalisation for display: (..., 3, H, W) -> same shape, clamped to [0, 1].

    Book: chapter 2, "Patch embedding and the class token".
    """
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"expected a (..., 3, H, W) tensor, got shape {tuple(x.shape)}")
    m, s = _channel_stats(mean, std, x)
    return (x * s + m).clamp(0.0, 1.0)


def to_image(x: Tensor) -> np.ndarray:
    """(3, H, W) tensor in [0, 1] -> (H, W, 3) float32 array, clamped, ready for `plt.imshow`.

    The inverse direction of `to_tensor`, for display.

    Book: chapter 1, "Images as sequences of patches".
    """
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(x.shape)}")
    return x.detach().float().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()  # (H, W, 3)
