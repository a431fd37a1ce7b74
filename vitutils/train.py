"""Training a ViT on CIFAR-10: the loop, evaluation, checkpoints and the command line (chapter 7).

    python -m vitutils.train --recipe cpu --out runs/cpu            # one process
    torchrun --nproc_per_node=2 -m vitutils.train --recipe cpu --out runs/cpu2   # DistributedDataParallel

One readable loop in the manner of nanoGPT's `train.py`, reading a `TrainConfig` (`vitutils.recipes`).
Each step s:

1. takes the s-th batch of a seeded shuffle of the training split (a new permutation each epoch);
2. augments it as uint8 (`vitutils.augment`) with a generator seeded by (seed, s);
3. runs forward and backward with dropout seeded by (seed, rank, s), clips the gradient norm, steps AdamW
   and the `LambdaLR` schedule (`vitutils.optim`).

Because every random draw of step s comes from (seed, s), the step number is the whole random state: a run
resumed from a checkpoint at step k repeats steps k, k+1, … exactly, so its weights equal an uninterrupted
run's bit for bit on CPU. Every `eval_interval` steps (once per epoch by default) it evaluates on the
validation split and writes the checkpoint (`vitutils.checkpoint`); at the end it evaluates the test set
once.

Under `torchrun`, every rank draws the same global batch and augmentation and keeps its slice (rank r
takes images r, r + N, r + 2N, …); DistributedDataParallel averages the gradients, which for equal slices
is the gradient of the global batch's mean loss. Backend gloo on CPU, nccl on GPU; on a GPU that supports
it the forward pass runs under bf16 autocast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vitutils import checkpoint
from vitutils.augment import augment_batch, normalize_uint8
from vitutils.data import CIFAR10_CLASSES
from vitutils.evaluation import evaluate, load_split, predict
from vitutils.optim import make_optimizer, make_scheduler
from vitutils.recipes import RECIPES, TrainConfig, describe, get_recipe
from vitutils.vit import ViT

__all__ = ["evaluate", "load_split", "main", "predict", "step_seed", "train"]


def step_seed(seed: int, purpose: str, index: int) -> int:
    """A 63-bit seed for one purpose ("shuffle", "augment", "dropout-r", "init") at one epoch or step."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _generator(seed: int, purpose: str, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, purpose, index))


def _after_step(step: int) -> None:
    """Called after every optimiser step; the tests replace it to simulate a crash."""


def train(
    recipe: TrainConfig,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    max_steps: int | None = None,
    max_minutes: float | None = None,
    resume: bool = False,
    device: str = "cpu",
    progress: bool = True,
    command: str | None = None,
    build_model: Callable[[], nn.Module] | None = None,
    test: bool = True,
) -> dict[str, Any]:
    """Run `recipe` (or continue it with `resume`) into directory `out`; returns the log.

    `max_steps` stops early at that step, `max_minutes` after that much training wall-clock (then
    evaluates and saves); both leave the schedule as the recipe defines it, so a capped run can be resumed.
    `build_model` replaces ``ViT(recipe.model)`` (chapter 7's CNN baseline); the rest of the recipe applies.
    `test=False` skips the final test-set evaluation (experiments that are compared on validation).

    Book: chapter 7, "The package's training loop".
    """
    out = Path(out)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if recipe.batch_size % world:
        raise ValueError(f"batch_size {recipe.batch_size} is not divisible by {world} processes")
    state_path, config_path = out / "state.pt", out / "config.json"
    saved = {"recipe": recipe.to_dict(), "seed": seed}
    if resume:
        if not state_path.is_file():
            raise FileNotFoundError(f"--resume: nothing to resume in {out} (no state.pt)")
        previous, previous_seed = checkpoint.read_config(out)
        if previous != recipe or previous_seed != seed:
            diff = {
                k: (v, saved["recipe"][k])
                for k, v in previous.to_dict().items()
                if saved["recipe"][k] != v
            }
            if previous_seed != seed:
                diff["seed"] = (previous_seed, seed)
            raise ValueError(f"--resume: {out} holds a different run; (saved, requested): {diff}")
    elif state_path.exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume or choose another --out")

    # The data: uint8 tensors in memory (150 MB for the training split).
    train_x, train_y = load_split(recipe.train_split)
    val_x, val_y = load_split(recipe.val_split)

    torch.manual_seed(step_seed(seed, "init", 0))
    model = (build_model() if build_model else ViT(recipe.model)).to(device)
    optimizer = make_optimizer(model, recipe)
    scheduler = make_scheduler(optimizer, recipe)
    step, log = 0, {"epochs": []}
    if resume:
        state = checkpoint.load_state(state_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, log = state["step"], json.loads(state["log"])
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    use_bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.save_json(config_path, saved)
        log.setdefault("command", command)
        log["environment"] = checkpoint.environment(device, world)

    def save(status: str) -> None:
        if rank != 0:
            return
        log["status"], log["step"] = status, step
        log["wall_seconds"] = wall_before + time.perf_counter() - started
        checkpoint.save_weights(out / "model.safetensors", model.state_dict())
        checkpoint.save_state(
            state_path,
            {
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "log": json.dumps(log),
            },
        )
        checkpoint.save_json(out / "log.json", log)

    stop = min(recipe.steps, max_steps or recipe.steps)
    spe, interval, B = recipe.steps_per_epoch, recipe.eval_interval, recipe.batch_size
    perm_epoch, perm = -1, None
    losses: list[float] = []
    wall = log.get("train_seconds", 0.0)  # training only
    started, wall_before = time.perf_counter(), log.get("wall_seconds", 0.0)  # everything
    tick, images_since = time.perf_counter(), 0
    bar = tqdm(
        total=stop,
        initial=step,
        desc="train",
        disable=not progress or rank != 0,
        mininterval=2,
        dynamic_ncols=True,
    )
    net.train()
    while step < stop:
        epoch, i = divmod(step, spe)
        if epoch != perm_epoch:  # a fresh shuffle of the training split every epoch
            perm = torch.randperm(len(train_x), generator=_generator(seed, "shuffle", epoch))
            perm_epoch = epoch
        index = perm[i * B : (i + 1) * B]  # the global batch
        x = augment_batch(
            train_x[index],
            _generator(seed, "augment", step),
            crop_padding=recipe.crop_padding,
            flip=recipe.flip,
            rrc_scale=recipe.rrc_scale,
            rrc_ratio=recipe.rrc_ratio,
        )
        x, y = normalize_uint8(x[rank::world]).to(device), train_y[index][rank::world].to(device)
        torch.manual_seed(step_seed(seed, f"dropout-{rank}", step))
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=use_bf16):
            loss = F.cross_entropy(net(x).float(), y, label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        step += 1
        losses.append(loss.detach())
        images_since += B
        bar.update(1)
        _after_step(step)
        elapsed = wall_before + time.perf_counter() - started  # evaluations included
        out_of_time = max_minutes is not None and elapsed >= 60 * max_minutes
        if world > 1 and max_minutes is not None:  # every rank must stop at the same step
            flag = torch.tensor(float(out_of_time), device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            out_of_time = bool(flag.item())
        if step % interval == 0 or step == stop or out_of_time:
            mean_loss = torch.stack(losses).mean()
            if world > 1:
                dist.all_reduce(mean_loss)
                mean_loss /= world
            seconds = time.perf_counter() - tick
            wall += seconds
            entry = {
                "step": step,
                "epoch": step / spe,
                "train_loss": mean_loss.item(),
                "lr": lr,
                "images_per_s": images_since / seconds,
                "train_seconds": wall,
            }
            if rank == 0:
                result = evaluate(
                    model,
                    val_x,
                    val_y,
                    batch_size=recipe.eval_batch_size,
                    device=device,
                    progress=progress,
                )
                entry.update(_val_summary(result))
                bar.set_postfix(
                    loss=f"{entry['train_loss']:.3f}", val=f"{entry['val_accuracy']:.3f}"
                )
            log["epochs"].append(entry)
            log["train_seconds"] = wall
            save("running" if step < recipe.steps else "trained")
            if world > 1:
                dist.barrier()
            losses, images_since, tick = [], 0, time.perf_counter()
            if out_of_time:
                break
    bar.close()

    if rank == 0 and test:  # the test set, once, at the end
        test_x, test_y = load_split("test")
        result = evaluate(
            model,
            test_x,
            test_y,
            batch_size=recipe.eval_batch_size,
            device=device,
            progress=progress,
        )
        log["test"] = {**result, "step": step, "classes": list(CIFAR10_CLASSES)}
    if rank == 0:
        save("finished" if step == recipe.steps else "stopped early")
    if world > 1:
        dist.barrier()
    return log


def _val_summary(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "val_loss": result["loss"],
        "val_accuracy": result["accuracy"],
        "val_per_class_accuracy": result["per_class_accuracy"],
    }


def _parser() -> argparse.ArgumentParser:
    recipes = "\n".join(f"  {name:6} {describe(r)}: {r.description}" for name, r in RECIPES.items())
    parser = argparse.ArgumentParser(
        prog="python -m vitutils.train",
        description="Train a ViT on CIFAR-10 with a named recipe (vitutils.recipes).",
        epilog=f"recipes:\n{recipes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--recipe", required=True, metavar="NAME", help=f"one of: {', '.join(RECIPES)}"
    )
    parser.add_argument("--out", required=True, type=Path, help="run directory (created)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-steps", type=int, default=None, help="stop at this step (smoke runs)"
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop after this much wall-clock, evaluations included",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding cifar-10-batches-py (default: $VITUTILS_DATA_DIR)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The command line; see ``python -m vitutils.train --help``."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.recipe not in RECIPES:
        parser.error(f"unknown recipe {args.recipe!r}; expected one of: {', '.join(RECIPES)}")
    if args.max_steps is not None and args.max_steps < 1:
        parser.error(f"--max-steps must be at least 1, got {args.max_steps}")
    if args.data_dir is not None:
        folder = args.data_dir / "cifar-10-batches-py"
        if not folder.is_dir():
            parser.error(f"--data-dir {args.data_dir}: no cifar-10-batches-py folder in it")
        os.environ["VITUTILS_DATA_DIR"] = str(args.data_dir)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if distributed:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.startswith("cuda"):
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    command = "python -m vitutils.train " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        return train(
            get_recipe(args.recipe),
            args.out,
            seed=args.seed,
            max_steps=args.max_steps,
            max_minutes=args.max_minutes,
            resume=args.resume,
            device=device,
            progress=not args.no_progress,
            command=command,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    finally:
        if distributed:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
