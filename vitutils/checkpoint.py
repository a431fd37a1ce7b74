"""Saving and loading training runs, safely (chapter 7).

A run directory holds:

- `model.safetensors`: the weights, timm's names (`vitutils.vit`); safetensors holds tensors only, so
  loading it cannot run code, unlike a pickle;
- `config.json`: the `TrainConfig` (the model's `ViTConfig` inside) and the seed;
- `log.json`: what the run measured (see `vitutils.train`);
- `state.pt`: what resuming needs: step, weights, AdamW's moments, the scheduler's position and the log so
  far. It is read with `torch.load(weights_only=True)`, which refuses anything but tensors and plain
  containers. The random state is the step itself: every draw of step s comes from generators seeded by
  (seed, s) (see `vitutils.train.step_seed`).

Every file is written atomically: to a temporary file in the same directory, flushed to disk, then renamed
over the old one (`os.replace` is atomic on POSIX and Windows), so a run killed at any moment leaves
either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from vitutils.augment import normalize_uint8
from vitutils.recipes import TrainConfig
from vitutils.vit import ViT

__all__ = [
    "BUNDLED",
    "atomic_write",
    "environment",
    "load_bundled",
    "load_run",
    "load_state",
    "load_weights",
    "read_config",
    "save_json",
    "save_state",
    "save_weights",
]

BUNDLED = Path(__file__).parent / "weights"  # runs shipped inside the package


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """Call `write(tmp)` on a temporary path next to `path`, fsync it, then rename it onto `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a run's files are for reading
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"))


def save_weights(path: str | os.PathLike, state_dict: dict[str, Tensor]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """A `state.pt` read with `weights_only=True`; a clear error if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated zip, a foreign pickle, …
        raise ValueError(
            f"checkpoint {path} is corrupt or not a vitutils state file: {err}"
        ) from err


def read_config(run_dir: str | os.PathLike) -> tuple[TrainConfig, int]:
    """The `TrainConfig` and seed saved in `run_dir/config.json`."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a training run's directory?")
    try:
        data = json.loads(path.read_text())
        return TrainConfig.from_dict(data["recipe"]), int(data["seed"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a valid run config: {err}") from err


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Load a safetensors file into `model`, strictly; ValueError names what does not match."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is corrupt or not a safetensors file: {err}") from err
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: file {tuple(state[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"the weights in {path} do not match the model's config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatches {shapes[:5]}"
        )
    model.load_state_dict(state, strict=True)
    return model


def load_run(run_dir: str | os.PathLike) -> tuple[ViT, TrainConfig, dict]:
    """A finished (or interrupted) run: the trained `ViT` in eval mode, its recipe and its log."""
    run_dir = Path(run_dir)
    recipe, _ = read_config(run_dir)
    model = load_weights(ViT(recipe.model), run_dir / "model.safetensors").eval()
    log_path = run_dir / "log.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    return model, recipe, log


def load_bundled(name: str = "cifar10_cpu") -> tuple[ViT, Callable[[Tensor], Tensor], dict]:
    """The trained ViT shipped with the package, its preprocessing and its log.

    ``model, preprocess, log = load_bundled()``; `preprocess` maps uint8 images (B, 3, 32, 32) to the
    normalised float batch the model expects, so ``model(preprocess(images)).argmax(-1)`` classifies.

    Book: chapter 7, "The bundled run".
    """
    run_dir = BUNDLED / name
    if not run_dir.is_dir():
        names = sorted(p.name for p in BUNDLED.iterdir() if p.is_dir()) if BUNDLED.is_dir() else []
        raise ValueError(f"no bundled run {name!r}; the package ships {names}")
    model, _, log = load_run(run_dir)
    return model, normalize_uint8, log


def _cpu_name() -> str:
    try:  # Linux names the model; platform.processor() often says only "x86_64"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str, world: int) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "commit": commit,
        "torch": torch.__version__,
        "device": device if device == "cpu" else torch.cuda.get_device_name(device),
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "processes": world,
        "python": platform.python_version(),
    }
