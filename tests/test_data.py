"""Tests for vitutils.data: sample photos, preprocessing, and the CIFAR-10 loader (offline)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA
from vitutils import data

needs_shared_cifar = pytest.mark.skipif(
    not (SHARED_DATA / data.CIFAR10_DIRNAME).is_dir(),
    reason=f"the shared CIFAR-10 is not present at {SHARED_DATA / data.CIFAR10_DIRNAME}",
)


# --- photos and preprocessing --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", data.SAMPLE_IMAGES)
def test_sample_image_is_rgb_uint8(name):
    image = data.sample_image(name)
    assert isinstance(image, np.ndarray)
    assert image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[2] == 3
    assert min(image.shape[:2]) >= 256
    assert image.std() > 10  # a photo, not a blank


def test_sample_image_unknown_name():
    with pytest.raises(ValueError, match="unknown sample image 'lena'"):
        data.sample_image("lena")


def test_load_image_converts_bgr_and_gray(tmp_path):
    import cv2

    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[..., 0] = 200  # pure red in RGB
    cv2.imwrite(str(tmp_path / "red.png"), rgb[..., ::-1])  # OpenCV writes BGR
    loaded = data.load_image(tmp_path / "red.png")
    np.testing.assert_array_equal(loaded, rgb)

    gray = np.arange(35, dtype=np.uint8).reshape(5, 7)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    loaded = data.load_image(tmp_path / "gray.png")
    assert loaded.shape == (5, 7, 3)
    np.testing.assert_array_equal(loaded, np.stack([gray] * 3, axis=-1))


@pytest.mark.parametrize(
    ("shape", "size", "crop_pct"),
    [
        ((300, 451, 3), 224, 0.875),
        ((451, 300, 3), 224, 0.875),
        ((40, 90, 3), 32, 1.0),
        ((17, 9, 3), 64, 0.9),
    ],
)
def test_resize_and_center_crop_non_square(shape, size, crop_pct):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    out = data.resize_and_center_crop(image, size, crop_pct)
    assert out.shape == (size, size, 3)
    assert out.dtype == np.uint8


def test_resize_and_center_crop_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        data.resize_and_center_crop(np.zeros((8, 8, 3), np.float32), 4)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        data.resize_and_center_crop(np.zeros((8, 8, 2), np.uint8), 4)
    with pytest.raises(ValueError, match="crop_pct"):
        data.resize_and_center_crop(np.zeros((8, 8, 3), np.uint8), 4, crop_pct=1.5)


def test_resize_and_center_crop_takes_the_centre():
    # short side already equals size / crop_pct: no resize, only a centred crop of the long side
    image = np.zeros((32, 48, 3), np.uint8)
    image[:, 8:40] = 255  # the central 32 columns are white
    out = data.resize_and_center_crop(image, 32, crop_pct=1.0)
    assert (out == 255).all()


def test_preprocess_and_denormalize_round_trip():
    image = data.sample_image("coffee")  # 400 × 600, non-square
    x = data.preprocess(image, 160, crop_pct=0.875)
    assert x.shape == (3, 160, 160)
    assert x.dtype == torch.float32
    assert x.mean().abs() < 2  # normalised, not in [0, 255]
    crop = data.resize_and_center_crop(image, 160, 0.875)
    expected = torch.from_numpy(crop).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(data.denormalize(x), expected, atol=1e-6, rtol=0)
    # batched input works too
    torch.testing.assert_close(data.denormalize(x[None])[0], expected, atol=1e-6, rtol=0)


def test_to_tensor_and_to_image():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    x = data.to_tensor(image)
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    assert x[1, 0, 2] == pytest.approx(image[0, 2, 1] / 255)
    np.testing.assert_allclose(data.to_image(x), image / 255, atol=1e-6)
    with pytest.raises(ValueError, match="expected a \\(3, H, W\\) tensor"):
        data.to_image(torch.zeros(1, 3, 2, 2))


def test_to_tensor_is_the_one_converter():
    """Arrays (uint8 or float, RGB or grey) and tensors all come out as (C, H, W) float32 on the CPU."""
    rgb = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    torch.testing.assert_close(data.to_tensor(rgb), torch.from_numpy(rgb).permute(2, 0, 1))
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    assert data.to_tensor(grey).shape == (1, 4, 5)
    torch.testing.assert_close(data.to_tensor(grey)[0], torch.from_numpy(grey).float() / 255)
    t = torch.rand(3, 4, 5, dtype=torch.float64, requires_grad=True)
    out = data.to_tensor(t)
    assert out.dtype == torch.float32 and not out.requires_grad
    torch.testing.assert_close(out, t.detach().float())
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        data.to_tensor(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        data.to_tensor(torch.zeros(2, 4, 5))


def test_square_photo_resizes_names_and_arrays_alike():
    by_name = data.square_photo("coffee", 64)
    by_array = data.square_photo(data.sample_image("coffee"), 64)
    assert by_name.shape == (64, 64, 3) and by_name.dtype == np.uint8
    np.testing.assert_array_equal(by_name, by_array)
    np.testing.assert_array_equal(
        by_name, data.resize_and_center_crop(data.sample_image("coffee"), 64, crop_pct=1.0)
    )


# --- CIFAR-10 from the shared subset -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar_train():
    """The full training set, read once for the tests below (about a second)."""
    return data.load_cifar10(SHARED_DATA, train=True, download=False)


@needs_shared_cifar
def test_load_cifar10_full_dataset(monkeypatch, cifar_train):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(SHARED_DATA))
    assert data.data_dir() == SHARED_DATA
    x_train, y_train = cifar_train
    x_test, y_test = data.load_cifar10(train=False, download=False)
    assert x_train.shape == (50_000, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.shape == (50_000,) and y_train.dtype == np.int64
    assert x_test.shape == (10_000, 32, 32, 3) and y_test.shape == (10_000,)
    # the official class balance: 5,000 training and 1,000 test images per class
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), [1000] * 10)
    assert x_train.flags.c_contiguous

    with open(SHARED_DATA / data.CIFAR10_DIRNAME / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    assert y_test[0] == batch["labels"][0]
    # pixel (0, 0) of the first image: the red, green and blue planes start at 0, 1024 and 2048
    np.testing.assert_array_equal(x_test[0, 0, 0], batch["data"][0, [0, 1024, 2048]])
    np.testing.assert_array_equal(x_test[0, 0, 1], batch["data"][0, [1, 1025, 2049]])

    with open(SHARED_DATA / data.CIFAR10_DIRNAME / "batches.meta", "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    assert tuple(meta["label_names"]) == data.CIFAR10_CLASSES


@needs_shared_cifar
def test_load_cifar10_is_fast_and_stays_uint8():
    start = time.perf_counter()
    images, _ = data.load_cifar10(SHARED_DATA, train=True, download=False)
    seconds = time.perf_counter() - start
    assert images.dtype == np.uint8 and images.nbytes == 50_000 * 32 * 32 * 3
    assert seconds < 10, f"reading the 50,000 training images took {seconds:.1f} s"


# --- the validation split ------------------------------------------------------------------------------------


@needs_shared_cifar
def test_train_val_split_is_disjoint_complete_stratified_and_seeded(cifar_train):
    _, labels = cifar_train
    train, val = data.train_val_split(labels)
    assert (len(train), len(val)) == (45_000, 5_000)
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.union1d(train, val), np.arange(50_000))
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()  # sorted: official order kept
    np.testing.assert_array_equal(np.bincount(labels[val], minlength=10), [500] * 10)
    again_train, again_val = data.train_val_split(labels)
    np.testing.assert_array_equal(val, again_val)
    np.testing.assert_array_equal(train, again_train)
    other = data.train_val_split(labels, seed=1)[1]
    assert not np.array_equal(val, other)
    assert 0 < np.intersect1d(val, other).size < 5_000  # another draw, not a shifted copy


def test_train_val_split_with_unequal_classes():
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    train, val = data.train_val_split(labels, 10, seed=3)
    # shares 7, 2 and 1: proportional to the class sizes
    np.testing.assert_array_equal(np.bincount(labels[val], minlength=3), [7, 2, 1])
    assert len(train) == 90 and np.intersect1d(train, val).size == 0
    labels = np.array([0] * 5 + [1] * 5 + [2] * 5)
    _, val = data.train_val_split(labels, 4)  # shares 4/3 each: one class gets the leftover
    assert sorted(np.bincount(labels[val], minlength=3)) == [1, 1, 2]


def test_train_val_split_rejects_bad_sizes():
    with pytest.raises(ValueError, match="val_size must be between 1 and 9"):
        data.train_val_split(np.zeros(10, int), 10)
    with pytest.raises(ValueError, match="val_size"):
        data.train_val_split(np.zeros(10, int), 0)
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        data.train_val_split(np.zeros((2, 5), int), 3)


@needs_shared_cifar
def test_load_cifar10_split_matches_the_indices(cifar_train):
    images, labels = cifar_train
    train, val = data.train_val_split(labels)
    x_val, y_val = data.load_cifar10_split("val", SHARED_DATA, download=False)
    np.testing.assert_array_equal(x_val, images[val])
    np.testing.assert_array_equal(y_val, labels[val])
    x_tr, _ = data.load_cifar10_split("train", SHARED_DATA, download=False)
    assert x_tr.shape == (45_000, 32, 32, 3) and x_tr.dtype == np.uint8
    np.testing.assert_array_equal(x_tr[:3], images[train[:3]])
    x_all, _ = data.load_cifar10_split("train+val", SHARED_DATA, download=False)
    assert x_all.shape == (50_000, 32, 32, 3)
    x_test, _ = data.load_cifar10_split("test", SHARED_DATA, download=False)
    assert x_test.shape == (10_000, 32, 32, 3)
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        data.load_cifar10_split("validation", SHARED_DATA, download=False)


@needs_shared_cifar
def test_cifar10_dataset(monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(SHARED_DATA))
    assert len(data.CIFAR10(split="val", download=False)) == 5_000
    ds = data.CIFAR10(split="test", download=False)
    assert len(ds) == 10_000 and ds.images.dtype == np.uint8
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1 and x.max() > 0.5
    assert isinstance(y, int) and y == ds.labels[0]
    torch.testing.assert_close(x, torch.from_numpy(ds.images[0]).permute(2, 0, 1).float() / 255)

    flipped = data.CIFAR10(split="test", download=False, transform=lambda im: im[:, ::-1].copy())
    x2, _ = flipped[3]
    np.testing.assert_array_equal(x2, ds.images[3][:, ::-1])


def test_load_cifar10_missing_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=data.CIFAR10_DIRNAME):
        data.load_cifar10(tmp_path, download=False)


# --- CIFAR-10 download path, offline with a fake archive -----------------------------------------------------


def _pickled_batch(rng: np.random.Generator, n: int, label: str) -> bytes:
    batch = {
        "batch_label": label,
        "labels": rng.integers(0, 10, size=n).tolist(),
        "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }
    return pickle.dumps(batch, protocol=2)


def _add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _make_archive(path: Path, *, extra_member: str | None = None) -> tuple[str, dict[str, bytes]]:
    """A tiny archive with the official layout; returns its md5 and the pickled batches."""
    rng = np.random.default_rng(0)
    files = {
        f"data_batch_{i}": _pickled_batch(rng, 6, f"training batch {i} of 5") for i in range(1, 6)
    }
    files["test_batch"] = _pickled_batch(rng, 4, "testing batch 1 of 1")
    files["batches.meta"] = pickle.dumps(
        {"label_names": list(data.CIFAR10_CLASSES), "num_vis": 3072}
    )
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in files.items():
            _add_bytes(tar, f"{data.CIFAR10_DIRNAME}/{name}", payload)
        if extra_member is not None:
            _add_bytes(tar, extra_member, b"not part of CIFAR-10")
    return hashlib.md5(path.read_bytes()).hexdigest(), files


def test_download_md5_mismatch_leaves_nothing(tmp_path):
    archive = tmp_path / "served" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    md5, _ = _make_archive(archive)
    root = tmp_path / "root"
    with pytest.raises(ValueError, match="md5"):
        data.download_cifar10(root, url=archive.as_uri(), md5="0" * 32)
    assert root.is_dir() and os.listdir(root) == []
    assert md5 != "0" * 32


def test_download_extracts_and_loads(tmp_path, monkeypatch):
    archive = tmp_path / "cifar-10-python.tar.gz"
    md5, files = _make_archive(archive)
    root = tmp_path / "root"
    monkeypatch.setenv(data.DATA_DIR_ENV, str(root))
    folder = data.download_cifar10(url=archive.as_uri(), md5=md5)
    assert folder == root / data.CIFAR10_DIRNAME
    assert sorted(os.listdir(root)) == [data.CIFAR10_DIRNAME]  # no temporary files left
    assert sorted(os.listdir(folder)) == sorted(data.CIFAR10_FILES)

    x, y = data.load_cifar10(train=True, download=False)
    assert x.shape == (30, 32, 32, 3) and y.shape == (30,)
    first = pickle.loads(files["data_batch_1"])
    assert y[0] == first["labels"][0]
    np.testing.assert_array_equal(x[0].transpose(2, 0, 1).reshape(-1), first["data"][0])

    # a complete directory is used as is: a broken URL is never touched
    assert data.download_cifar10(url="file:///does/not/exist.tar.gz", md5="0" * 32) == folder


def test_download_replaces_an_incomplete_copy(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    md5, _ = _make_archive(archive)
    root = tmp_path / "root"
    (root / data.CIFAR10_DIRNAME).mkdir(parents=True)
    (root / data.CIFAR10_DIRNAME / "data_batch_1").write_bytes(b"truncated")
    folder = data.download_cifar10(root, url=archive.as_uri(), md5=md5)
    assert sorted(os.listdir(folder)) == sorted(data.CIFAR10_FILES)
    assert sorted(os.listdir(root)) == [data.CIFAR10_DIRNAME]


@pytest.mark.parametrize("member", ["../evil", f"{data.CIFAR10_DIRNAME}/../../evil", "/tmp/evil"])
def test_download_rejects_unsafe_members(tmp_path, member):
    archive = tmp_path / "served" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    # the md5 is right, so only the member check can stop the extraction
    md5, _ = _make_archive(archive, extra_member=member)
    root = tmp_path / "a" / "root"
    with pytest.raises(ValueError, match="unsafe path"):
        data.download_cifar10(root, url=archive.as_uri(), md5=md5)
    assert os.listdir(root) == []
    assert not (tmp_path / "a" / "evil").exists() and not (tmp_path / "evil").exists()


def test_download_rejects_archive_without_the_dataset(tmp_path):
    archive = tmp_path / "other.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add_bytes(tar, "readme.txt", b"hello")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    root = tmp_path / "root"
    with pytest.raises(ValueError, match="lacks"):
        data.download_cifar10(root, url=archive.as_uri(), md5=md5)
    assert os.listdir(root) == []
