"""Forward-pass throughput of `vitutils.vit.ViT` and transformers' ViT on this machine (chapter 6).

Run ``python -m vitutils.benchmark`` (``--help`` for the options). For each preset it builds one
randomly initialised `ViT` and loads the *same* weights into transformers'
`ViTForImageClassification` (SDPA attention) through `vitutils.pretrained.timm_to_hf_state_dict`,
checks that the logits agree (within 1e-3), then times three variants in one interleaved run
(`vitutils.measure.time_calls`: round-robin over the variants, after warm-up rounds, median over the
repeats) under `torch.inference_mode`:

- ``vitutils fused``: `F.scaled_dot_product_attention` (the default);
- ``vitutils teaching``: the written-out softmax (`set_fused_attn(model, False)`);
- ``transformers sdpa``: the reference.

It prints a Markdown table of images/s and the speed ratio to transformers (the median over the
rounds of each round's ratio); ``--output PATH`` also writes it to PATH (Markdown) and the raw
figures, with the torch version, thread count and date, to PATH.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from vitutils.attention import set_fused_attn
from vitutils.measure import time_calls
from vitutils.pretrained import transformers_twin
from vitutils.vit import ViT, vit_config

__all__ = [
    "main",
    "matmul_peak",
    "run_benchmark",
    "run_training_benchmark",
    "to_markdown",
    "training_markdown",
]

DEFAULT_MODELS = ("vit_small_patch16_224", "vit_base_patch16_224")
REFERENCE = "transformers sdpa"


def _machine(load_before: tuple[float, float, float]) -> dict:
    """When and where a benchmark ran, for its JSON report."""
    import transformers

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
    }


def _time(fn: Callable[[], Tensor]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_benchmark(
    models: Sequence[str] = DEFAULT_MODELS,
    *,
    batch_size: int = 8,
    image_size: int = 224,
    repeats: int = 10,
    warmup: int = 2,
    seed: int = 0,
) -> dict:
    """Time every variant of every preset; returns the figures as a JSON-ready dict.

    Book: chapter 6, "How fast is it?".
    """
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(
            f"need batch_size >= 1, repeats >= 1, warmup >= 0; "
            f"got {batch_size}, {repeats}, {warmup}"
        )
    load_before = os.getloadavg()
    results = []
    for name in models:
        torch.manual_seed(seed)
        model = ViT.from_config(vit_config(name, img_size=image_size)).eval()
        twin = transformers_twin(model)
        x = torch.randn(batch_size, 3, image_size, image_size)

        def ours(fused: bool, model=model, x=x) -> Tensor:
            set_fused_attn(model, fused)
            return model(x)

        variants: dict[str, Callable[[], Tensor]] = {
            "vitutils fused": lambda ours=ours: ours(True),
            "vitutils teaching": lambda ours=ours: ours(False),
            REFERENCE: lambda twin=twin, x=x: twin(pixel_values=x).logits,
        }
        with torch.inference_mode():
            reference = variants[REFERENCE]()
            diffs = {v: (fn() - reference).abs().max().item() for v, fn in variants.items()}
            if max(diffs.values()) > 1e-3:  # timing different functions would mean nothing
                raise RuntimeError(f"{name}: the variants' logits differ: {diffs}")
            # Interleaved, with the order rotated every round: a slow spell of the machine
            # (another process, thermal throttling) hits every variant alike.
            timings = time_calls(variants, repeats=repeats, warmup=warmup)
            times = {variant: list(t.times) for variant, t in timings.items()}  # one per round
        set_fused_attn(model, True)
        reference = times[REFERENCE]
        for variant, ts in times.items():
            speed = batch_size / statistics.median(ts)
            results.append(
                {
                    "model": name,
                    "variant": variant,
                    "images_per_s": speed,
                    "median_s": statistics.median(ts),
                    "best_s": min(ts),
                    "times_s": ts,
                    # Median of the per-round ratios: the variants of one round share the
                    # machine's state, so a slow spell cancels out of their ratio.
                    "ratio_to_transformers": statistics.median(
                        t_ref / t for t_ref, t in zip(reference, ts, strict=True)
                    ),
                    "max_abs_logit_diff": diffs[variant],
                }
            )
    return {
        **_machine(load_before),
        "batch_size": batch_size,
        "image_size": image_size,
        "repeats": repeats,
        "warmup": warmup,
        "results": results,
    }


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """This machine's float32 matrix-multiply rate in FLOP/s: the median of `repeats` n × n products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    return 2 * n**3 / statistics.median(_time(lambda: a @ b) for _ in range(repeats))


def run_training_benchmark(
    recipe: str = "cpu", *, batch_size: int = 128, repeats: int = 10, warmup: int = 2, seed: int = 0
) -> dict:
    """Training steps (forward, cross-entropy, backward, AdamW step) of a recipe's ViT against
    transformers' ViTForImageClassification of the same shape and weights, interleaved as in
    `run_benchmark`; plus the recipe's own model with its patch dropout, and the share of this machine's
    measured float32 matmul peak that each step reaches (training FLOPs taken as 3 × the forward
    FLOPs of `vitutils.cost.forward_flops`: the backward pass costs about twice the forward).

    Book: chapter 7, "Seeing more images per second".
    """

    from vitutils.cost import forward_flops
    from vitutils.recipes import get_recipe

    config = get_recipe(recipe).model
    plain = config.replace(patch_drop_rate=0.0, fused_attn=True)
    load_before = os.getloadavg()
    torch.manual_seed(seed)
    x = torch.randn(batch_size, 3, plain.img_size, plain.img_size)
    y = torch.randint(0, plain.num_classes, (batch_size,))
    ours = ViT(plain).train()
    twin = transformers_twin(ours).train()
    with torch.no_grad():
        diff = (ours(x) - twin(pixel_values=x).logits).abs().max().item()
    if diff > 1e-3:
        raise RuntimeError(f"the two models' logits differ by {diff}")
    dropped = ViT(config).train()
    parts = forward_flops(plain)
    N = (plain.img_size // plain.patch_size) ** 2  # patch tokens
    r = (1 + max(1, int(N * (1 - config.patch_drop_rate)))) / (1 + N)  # share of tokens kept
    # After the patch embedding, the per-token parts scale with the token count, attention with its square.
    dropped_flops = (
        parts["patch embedding"]
        + parts["head"]
        + r * (parts["qkv + proj"] + parts["MLP"])
        + r**2 * parts["attention (QKᵀ, AV)"]
    )
    variants = {
        "vitutils fused": (ours, lambda: ours(x), sum(parts.values())),
        REFERENCE: (twin, lambda: twin(pixel_values=x).logits, sum(parts.values())),
        f"vitutils, patch dropout {config.patch_drop_rate}": (
            dropped,
            lambda: dropped(x),
            dropped_flops,
        ),
    }
    optimizers = {
        v: torch.optim.AdamW(m.parameters(), lr=1e-4) for v, (m, _, _) in variants.items()
    }

    def step(variant: str) -> None:
        _, forward, _ = variants[variant]
        loss = torch.nn.functional.cross_entropy(forward(), y)
        optimizers[variant].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[variant].step()

    times: dict[str, list[float]] = {v: [] for v in variants}
    order = list(variants)
    peaks = []
    for round_ in range(warmup + repeats):
        for variant in order[round_ % 3 :] + order[: round_ % 3]:
            elapsed = _time(lambda variant=variant: step(variant))
            if round_ >= warmup:
                times[variant].append(elapsed)
        if round_ >= warmup:
            peaks.append(matmul_peak(repeats=3))
    peak = statistics.median(peaks)
    results = []
    for variant, ts in times.items():
        flops = int(variants[variant][2])
        median = statistics.median(ts)
        results.append(
            {
                "variant": variant,
                "images_per_s": batch_size / median,
                "median_s": median,
                "ratio_to_transformers": statistics.median(
                    t_ref / t for t_ref, t in zip(times[REFERENCE], ts, strict=True)
                ),
                "train_flops_per_image": 3 * flops if flops else None,
                "share_of_matmul_peak": 3 * flops * batch_size / median / peak if flops else None,
            }
        )
    return {
        "mode": "train",
        "recipe": recipe,
        "model": dataclasses.asdict(plain),
        **_machine(load_before),
        "batch_size": batch_size,
        "repeats": repeats,
        "warmup": warmup,
        "matmul_peak_flops": peak,
        "max_abs_logit_diff": diff,
        "results": results,
    }


def training_markdown(report: dict) -> str:
    """The figures of `run_training_benchmark` as a Markdown table.

    Book: chapter 7, "Seeing more images per second".
    """
    m = report["model"]
    lines = [
        f"Training step (forward, backward, AdamW) of the `{report['recipe']}` recipe's ViT (patch "
        f"{m['patch_size']}, width {m['embed_dim']}, depth {m['depth']}), batch {report['batch_size']}, "
        f"torch {report['torch']}, transformers {report['transformers']}, {report['cpu_threads']} CPU "
        f"threads, median of {report['repeats']} interleaved repeats ({report['date']}). Measured float32 "
        f"matmul peak: {report['matmul_peak_flops'] / 1e9:.0f} GFLOP/s.",
        "",
        "| variant | images/s | ratio to transformers | share of matmul peak |",
        "|---|---:|---:|---:|",
    ]
    for r in report["results"]:
        share = f"{r['share_of_matmul_peak']:.0%}" if r["share_of_matmul_peak"] else "n/a"
        lines.append(
            f"| {r['variant']} | {r['images_per_s']:.0f} | {r['ratio_to_transformers']:.2f} "
            f"| {share} |"
        )
    return "\n".join(lines) + "\n"


def to_markdown(report: dict) -> str:
    """The figures of `run_benchmark` as a Markdown table.

    Book: chapter 6, "How fast is it?".
    """
    lines = [
        f"Forward pass, batch {report['batch_size']}, {report['image_size']}×"
        f"{report['image_size']} images, torch {report['torch']}, transformers "
        f"{report['transformers']}, {report['cpu_threads']} CPU threads, median of "
        f"{report['repeats']} interleaved repeats ({report['date']}; 1-minute load average "
        f"{report['load_average_before_after'][0]:.1f} before, "
        f"{report['load_average_before_after'][1]:.1f} after).",
        "",
        "| model | variant | images/s (median) | ratio to transformers | images/s (best) "
        "| max abs logit diff |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        best = report["batch_size"] / r["best_s"]
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['images_per_s']:.2f} | "
            f"{r['ratio_to_transformers']:.2f} | {best:.2f} | {r['max_abs_logit_diff']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    """The command line, ``python -m vitutils.benchmark``; returns the figures it printed.

    Book: chapter 6, "How fast is it?".
    """
    parser = argparse.ArgumentParser(
        prog="python -m vitutils.benchmark", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="preset names")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224, help="square image side in pixels")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--output", type=Path, help="write PATH (Markdown) and PATH.json")
    parser.add_argument(
        "--train",
        metavar="RECIPE",
        help="time training steps of RECIPE's model (batch --batch-size) instead of forward passes",
    )
    args = parser.parse_args(argv)
    if args.train:
        report = run_training_benchmark(
            args.train, batch_size=args.batch_size, repeats=args.repeats, warmup=args.warmup
        )
        table = training_markdown(report)
    else:
        report = run_benchmark(
            args.models,
            batch_size=args.batch_size,
            image_size=args.image_size,
            repeats=args.repeats,
            warmup=args.warmup,
        )
        table = to_markdown(report)
    print(table, end="")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table, encoding="utf-8")
        json_path = args.output.with_name(args.output.name + ".json")
        json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
