"""Why is my ViT on CIFAR so low? One change at a time to the `cpu` recipe, at one equal budget (chapter 7).

    python -m vitutils.ablation --seconds 180 --out book/data/cifar10_ablation.json

Every variant gets the same wall-clock for training on this machine, the budget a laptop reader has: a
variant that is slower per image sees fewer images. The schedule must end inside the budget, so each
variant's length in steps is set from its own measured speed: a few timed training steps first, then
steps = budget × images/s ÷ batch, with the recipe's warm-up fraction. Variants are compared on the
validation split (never the test set), evaluated once at the end. The baseline is `BASELINE`, the first
version of the `cpu` recipe (random crop and flip, 11 epochs), at this budget: the published table was
measured on it, and the `cpu` recipe has changed since in the light of the table and of full-length runs
(chapter 7), so the baseline stays pinned here for the table's command to reproduce it. A small CNN of
about the same number of parameters, trained by the same loop and recipe, measures the inductive bias of
chapter 6.

The output JSON holds the command, date, machine, commit and every variant's figures; `to_markdown`
renders it as the chapter's table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitutils.checkpoint import environment
from vitutils.recipes import TrainConfig, get_recipe
from vitutils.train import train
from vitutils.vit import ViT, count_parameters

__all__ = ["BASELINE", "VARIANTS", "SmallCNN", "compare", "run_ablation", "to_markdown"]

# The `cpu` recipe as it was when the ablation chose its next changes (see the module docstring).
BASELINE: TrainConfig = get_recipe("cpu").replace(
    model={"pos_embed": "learn", "patch_drop_rate": 0.5},
    steps=11 * 351,
    crop_padding=4,
    eval_every=0,
)


class SmallCNN(nn.Module):
    """A plain VGG-style CNN for 32 × 32 images: three stages of two 3 × 3 conv-BatchNorm-ReLU layers
    (96, 192, 288 channels), each stage but the last followed by 2 × 2 max-pooling, then global average
    pooling and a linear head: about 1.8 M parameters, like the `cpu` recipe's ViT.

    Book: chapter 7, "Why is my ViT on CIFAR so low?".
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (96, 192, 288)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(widths):
            for _ in range(2):
                layers += [
                    nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(),
                ]
                c_in = c
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 288, 8, 8)
        return self.head(x.mean(dim=(2, 3)))  # (B, num_classes)


# name → (what changes, TrainConfig overrides; "model" holds ViTConfig overrides). "cnn" swaps the model.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "baseline": ("the `cpu` recipe", {}),
    "patch 2": ("patch size 2 (256 tokens)", {"model": {"patch_size": 2}}),
    "patch 8": ("patch size 8 (16 tokens)", {"model": {"patch_size": 8}}),
    "no augmentation": ("no crop, no flip", {"crop_padding": 0, "flip": False}),
    "no label smoothing": ("ε = 0", {"label_smoothing": 0.0}),
    "no warm-up": ("cosine from the first step", {"warmup_steps": 0}),
    "no patch dropout": ("every token in every step", {"model": {"patch_drop_rate": 0.0}}),
    "more patch dropout": ("keep 16 of 64 patch tokens", {"model": {"patch_drop_rate": 0.75}}),
    "sin-cos position": ("fixed 2D sin-cos embedding", {"model": {"pos_embed": "sincos"}}),
    "no position": ("no position embedding", {"model": {"pos_embed": "none"}}),
    "mean pooling": (
        "no class token, mean of the patch tokens",
        {"model": {"class_token": False, "global_pool": "avg"}},
    ),
    "deeper": (
        "12 layers of width 136 (same parameters)",
        {"model": {"depth": 12, "embed_dim": 136, "num_heads": 2}},
    ),
    "wider": (
        "3 layers of width 272 (same parameters)",
        {"model": {"depth": 3, "embed_dim": 272, "num_heads": 4}},
    ),
    "small CNN": ("`SmallCNN`, same loop and recipe", {}),
}


def _measure_speed(model: nn.Module, recipe: TrainConfig, steps: int = 6, warmup: int = 2) -> float:
    """Training images/s of `model` (forward, backward, AdamW) on random batches of the recipe's size."""
    x = torch.randn(recipe.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (recipe.batch_size,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    model.train()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return recipe.batch_size / sorted(times)[len(times) // 2]


def _budgeted(recipe: TrainConfig, images_per_s: float, seconds: float) -> TrainConfig:
    steps = max(2, int(seconds * images_per_s / recipe.batch_size))
    warmup = round(recipe.warmup_steps / recipe.steps * steps)
    return recipe.replace(steps=steps, warmup_steps=min(warmup, steps - 1), eval_every=steps)


def run_ablation(
    seconds: float = 180, *, variants: list[str] | None = None, seed: int = 0, progress: bool = True
) -> dict[str, Any]:
    """Train every variant (default all of `VARIANTS`) for `seconds`; returns the JSON-ready report."""
    names = variants or list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; expected some of {list(VARIANTS)}")
    base = BASELINE
    results = []
    for name in names:
        what, overrides = VARIANTS[name]
        recipe = base.replace(**overrides)
        build: Callable[[], nn.Module] = (
            SmallCNN if name == "small CNN" else lambda r=recipe: ViT(r.model)
        )
        torch.manual_seed(seed)
        speed = _measure_speed(build(), recipe)
        budgeted = _budgeted(recipe, speed, seconds)
        with tempfile.TemporaryDirectory() as out:
            log = train(budgeted, out, seed=seed, progress=progress, test=False, build_model=build)
        last = log["epochs"][-1]
        results.append(
            {
                "variant": name,
                "change": what,
                "parameters": count_parameters(build()),
                "images_per_s_measured": speed,
                "steps": budgeted.steps,
                "warmup_steps": budgeted.warmup_steps,
                "images_seen": budgeted.steps * budgeted.batch_size,
                "epochs": budgeted.epochs,
                "train_seconds": log["train_seconds"],
                "train_loss": last["train_loss"],
                "val_loss": last["val_loss"],
                "val_accuracy": last["val_accuracy"],
            }
        )
        print(f"{name}: {last['val_accuracy']:.4f} after {budgeted.steps} steps", flush=True)
    return {
        "command": "python -m vitutils.ablation " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**environment("cpu", 1), "platform": platform.platform()},
        "budget_seconds": seconds,
        "seed": seed,
        "recipe": base.to_dict(),
        "results": results,
    }


def compare(
    changes: dict[str, dict[str, Any]],
    base: TrainConfig,
    *,
    evals: int = 1,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Train `base` once per change ({name: TrainConfig overrides, "model" for ViTConfig ones}) with the
    same seed and steps; returns {name: {"log", "val_accuracy", "images_per_s", "train_seconds"}}, each
    run evaluated on the validation split `evals` times. For the chapters' experiment exercises.

    Book: chapter 7, "Why is my ViT on CIFAR so low?".
    """
    interval = max(1, base.steps // evals)
    results = {}
    for name, overrides in changes.items():
        recipe = base.replace(eval_every=interval, **overrides)
        with tempfile.TemporaryDirectory() as out:
            log = train(recipe, out, seed=seed, progress=False, test=False)
        results[name] = {
            "log": log,
            "val_accuracy": log["epochs"][-1]["val_accuracy"],
            "images_per_s": recipe.steps * recipe.batch_size / log["train_seconds"],
            "train_seconds": log["train_seconds"],
        }
    return results


def to_markdown(report: dict[str, Any]) -> str:
    """The chapter's table: one row per variant, its difference to the baseline in points.

    Book: chapter 7, "Why is my ViT on CIFAR so low?".
    """
    rows = {r["variant"]: r for r in report["results"]}
    base = rows.get("baseline")
    lines = [
        "| variant | change | parameters | images seen | epochs | val accuracy | vs baseline |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        delta = (
            f"{100 * (r['val_accuracy'] - base['val_accuracy']):+.1f}"
            if base and r is not base
            else "—"
        )
        lines.append(
            f"| {r['variant']} | {r['change']} | {r['parameters'] / 1e6:.2f} M | {r['images_seen']:,} "
            f"| {r['epochs']:.1f} | {100 * r['val_accuracy']:.1f} % | {delta} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m vitutils.ablation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=180, help="training budget per variant")
    parser.add_argument(
        "--variants", nargs="+", default=None, help=f"some of: {', '.join(VARIANTS)}"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")
    args = parser.parse_args(argv)
    report = run_ablation(args.seconds, variants=args.variants, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(to_markdown(report), end="")
    return report


if __name__ == "__main__":
    main()
