"""Evaluating a classifier on CIFAR-10: the splits as tensors, logits, and the metrics (chapter 7).

`evaluate` gives what a training log records: plain cross-entropy (no label smoothing), accuracy,
per-class accuracy and the confusion matrix, with the model in eval mode (no dropout, no patch dropout)
and the images normalised as in training (`vitutils.augment.normalize_uint8`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from vitutils.augment import normalize_uint8
from vitutils.data import DATA_DIR_ENV, data_dir, load_cifar10_split

__all__ = ["evaluate", "load_split", "predict"]


def load_split(split: str) -> tuple[Tensor, Tensor]:
    """A CIFAR-10 split as tensors: images (n, 3, 32, 32) uint8, labels (n,) int64."""
    try:
        images, labels = load_cifar10_split(split, download=True)
    except OSError as err:  # not on disk, and the download failed (offline?)
        raise FileNotFoundError(
            f"CIFAR-10 is not in {data_dir()} and could not be downloaded ({err}); "
            f"set {DATA_DIR_ENV} or --data-dir to a folder that holds cifar-10-batches-py"
        ) from err
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (n, 3, 32, 32) uint8
    return x, torch.from_numpy(labels).long()


@torch.no_grad()
def predict(
    model: nn.Module,
    images: Tensor,
    *,
    batch_size: int = 500,
    device: str = "cpu",
    progress: bool = False,
) -> Tensor:
    """Logits (n, K) of `model` in eval mode for uint8 images (n, 3, H, W), on the CPU.

    Book: chapter 7, "The most confident mistakes".
    """
    was_training = model.training
    model.eval()
    batches = range(0, len(images), batch_size)
    out = [
        model(normalize_uint8(images[i : i + batch_size]).to(device)).float().cpu()
        for i in tqdm(batches, desc="eval", leave=False, mininterval=2, disable=not progress)
    ]
    model.train(was_training)
    return torch.cat(out)  # (n, K)


def evaluate(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    batch_size: int = 500,
    device: str = "cpu",
    num_classes: int = 10,
    progress: bool = False,
) -> dict[str, Any]:
    """Loss (plain cross-entropy), accuracy, per-class accuracy and confusion matrix of `model` in eval
    mode on uint8 images (n, 3, H, W). `confusion[i][j]` counts images of class i predicted as j.

    Book: chapter 7, "Evaluation".
    """
    logits = predict(model, images, batch_size=batch_size, device=device, progress=progress)
    pred = logits.argmax(-1)  # (n,)
    confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes**2)
    confusion = confusion.view(num_classes, num_classes)  # (true, predicted)
    per_class = confusion.diag() / confusion.sum(1).clamp(min=1)
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "accuracy": (pred == labels).float().mean().item(),
        "per_class_accuracy": per_class.tolist(),
        "confusion": confusion.tolist(),
    }
