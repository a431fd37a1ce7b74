"""Measuring what a model costs on this machine: wall-clock time and peak memory (chapter 9).

`vitutils.cost` says what a ViT should cost; this module measures it.

- `time_calls` times several functions *interleaved*: one call of each per round, the order rotated every
  round, after warm-up rounds, with the median and the quartiles over the rounds. On a shared, noisy
  machine a slow spell then hits every function alike, so their ratio stays meaningful. On a GPU it
  synchronises before and after each call: CUDA kernels run asynchronously, and a timer without
  `torch.cuda.synchronize()` measures only the launch. (`torch.utils.benchmark.Timer` handles
  synchronisation and statistics too, but times one statement at a time, so a comparison between
  statements is exposed to the machine's drift between them; hence this small helper.)
- `peak_memory` runs a function and reports the most bytes its tensors held at once. On a GPU that is the
  caching allocator's own statistic (`torch.cuda.max_memory_allocated`). PyTorch keeps no such statistic
  for the CPU, so there a `TorchDispatchMode` sees every operator's outputs and follows each new storage
  until it is freed. It sees every tensor an operator returns, as `FlopCounterMode` sees every operator;
  scratch buffers a kernel allocates and frees inside itself (the fused attention kernel's per-thread
  blocks) are invisible to it, which the tests measure against the profiler. It also lists the ATen
  operators that ran, which is how chapter 9 names the attention kernel the CPU uses.

`python -m vitutils.measure --out book/data/attention_cost.json` runs chapter 9's sweeps at their full
sizes on the CPU and, where there is one, on a GPU, and writes them with the machine and commit;
`--sweep axial --out book/data/axial_cost.json` runs chapter 10's (`axial_sweep`: full against axial).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from vitutils import cost
from vitutils.attention import Attention, scaled_dot_product_attention, set_fused_attn
from vitutils.axial import AxialAttention
from vitutils.checkpoint import environment
from vitutils.vit import ViT, ViTConfig, vit_config

__all__ = [
    "PeakMemory",
    "Timing",
    "attention_sweep",
    "axial_sweep",
    "fit_slope",
    "main",
    "model_sweep",
    "peak_memory",
    "time_call",
    "time_calls",
]


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the repeats of one function (warm-up excluded)."""

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def quartiles(self) -> tuple[float, float]:
        """The first and third quartile: the spread of the middle half of the repeats."""
        q1, _, q3 = statistics.quantiles(self.times, n=4) if len(self.times) > 1 else self.times * 3
        return q1, q3


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    calls: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str | None = None,
) -> dict[str, Timing]:
    """Time each function of `calls` `repeats` times, interleaved in rotating order after `warmup`
    rounds; `device` = the GPU the calls run on, to synchronise with it (None or "cpu": no need).

    Book: chapter 9, "Measuring time".
    """
    if repeats < 1 or warmup < 0 or not calls:
        raise ValueError(
            f"need repeats >= 1, warmup >= 0 and at least one call; got {repeats}, {warmup}, {len(calls)}"
        )
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            _sync(device)
            start = time.perf_counter()
            calls[name]()
            _sync(device)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: Timing(tuple(ts)) for name, ts in times.items()}


def time_call(fn: Callable[[], object], **kwargs) -> Timing:
    """`time_calls` for one function."""
    return time_calls({"fn": fn}, **kwargs)["fn"]


class _StorageTracker(TorchDispatchMode):
    """Follows every storage an operator creates until it is freed; keeps the largest total."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0  # bytes of the tracked storages alive now
        self.peak = 0
        self.ops: dict[str, None] = {}  # the operators that ran, in order of first call
        self._tracked: set[int] = set()

    def _freed(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops[str(func.overloadpacket)] = None
        # A view or an in-place result shares an input's storage: nothing new was allocated.
        inputs = {
            id(t.untyped_storage())
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()  # one Python object per storage, alive as long as it is
            key = id(storage)
            if key in inputs or key in self._tracked or storage.nbytes() == 0:
                continue
            self._tracked.add(key)
            self.live += storage.nbytes()
            weakref.finalize(storage, self._freed, key, storage.nbytes())
        self.peak = max(self.peak, self.live)
        return out


@dataclass(frozen=True)
class PeakMemory:
    """The most bytes the tensors created by a function held at once, and the ATen operators it ran."""

    peak_bytes: int
    ops: tuple[str, ...]


def peak_memory(
    fn: Callable[[], object], *, device: torch.device | str | None = None
) -> PeakMemory:
    """Peak bytes of the tensors `fn` allocates (tensors that existed before, such as the weights and the
    input, are not counted). On a CUDA `device` the allocator's statistic; otherwise every operator's
    outputs are followed (see the module docstring for what that cannot see).

    Book: chapter 9, "Measuring memory".
    """
    tracker = _StorageTracker()
    if device is not None and torch.device(device).type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        with tracker:
            fn()
        _sync(device)
        return PeakMemory(torch.cuda.max_memory_allocated(device) - before, tuple(tracker.ops))
    with tracker:
        fn()
    return PeakMemory(tracker.peak, tuple(tracker.ops))


def fit_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """The slope of log y against log x (least squares): y ∝ x^slope.

    Book: chapter 9, "One attention layer".
    """
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(
            f"need two or more (x, y) pairs of equal length, got {len(x)} and {len(y)}"
        )
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def attention_sweep(
    tokens: Sequence[int],
    *,
    dim: int = 192,
    num_heads: int = 3,
    batch_size: int = 1,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> list[dict]:
    """One `Attention` layer (inference) at each sequence length N: time and peak memory of the teaching
    path against the fused one, with the FLOPs and the h × N × N weights the formulas predict.

    Book: chapter 9, "One attention layer".
    """
    torch.manual_seed(seed)
    layer = Attention(dim=dim, num_heads=num_heads, qkv_bias=True).to(device).eval()
    rows = []
    for n in tokens:
        x = torch.randn(batch_size, n, dim, device=device)  # (B, N, D)

        def run(fused: bool, x=x) -> torch.Tensor:
            layer.fused_attn = fused
            return layer(x)

        calls = {"teaching": lambda run=run: run(False), "fused": lambda run=run: run(True)}
        with (
            torch.no_grad()
        ):  # not inference_mode, under which the tracker sees only the composite op
            timings = time_calls(calls, repeats=repeats, warmup=warmup, device=device)
            peaks = {name: peak_memory(call, device=device) for name, call in calls.items()}
        layer.fused_attn = True
        rows.append(
            {
                "tokens": n,
                "flops": batch_size * (8 * n * dim * dim + 4 * n * n * dim),  # qkv + proj, QKᵀ + AV
                "weights_bytes": batch_size * num_heads * n * n * 4,  # one h × N × N float32 tensor
                **{f"{name}_s": t.median for name, t in timings.items()},
                **{f"{name}_quartiles_s": t.quartiles for name, t in timings.items()},
                **{f"{name}_peak_bytes": p.peak_bytes for name, p in peaks.items()},
                "fused_ops": [op for op in peaks["fused"].ops if "attention" in op],
            }
        )
    return rows


def model_sweep(
    preset: str,
    image_sizes: Sequence[int],
    *,
    repeats: int = 3,
    warmup: int = 1,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> list[dict]:
    """A preset's forward pass (inference, one image, fused path) at each square image size, and, on that
    many tokens, one block's MLP against its attention products (QKᵀ, softmax, AV: the quadratic part)
    on the fused and the teaching path, beside the formulas' FLOPs.

    Book: chapter 9, "The whole model".
    """
    rows = []
    for side in image_sizes:
        config = vit_config(preset, img_size=side)
        torch.manual_seed(seed)
        model = ViT(config).to(device).eval()
        set_fused_attn(model, True)
        block = model.blocks[0]
        T, D, h = cost.num_tokens(config), config.embed_dim, config.num_heads
        image = torch.randn(1, config.in_chans, side, side, device=device)
        tokens = torch.randn(1, T, D, device=device)  # (1, T, D)
        q, k, v = torch.randn(3, 1, h, T, D // h, device=device).unbind(0)  # 3 × (1, h, T, d)
        calls = {
            "model": lambda model=model, image=image: model(image),
            "mlp": lambda block=block, tokens=tokens: block.mlp(tokens),
            "products_fused": lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v),
            "products_teaching": lambda q=q, k=k, v=v: scaled_dot_product_attention(q, k, v),
        }
        with torch.no_grad():
            timings = time_calls(calls, repeats=repeats, warmup=warmup, device=device)
        flops = cost.forward_flops(config)
        rows.append(
            {
                "image_size": side,
                "tokens": T,
                **{f"{name}_s": t.median for name, t in timings.items()},
                "flops": sum(flops.values()),
                "attention_flops": flops["attention (QKᵀ, AV)"] // config.depth,  # one block
                "mlp_flops": flops["MLP"] // config.depth,
            }
        )
    return rows


def axial_sweep(
    grids: Sequence[int],
    *,
    dim: int = 64,
    num_heads: int = 4,
    batch_size: int = 1,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> list[dict]:
    """Full `Attention` against `AxialAttention` (inference) on a g × g grid of tokens, for each g: time of
    both on both paths, interleaved in one run, peak memory, and the FLOPs of `cost.forward_flops`.

    Book: chapter 10, "What axial attention saves".
    """
    torch.manual_seed(seed)
    full = Attention(dim=dim, num_heads=num_heads, qkv_bias=True).to(device).eval()
    rows = []
    for g in grids:
        torch.manual_seed(seed)
        axial = AxialAttention(dim=dim, num_heads=num_heads, grid_size=g).to(device).eval()
        x = torch.randn(batch_size, g * g, dim, device=device)  # (B, N, D)
        layers = {"full": full, "axial": axial}

        def run(name: str, fused: bool, x=x, layers=layers) -> torch.Tensor:
            set_fused_attn(layers[name], fused)
            return layers[name](x)

        paths = (("fused", True), ("teaching", False))
        calls = {f"{n}_{p}": partial(run, n, fused) for n in layers for p, fused in paths}
        with torch.no_grad():
            timings = time_calls(calls, repeats=repeats, warmup=warmup, device=device)
            peaks = {name: peak_memory(call, device=device) for name, call in calls.items()}
        set_fused_attn(full, True)
        one_block = dict(img_size=g, patch_size=1, in_chans=1, embed_dim=dim, depth=1)
        one_block.update(num_heads=num_heads, class_token=False, global_pool="avg")
        flops = {}
        for name in layers:  # the layer's FLOPs: one block's qkv, proj and products on g × g tokens
            part = cost.forward_flops(ViTConfig(**one_block, attn_type=name))
            flops[name] = batch_size * (part["qkv + proj"] + part["attention (QKᵀ, AV)"])
        rows.append(
            {
                "grid": g,
                "tokens": g * g,
                **{f"{name}_flops": f for name, f in flops.items()},
                **{f"{name}_s": t.median for name, t in timings.items()},
                **{f"{name}_quartiles_s": t.quartiles for name, t in timings.items()},
                **{f"{name}_peak_bytes": p.peak_bytes for name, p in peaks.items()},
            }
        )
    return rows


FULL_TOKENS = (256, 512, 1024, 2048, 4096, 8192)
FULL_IMAGE_SIZES = (224, 320, 448, 576, 704, 832, 960)
MODEL_PRESET = "vit_tiny_patch16_224"
FULL_GRIDS = (8, 16, 24, 32, 48, 64)  # chapter 10: g × g tokens, up to the goal's 64 × 64


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: chapter 9's sweeps (`--sweep attention`) or chapter 10's (`--sweep axial`) at full
    size, on the CPU and on a GPU if there is one."""
    parser = argparse.ArgumentParser(prog="python -m vitutils.measure", description=main.__doc__)
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweep", choices=("attention", "axial"), default="attention")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report = {
        "command": " ".join(["python -m vitutils.measure", *argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "repeats": args.repeats,
        # glibc's allocator settings, if any: they change how often freed memory goes back to the kernel
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        "devices": {},
    }
    if args.sweep == "axial":
        report["axial"] = {"dim": 64, "num_heads": 4, "batch_size": 1, "grids": FULL_GRIDS}
    else:
        report["attention"] = {"dim": 192, "num_heads": 3, "batch_size": 1}
        report["model"] = MODEL_PRESET
    for device in devices:
        rows = {"environment": environment(device, 1)}
        if args.sweep == "axial":
            rows["axial"] = axial_sweep(FULL_GRIDS, repeats=args.repeats, device=device)
        else:
            rows["attention"] = attention_sweep(FULL_TOKENS, repeats=args.repeats, device=device)
            rows["model"] = model_sweep(
                MODEL_PRESET, FULL_IMAGE_SIZES, repeats=args.repeats, device=device
            )
        report["devices"][device] = rows
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return report


if __name__ == "__main__":
    main()
