"""Training recipes: a typed config for a whole training run, and the book's named ones (chapter 7).

A recipe is data, not code (nanoGPT's config at the top of `train.py`, timm's argument groups): the model's
`ViTConfig`, the optimiser, the learning-rate schedule, the augmentation and the data splits, all in one
frozen dataclass that the loop in `vitutils.train` reads and that every run saves as JSON beside its weights.
Lengths are in optimiser steps, not epochs, so a run is the same whatever the machine and whenever it stops:
`steps_per_epoch` converts.

Named recipes (`RECIPES`, `get_recipe`):

- ``uva``: the UvA Deep Learning Course's Tutorial 15 (Lippe, 2022) as published: patch 4, width 256, MLP
  512, 8 heads, 6 layers, dropout 0.2, AdamW (lr 3e-4, PyTorch's default weight decay 0.01 on every
  parameter), flip and random-resized crop, batch 128, 180 epochs with the learning rate divided by 10 at
  epochs 100 and 150. The tutorial reports 75.6 % test accuracy after its 180 epochs (under an hour on a
  Titan RTX). Two differences remain, both from building it as a `vitutils.ViT`: the initialisation is
  timm's (the tutorial keeps PyTorch's defaults and a standard-normal position embedding), and timm's
  `proj_drop_rate` also drops after the attention's output projection, where the tutorial does not.
- ``cpu``: the book's recipe for a 2-core laptop CPU, at most 30 minutes with its evaluations.
- ``gpu``: a longer recipe for readers with a GPU (for example Colab): omihub777/ViT-CIFAR's shape and
  schedule (7 blocks of width 384, MLP 384, 12 heads, 200 epochs, cosine after 5 warm-up epochs, label
  smoothing), which reaches 90.9 % there with AutoAugment; with crop and flip only, expect less. Not run
  for the book.
- ``smoke``: a tiny model for a few steps, for tests and the chapter's live run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from vitutils.vit import ViTConfig

__all__ = ["RECIPES", "TrainConfig", "describe", "get_recipe"]

CIFAR10_TRAIN_IMAGES = {"train": 45_000, "train+val": 50_000}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run reads besides its seed; lengths in optimiser steps.

    Book: chapter 7, "A recipe is data".
    """

    model: ViTConfig  # the network (chapter 6's config)
    steps: int  # optimiser steps of the whole run; the schedule spans them
    batch_size: int = 128  # global batch: summed over processes
    lr: float = 1e-3  # peak learning rate (after warm-up)
    min_lr: float = 0.0  # cosine: the learning rate at the last step
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"  # after the warm-up
    milestones: tuple[int, ...] = ()  # multistep: steps where the rate is multiplied by gamma
    gamma: float = 0.1  # multistep factor
    weight_decay: float = 0.05  # AdamW's decoupled weight decay
    decay_all: bool = False  # True: decay every parameter (PyTorch's default, the UvA tutorial's)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's β1, β2
    grad_clip: float = 0.0  # max global gradient norm; 0 = no clipping
    label_smoothing: float = 0.0  # ε of the smoothed cross-entropy
    crop_padding: int = 0  # random crop after zero padding by this many pixels; 0 = none
    flip: bool = False  # random horizontal flip
    rrc_scale: tuple[float, float] | None = None  # random-resized crop's area range; None = none
    rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # its aspect-ratio range
    train_split: Literal["train", "train+val"] = "train"  # see `vitutils.data.load_cifar10_split`
    val_split: Literal["val", "test"] = "val"  # evaluated during the run; choose recipes on "val"
    eval_every: int = 0  # steps between evaluations and checkpoints; 0 = once per epoch
    eval_batch_size: int = 500
    description: str = ""  # one line for `--help` and the chapter

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"need steps >= 1 and batch_size >= 1, got {self.steps}, {self.batch_size}"
            )
        if self.schedule not in ("cosine", "multistep", "constant"):
            raise ValueError(
                f"schedule must be 'cosine', 'multistep' or 'constant', got {self.schedule!r}"
            )
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(
                f"warmup_steps must be in [0, steps={self.steps}), got {self.warmup_steps}"
            )
        if self.lr <= 0 or not 0 <= self.min_lr <= self.lr:
            raise ValueError(
                f"need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}"
            )
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.train_split not in CIFAR10_TRAIN_IMAGES:
            raise ValueError(
                f"train_split must be 'train' or 'train+val', got {self.train_split!r}"
            )
        if self.val_split not in ("val", "test"):
            raise ValueError(f"val_split must be 'val' or 'test', got {self.val_split!r}")
        if self.train_split == "train+val" and self.val_split == "val":
            raise ValueError(
                "train_split='train+val' contains the validation images; use val_split='test'"
            )
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")

    @property
    def steps_per_epoch(self) -> int:
        """Full batches in one pass over the training split (the last partial batch is dropped)."""
        return CIFAR10_TRAIN_IMAGES[self.train_split] // self.batch_size

    @property
    def epochs(self) -> float:
        return self.steps / self.steps_per_epoch

    @property
    def eval_interval(self) -> int:
        return self.eval_every or self.steps_per_epoch

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with fields replaced; `model` may be a dict of `ViTConfig` fields to replace."""
        if isinstance(overrides.get("model"), dict):
            overrides["model"] = self.model.replace(**overrides["model"])
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(
                f"unknown TrainConfig field(s) {unknown}; expected some of {sorted(names)}"
            )
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the model config as a nested dict, tuples as lists."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The inverse of `to_dict`; ValueError names unknown or missing fields."""
        data = dict(data)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}")
        model = data.pop("model", None)
        if not isinstance(model, dict):
            raise ValueError("a TrainConfig dict needs a 'model' dict of ViTConfig fields")
        model = {k: tuple(v) if isinstance(v, list) else v for k, v in model.items()}
        model_names = {f.name for f in dataclasses.fields(ViTConfig)}
        if set(model) - model_names:
            raise ValueError(f"unknown ViTConfig field(s) {sorted(set(model) - model_names)}")
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(model=ViTConfig(**model), **fields)


def _cifar_vit(**fields: Any) -> ViTConfig:
    return ViTConfig(img_size=32, patch_size=4, num_classes=10, **fields)


_UVA_EPOCH = 45_000 // 128  # 351 steps: the tutorial's loader drops the last partial batch

_CPU = TrainConfig(
    model=_cifar_vit(
        embed_dim=192,
        depth=6,
        num_heads=3,
        mlp_ratio=2.0,
        patch_drop_rate=0.5,  # train on 32 of the 64 patch tokens: about twice the images/s
    ),
    steps=4000,  # 11.4 epochs: what fits in 30 minutes with the evaluations
    batch_size=128,
    lr=1e-3,
    warmup_steps=351,
    min_lr=1e-5,
    weight_decay=0.05,
    grad_clip=1.0,
    label_smoothing=0.1,
    flip=True,  # no random crop: in 11 epochs the model underfits (chapter 7, section 7.8)
    eval_every=1000,  # each pass over the 5,000 validation images costs about 15 s
    description="the book's laptop recipe: at most 30 minutes on 2 CPU cores",
)
# Axial attention needs every token on the grid: no class token (mean pooling), no patch dropout.
_AXIAL = dict(
    attn_type="axial", class_token=False, global_pool="avg", pos_embed="axial", patch_drop_rate=0.0
)
# Training images per second on the 2-core CPU of the bundled run (AMD EPYC, torch 2.13), measured in one
# process with the `cpu` recipe's model beside them (312 images/s there; its run averaged 327): the median of
# 5 rounds of 3 optimiser steps each, interleaved, after 2 warm-up rounds. `CPU_TRAIN_SECONDS` is the bundled
# run's training time, which each chapter-10 recipe's steps fill at these rates.
CPU_TRAIN_SECONDS = 1568
AXIAL_THROUGHPUT: dict[str, float] = {"cpu_axial": 107.2, "cpu_axial_p2": 26.3, "cpu_p2": 74.7}


def _cpu_variant(images_per_s: float, **model: Any) -> TrainConfig:
    """The `cpu` recipe with `model` fields replaced and the steps that fit `CPU_TRAIN_SECONDS`."""
    steps = round(CPU_TRAIN_SECONDS * images_per_s / _CPU.batch_size, -1)
    parts = ", ".join(f"{k}={v}" for k, v in model.items() if k in ("attn_type", "patch_size"))
    return _CPU.replace(
        model=model,
        steps=int(steps),
        warmup_steps=round(_CPU.warmup_steps * steps / _CPU.steps),
        eval_every=round(steps / 4),
        description=f"the cpu recipe with {parts}, {int(steps)} steps in the same training time",
    )


RECIPES: dict[str, TrainConfig] = {
    "uva": TrainConfig(
        model=_cifar_vit(
            embed_dim=256,
            depth=6,
            num_heads=8,
            mlp_ratio=2.0,  # hidden_dim 512
            pos_drop_rate=0.2,
            proj_drop_rate=0.2,
            attn_drop_rate=0.2,
        ),
        steps=180 * _UVA_EPOCH,
        batch_size=128,
        lr=3e-4,
        schedule="multistep",
        milestones=(100 * _UVA_EPOCH, 150 * _UVA_EPOCH),
        gamma=0.1,
        weight_decay=0.01,  # torch.optim.AdamW's default: the tutorial passes none
        decay_all=True,
        flip=True,
        rrc_scale=(0.8, 1.0),
        rrc_ratio=(0.9, 1.1),
        description="UvA DL Tutorial 15 as published: 180 epochs, 75.6 % on a GPU",
    ),
    "cpu": _CPU,
    # Chapter 10: the same recipe with axial attention, and both at patch 2 (256 tokens), each with as many
    # steps as fit the bundled `cpu` run's training time (1568 s) on its 2-core CPU, from images/s measured
    # there in one process (`AXIAL_THROUGHPUT`). The schedule's shape (warm-up, cosine) is kept.
    "cpu_axial": _cpu_variant(AXIAL_THROUGHPUT["cpu_axial"], **_AXIAL),
    "cpu_axial_p2": _cpu_variant(AXIAL_THROUGHPUT["cpu_axial_p2"], patch_size=2, **_AXIAL),
    "cpu_p2": _cpu_variant(AXIAL_THROUGHPUT["cpu_p2"], patch_size=2),
    "gpu": TrainConfig(
        model=_cifar_vit(embed_dim=384, depth=7, num_heads=12, mlp_ratio=1.0, drop_path_rate=0.1),
        steps=200 * 351,
        batch_size=128,
        lr=1e-3,
        warmup_steps=5 * 351,
        min_lr=1e-5,
        weight_decay=0.05,
        grad_clip=1.0,
        label_smoothing=0.1,
        crop_padding=4,
        flip=True,
        description="200 epochs for a GPU (omihub777/ViT-CIFAR's shape, crop and flip only)",
    ),
    "smoke": TrainConfig(
        model=_cifar_vit(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0),
        steps=200,
        batch_size=64,
        lr=1e-3,
        warmup_steps=20,
        weight_decay=0.05,
        label_smoothing=0.1,
        crop_padding=4,
        flip=True,
        eval_every=50,
        eval_batch_size=1000,
        description="a tiny model for a few seconds: tests and the chapter's live run",
    ),
}


def get_recipe(name: str, **overrides: Any) -> TrainConfig:
    """The named recipe, with fields replaced by `overrides` (`model=` a dict of ViTConfig fields)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}")
    return RECIPES[name].replace(**overrides)


def describe(config: TrainConfig) -> str:
    """One line: epochs, steps and batch."""
    return (
        f"{config.steps} steps of {config.batch_size} images "
        f"({config.epochs:.1f} epochs of {config.steps_per_epoch} steps)"
    )
