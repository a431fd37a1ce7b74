"""Figures of chapter 7: images and their augmentations, learning-rate schedules, training curves, the
confusion matrix, per-class accuracy and the most confident mistakes.

They draw what `vitutils.train`, `vitutils.optim` and a run's JSON log computed; nothing here computes a
statistic the chapter states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from vitutils.viz._common import hwc

__all__ = [
    "plot_confusion",
    "plot_curves",
    "plot_image_grid",
    "plot_lr_schedules",
    "plot_per_class",
    "plot_val_vs_time",
]


def plot_image_grid(
    images: Sequence[Tensor | np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    title: str = "",
    size: float = 1.3,
) -> Figure:
    """uint8 images, (3, H, W) or (H, W, 3), in a grid with an optional title under each."""
    n = len(images)
    nrows = -(-n // ncols)
    lines = max((t.count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    height = nrows * (size + 0.22 * lines) + (0.5 if title else 0.1)  # room for every title line
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, height), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(hwc(images[k]), interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[k], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if title:  # keep the subplot titles clear of the figure title
        fig.subplots_adjust(top=1 - 0.45 / height)
    return fig


def plot_lr_schedules(schedules: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> Figure:
    """Learning rate against epoch, one line per recipe: {name: (epochs, learning rates)}."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for name, (epochs, lrs) in schedules.items():
        ax.plot(epochs, lrs, label=name)
    ax.set(xlabel="epoch", ylabel="learning rate", yscale="log", title="Learning-rate schedules")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_curves(log: Mapping, *, title: str = "") -> Figure:
    """A run's log: training and validation loss (left), validation accuracy (right), against epochs."""
    epochs = [e["epoch"] for e in log["epochs"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    left.plot(
        epochs, [e["train_loss"] for e in log["epochs"]], "o-", label="training (smoothed targets)"
    )
    left.plot(epochs, [e["val_loss"] for e in log["epochs"]], "s-", label="validation")
    left.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    left.legend()
    right.plot(epochs, [100 * e["val_accuracy"] for e in log["epochs"]], "s-", color="C1")
    right.set(xlabel="epoch", ylabel="accuracy (%)", title="Validation accuracy")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_val_vs_time(logs: Mapping[str, Mapping], *, title: str = "Equal wall-clock") -> Figure:
    """Validation accuracy against training wall-clock minutes, one line per run: {name: log}."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for name, log in logs.items():
        minutes = [e["train_seconds"] / 60 for e in log["epochs"]]
        ax.plot(minutes, [100 * e["val_accuracy"] for e in log["epochs"]], "o-", label=name)
    ax.set(
        xlabel="training time (minutes, this machine)",
        ylabel="validation accuracy (%)",
        title=title,
    )
    ax.legend()
    fig.tight_layout()
    return fig


def plot_confusion(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], *, title: str = ""
) -> Figure:
    """A confusion matrix of counts (rows: true class, columns: predicted), viridis, counts printed."""
    m = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(6.2, 5.4))
    im = ax.imshow(m, cmap="viridis")
    K = len(classes)
    ax.set_xticks(range(K), classes, rotation=45, ha="right")
    ax.set_yticks(range(K), classes)
    for i in range(K):
        for j in range(K):
            ax.text(
                j,
                i,
                str(m[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="black" if m[i, j] > m.max() / 2 else "white",
            )
    ax.set(xlabel="predicted class", ylabel="true class", title=title or "Confusion matrix")
    fig.colorbar(im, ax=ax, label="images")
    fig.tight_layout()
    return fig


def plot_per_class(
    accuracies: Sequence[float], classes: Sequence[str], *, title: str = ""
) -> Figure:
    """Per-class accuracy as horizontal bars (fractions in, percent drawn)."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.barh(range(len(classes)), [100 * a for a in accuracies], color="C0")
    ax.set_yticks(range(len(classes)), classes)
    ax.invert_yaxis()
    ax.set(xlabel="accuracy (%)", xlim=(0, 100), title=title or "Per-class accuracy")
    fig.tight_layout()
    return fig
