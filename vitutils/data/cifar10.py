"""CIFAR-10 (Krizhevsky, 2009): finding, downloading, reading and splitting it.

The loader looks for an extracted `cifar-10-batches-py` directory (the official python format) under the data
directory: the environment variable `VITUTILS_DATA_DIR`, else `~/.cache/vitutils`. If it is missing it
downloads the official archive, checks its md5 before anything is unpacked or unpickled, and extracts it into a
temporary directory that is renamed into place in one step. Images stay uint8 (150 MB for the 50,000 training
images) until a batch is used.

Hyper-parameters are chosen on a validation set carved out of the training images, never on the test set:
`train_val_split` holds out 5,000 of the 50,000 training images (as the UvA tutorial does), seeded and
stratified (500 per class), and the test set is reported once.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal

import numpy as np
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from vitutils.data.images import to_tensor

__all__ = [
    "CIFAR10",
    "CIFAR10_CLASSES",
    "CIFAR10_DIRNAME",
    "CIFAR10_FILES",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "DATA_DIR_ENV",
    "SPLITS",
    "data_dir",
    "download_cifar10",
    "load_cifar10",
    "load_cifar10_split",
    "train_val_split",
]

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
# "train" and "val" partition the official training set; "train+val" is all of it; "test" is the test set.
SPLITS = ("train", "val", "train+val", "test")


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


# --- the validation split ---------------------------------------------------------------------------------


def train_val_split(
    labels: np.ndarray, val_size: int = 5000, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of a seeded, class-stratified split of a labelled training set.

    Each class gives the validation set its share of `val_size` (500 per class for CIFAR-10's 50,000 images;
    with unequal classes the shares are rounded by largest remainder). The images of each class are
    shuffled with `numpy.random.default_rng(seed)`, the first ones of the shuffle go to validation. Both
    index arrays are sorted, disjoint and together cover `range(len(labels))`; the same labels, `val_size`
    and `seed` always give the same split.

    Book: chapter 7, "Training on CIFAR-10".
    """
    labels = np.asarray(labels)
    n = len(labels)
    if labels.ndim != 1:
        raise ValueError(f"expected labels of shape (n,), got {labels.shape}")
    if not 0 < val_size < n:
        raise ValueError(
            f"val_size must be between 1 and {n - 1} (the number of labels - 1), got {val_size}"
        )
    classes, counts = np.unique(labels, return_counts=True)
    exact = val_size * counts / n  # each class's share of the validation set
    take = np.floor(exact).astype(int)
    # largest remainder first; ties by class order, so the split does not depend on anything but the inputs
    leftover = np.argsort(-(exact - take), kind="stable")[: val_size - take.sum()]
    take[leftover] += 1
    rng = np.random.default_rng(seed)
    val = np.concatenate(
        [
            rng.permutation(np.flatnonzero(labels == c))[:k]
            for c, k in zip(classes, take, strict=True)
        ]
    )
    val.sort()
    train = np.setdiff1d(np.arange(n), val, assume_unique=True)  # sorted
    return train, val


def load_cifar10_split(
    split: Literal["train", "val", "train+val", "test"],
    root: str | os.PathLike | None = None,
    *,
    val_size: int = 5000,
    seed: int = 0,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """One split of CIFAR-10 as arrays: images (n, 32, 32, 3) uint8 and labels (n,) int64.

    "train" (45,000 images) and "val" (5,000) come from `train_val_split` of the official training set with
    `val_size` and `seed`; "train+val" is the whole training set (50,000), for a final run once the
    hyper-parameters are chosen; "test" is the official test set (10,000). Images keep their official order.

    Book: chapter 7, "Training on CIFAR-10".
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    images, labels = load_cifar10(root, train=split != "test", download=download)
    if split in ("train", "val"):
        train, val = train_val_split(labels, val_size, seed=seed)
        keep = train if split == "train" else val
        images, labels = images[keep], labels[keep]  # (n, 32, 32, 3), (n,)
    return images, labels


class CIFAR10(Dataset):
    """A split of CIFAR-10 (see `load_cifar10_split`) as a map-style dataset of (image, label) pairs.

    The images stay uint8 in memory. Without `transform` an item is ((3, 32, 32) float32 tensor in [0, 1],
    int label); with it, `transform` receives the (32, 32, 3) uint8 array and its result is returned instead.

    Book: chapter 7, "Training on CIFAR-10".
    """

    classes = CIFAR10_CLASSES

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        split: Literal["train", "val", "train+val", "test"] = "train",
        val_size: int = 5000,
        seed: int = 0,
        download: bool = True,
        transform: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        self.split = split
        self.images, self.labels = load_cifar10_split(
            split, root, val_size=val_size, seed=seed, download=download
        )
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.images[index]  # (32, 32, 3) uint8
        x = self.transform(image) if self.transform is not None else to_tensor(image)
        return x, int(self.labels[index])
