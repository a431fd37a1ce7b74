"""Photos and CIFAR-10: everything the book feeds into a Vision Transformer.

Two sources of images:

- Sample photos shipped inside installed packages (scikit-image, matplotlib), read at run time, plus the
  standard ImageNet preprocessing of the ViT paper's fine-tuning setup (Dosovitskiy et al., 2021, section 4.1
  and appendix B.1): resize the short side, centre crop, normalise with the ImageNet mean and standard deviation.
- CIFAR-10 (Krizhevsky, 2009) in its official python format. The loader looks for an extracted
  `cifar-10-batches-py` directory under the data directory (environment variable `VITUTILS_DATA_DIR`, else
  `~/.cache/vitutils`) and otherwise downloads the official archive, checks its md5 before anything is unpacked
  or unpickled, and extracts it into a temporary directory that is renamed into place in one step.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SAMPLE_IMAGES = ("chelsea", "astronaut", "coffee", "rocket", "grace_hopper")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_DIRNAME = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)
CIFAR10_FILES = (*CIFAR10_TRAIN_FILES, *CIFAR10_TEST_FILES, "batches.meta")
DATA_DIR_ENV = "VITUTILS_DATA_DIR"


# --- photos ------------------------------------------------------------------------------------------------


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


def to_tensor(image: np.ndarray) -> Tensor:
    """(H, W, 3) image -> (3, H, W) float32 tensor in [0, 1] (uint8 is divided by 255; floats are kept).

    Book: chapter 1, "Images as sequences of patches".
    """
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {tuple(array.shape)}")
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)  # (3, H, W)
    if array.dtype == np.uint8:
        return x.float() / 255.0
    return x.float()


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

    Book: chapter 1, "Images as sequences of patches".
    """
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(x.shape)}")
    return x.detach().float().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()  # (H, W, 3)


# --- CIFAR-10: locating, downloading, reading ----------------------------------------------------------------


def data_dir() -> Path:
    """Where datasets live: `$VITUTILS_DATA_DIR` if set, else `~/.cache/vitutils`.

    Book: chapter 7, "Training on CIFAR-10".
    """
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "vitutils"


def _resolve_root(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root is not None else data_dir()


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in CIFAR10_FILES)


def _md5(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # an integrity check, not a security one
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, out: BinaryIO, chunk_size: int = 1 << 20) -> None:
    """Stream `url` into the open file `out` with a progress bar."""
    with urllib.request.urlopen(url, timeout=60) as response:  # any scheme, file:// in the tests
        total = int(response.headers.get("Content-Length") or 0) or None
        name = url.rsplit("/", 1)[-1]
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name) as bar:
            while chunk := response.read(chunk_size):
                out.write(chunk)
                bar.update(len(chunk))


def _check_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Refuse archives that could write outside the extraction directory (absolute paths, `..`, links)."""
    members = tar.getmembers()
    for member in members:
        parts = PurePosixPath(member.name.replace("\\", "/")).parts
        if member.name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
            raise ValueError(f"unsafe path in archive: {member.name!r}")
        if not (member.isfile() or member.isdir()):
            raise ValueError(f"unexpected link or device in archive: {member.name!r}")
    return members


def download_cifar10(
    root: str | os.PathLike | None = None, *, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5
) -> Path:
    """Make sure `root/cifar-10-batches-py` holds the seven official files; return that directory.

    Returns at once if the directory is already complete. Otherwise downloads `url` to a temporary file in
    `root`, checks its md5 against `md5` before anything is extracted or unpickled (ValueError on mismatch),
    extracts into a temporary directory in `root` and renames the result into place. On any error the
    temporary file and directory are removed, so no half-written data is left behind. `root` defaults to
    `data_dir()`; `url` may be a `file://` URL.

    Book: chapter 7, "Training on CIFAR-10".
    """
    root = _resolve_root(root)
    target = root / CIFAR10_DIRNAME
    if _is_complete(target):
        return target
    root.mkdir(parents=True, exist_ok=True)
    fd, archive_name = tempfile.mkstemp(prefix=".cifar-10-", suffix=".tar.gz.part", dir=root)
    archive = Path(archive_name)
    staging: Path | None = None
    try:
        with os.fdopen(fd, "wb") as out:
            _download(url, out)
        actual = _md5(archive)
        if actual != md5:
            raise ValueError(f"md5 of {url} is {actual}, expected {md5} (corrupted or wrong file)")
        staging = Path(tempfile.mkdtemp(prefix=".cifar-10-extract-", dir=root))
        with tarfile.open(archive, "r:gz") as tar:
            members = _check_members(tar)
            # extraction filters exist from Python 3.12 and in recent 3.10/3.11 patch releases
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, members=members, filter="data")
            else:  # pragma: no cover - members were checked above
                tar.extractall(staging, members=members)
        extracted = staging / CIFAR10_DIRNAME
        if not _is_complete(extracted):
            missing = [n for n in CIFAR10_FILES if not (extracted / n).is_file()]
            raise ValueError(f"archive {url} lacks {CIFAR10_DIRNAME}/ files {missing}")
        if target.exists():  # an incomplete earlier copy: moved into staging, deleted below
            os.replace(target, staging / "incomplete-old-copy")
        os.replace(extracted, target)  # atomic on one file system
    finally:
        archive.unlink(missing_ok=True)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official batch file -> images (n, 32, 32, 3) uint8, labels (n,) int64."""
    with open(path, "rb") as f:
        batch: dict[str, Any] = pickle.load(f, encoding="latin1")
    data = np.asarray(batch["data"], dtype=np.uint8)  # (n, 3072): 1024 red, 1024 green, 1024 blue
    labels = np.asarray(batch["labels"], dtype=np.int64)  # (n,)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(
            f"{path}: expected data (n, 3072) and n labels, got {data.shape} and {len(labels)} labels"
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (n, 32, 32, 3)
    return images, labels


def load_cifar10(
    root: str | os.PathLike | None = None, *, train: bool = True, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 as arrays: images (n, 32, 32, 3) uint8 RGB and labels (n,) int64 in 0..9.

    `train=True` reads the five training batches (50,000 images in the full dataset), `train=False` the test
    batch (10,000). Looks in `root/cifar-10-batches-py` (`root` defaults to `data_dir()`) and downloads the
    official archive there if it is missing and `download` is true.

    Book: chapter 7, "Training on CIFAR-10".
    """
    root = _resolve_root(root)
    folder = root / CIFAR10_DIRNAME
    if not _is_complete(folder):
        if not download:
            raise FileNotFoundError(
                f"no complete {CIFAR10_DIRNAME} directory under {root}; pass download=True "
                f"or point {DATA_DIR_ENV} at a directory that contains it"
            )
        folder = download_cifar10(root)
    names = CIFAR10_TRAIN_FILES if train else CIFAR10_TEST_FILES
    batches = [_load_batch(folder / name) for name in names]
    images = np.ascontiguousarray(np.concatenate([b[0] for b in batches]))  # (n, 32, 32, 3)
    labels = np.concatenate([b[1] for b in batches])  # (n,)
    return images, labels


class CIFAR10(Dataset):
    """CIFAR-10 as a map-style dataset of (image, label) pairs.

    Without `transform` an item is ((3, 32, 32) float32 tensor in [0, 1], int label); with it,
    `transform` receives the (32, 32, 3) uint8 array and its result is returned instead of the tensor.

    Book: chapter 7, "Training on CIFAR-10".
    """

    classes = CIFAR10_CLASSES

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        train: bool = True,
        download: bool = True,
        transform: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        self.images, self.labels = load_cifar10(root, train=train, download=download)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.images[index]  # (32, 32, 3) uint8
        x = self.transform(image) if self.transform is not None else to_tensor(image)
        return x, int(self.labels[index])
