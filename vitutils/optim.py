"""The optimiser and the learning-rate schedule of a training run (chapter 7).

- `param_groups_weight_decay`: timm's rule for AdamW. Weight decay pulls weights towards zero; that is a
  prior on matrices, not on a LayerNorm's gain, a bias, the position embedding or the class token, so
  those (every parameter with fewer than two dimensions, plus the names in `no_weight_decay`) go into a
  group with decay 0.
- `lr_factor`: the schedule as one pure function of the step (nanoGPT's `get_lr`): linear warm-up from 0,
  then cosine decay to `min_lr`, or the step decay of the UvA recipe (`torch.optim.lr_scheduler.MultiStepLR`'s
  rule), or constant. `make_scheduler` hands it to `torch.optim.lr_scheduler.LambdaLR`, which sets the rate
  of every group and saves its position in the scheduler's state dict.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

import torch
from torch import nn

from vitutils.recipes import TrainConfig

__all__ = [
    "NO_WEIGHT_DECAY",
    "lr_factor",
    "make_optimizer",
    "make_scheduler",
    "param_groups_weight_decay",
]

# The ViT's parameters that timm's `VisionTransformer.no_weight_decay()` names (besides all 1-D ones).
NO_WEIGHT_DECAY = ("pos_embed", "cls_token")


def param_groups_weight_decay(
    model: nn.Module, weight_decay: float, no_weight_decay: Iterable[str] = NO_WEIGHT_DECAY
) -> list[dict]:
    """Two AdamW groups: matrices and kernels with `weight_decay`; 1-D parameters (norm gains, biases) and
    the names in `no_weight_decay` with 0. Frozen parameters are left out.

    Book: chapter 7, "The optimiser".
    """
    skip = set(no_weight_decay)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        bare = name.removeprefix("module.")  # a DistributedDataParallel wrapper's prefix
        if param.ndim <= 1 or bare.endswith(".bias") or bare in skip:
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def lr_factor(step: int, config: TrainConfig) -> float:
    """The learning rate at `step` (0-based) as a multiple of `config.lr`.

    Warm-up: (step + 1) / warmup_steps for step < warmup_steps, so the first update is not at rate 0.
    Cosine: min_lr/lr + (1 − min_lr/lr) · ½(1 + cos(π t)), t = (step − warmup) / (steps − warmup), from 1
    to min_lr/lr at the last step. Multistep: gamma ** (number of milestones ≤ step). Constant: 1.

    Book: chapter 7, "The learning-rate schedule".
    """
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "cosine":
        floor = config.min_lr / config.lr
        t = (step - config.warmup_steps) / max(1, config.steps - 1 - config.warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    if config.schedule == "multistep":
        return config.gamma ** bisect.bisect_right(config.milestones, step)
    return 1.0


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over `param_groups_weight_decay` (or one decayed group if `config.decay_all`)."""
    if config.decay_all:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    else:
        groups = param_groups_weight_decay(model, config.weight_decay)
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """`LambdaLR` with `lr_factor`: step it once after every optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
