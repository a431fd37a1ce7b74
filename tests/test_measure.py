"""Tests for vitutils.measure: the interleaved timer, the CPU peak-memory tracker and chapter 9's sweeps."""

import json
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from vitutils import measure
from vitutils.attention import Attention


def test_time_calls_interleaves_and_measures():
    order = []
    calls = {
        "short": lambda: order.append("short") or time.sleep(0.002),
        "long": lambda: order.append("long") or time.sleep(0.02),
    }
    timings = measure.time_calls(calls, repeats=4, warmup=1)
    assert [len(t.times) for t in timings.values()] == [4, 4]  # the warm-up round is not kept
    assert order == ["short", "long", "long", "short"] * 2 + ["short", "long"]  # rotated each round
    assert 0.002 <= timings["short"].median < timings["long"].median
    assert timings["long"].median >= 0.02
    q1, q3 = timings["long"].quartiles
    assert q1 <= timings["long"].median <= q3
    assert measure.time_call(lambda: None, repeats=1).quartiles[0] >= 0


def test_time_calls_rejects_bad_arguments():
    with pytest.raises(ValueError, match="need repeats >= 1"):
        measure.time_calls({"f": lambda: None}, repeats=0)
    with pytest.raises(ValueError, match="at least one call"):
        measure.time_calls({})


@pytest.mark.parametrize("exponent", [1.0, 2.0, 0.5])
def test_fit_slope_recovers_a_power_law(exponent):
    x = [10, 20, 40, 80]
    assert measure.fit_slope(x, [3 * v**exponent for v in x]) == pytest.approx(exponent)
    with pytest.raises(ValueError, match="two or more"):
        measure.fit_slope([1], [1])


def test_peak_memory_follows_allocations_and_frees():
    def work():
        a = torch.empty(1000)  # 4,000 bytes
        b = torch.empty(2000)  # 8,000: 12,000 alive
        del a
        c = torch.empty(500)  # 8,000 + 2,000
        return b.view(2, 1000), c  # a view allocates nothing

    peak = measure.peak_memory(work)
    assert peak.peak_bytes == 12_000
    assert "aten.empty" in peak.ops and "aten.view" in peak.ops
    x = torch.randn(1000)  # existed before: its in-place change and its views are not counted
    assert measure.peak_memory(lambda: x.mul_(2).view(10, 100)).peak_bytes == 0


def _profiler_peak(fn) -> int:
    """The CPU allocator's peak during `fn`, from the profiler's memory events (bytes, relative)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("training", [False, True])
def test_tracker_against_the_allocator_on_the_teaching_path(training):
    # The teaching path allocates only through operators, so the tracker sees what the allocator sees.
    torch.manual_seed(0)
    layer = Attention(dim=64, num_heads=4, qkv_bias=True, fused_attn=False)
    x = torch.randn(1, 1024, 64, requires_grad=training)

    def run():
        if training:
            layer(x).sum().backward()
        else:
            with torch.no_grad():
                layer(x)

    tracked = measure.peak_memory(run).peak_bytes
    assert tracked == pytest.approx(_profiler_peak(run), rel=0.03)
    assert tracked > 2 * 4 * 1024 * 1024 * 4  # two h × N × N float32 tensors were alive together


def test_tracker_does_not_see_the_fused_kernels_scratch():
    # The fused CPU kernel's per-thread blocks are allocated inside it: the tracker sees less than the
    # allocator, but the difference is far smaller than one N × N matrix.
    torch.manual_seed(0)
    layer = Attention(dim=64, num_heads=4, qkv_bias=True, fused_attn=True).eval()
    x = torch.randn(1, 1024, 64)

    def run():
        with torch.no_grad():
            layer(x)

    tracked, allocator = measure.peak_memory(run).peak_bytes, _profiler_peak(run)
    assert tracked <= allocator < tracked + 4 * 1024 * 1024  # less than one head's N × N


def test_the_cpu_runs_the_flash_attention_kernel():
    q = torch.randn(1, 2, 256, 32)
    ops = measure.peak_memory(lambda: F.scaled_dot_product_attention(q, q, q)).ops
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in ops


def test_attention_sweep():
    rows = measure.attention_sweep([64, 256], dim=32, num_heads=2, repeats=1, warmup=0)
    assert [r["tokens"] for r in rows] == [64, 256]
    for r in rows:
        n = r["tokens"]
        assert r["weights_bytes"] == 2 * n * n * 4
        assert r["flops"] == 8 * n * 32 * 32 + 4 * n * n * 32
        # The teaching path holds logits and softmax (2 · h·N·N values) beside qkv (3·N·D); the fused
        # path holds no weight matrix: qkv, its output and proj's output (5·N·D).
        assert r["teaching_peak_bytes"] == 2 * r["weights_bytes"] + 4 * 3 * n * 32
        assert r["fused_peak_bytes"] == 4 * 5 * n * 32
        assert r["fused_ops"] == ["aten._scaled_dot_product_flash_attention_for_cpu"]
        assert r["teaching_s"] > 0 and r["fused_s"] > 0


def test_model_sweep_and_the_command_line(tmp_path, monkeypatch):
    rows = measure.model_sweep("vit_tiny_patch16_224", [32, 48], repeats=1, warmup=0)
    assert [r["tokens"] for r in rows] == [5, 10]
    assert rows[1]["attention_flops"] == 4 * 10 * 10 * 192
    monkeypatch.setattr(measure, "FULL_TOKENS", (32, 64))
    monkeypatch.setattr(measure, "FULL_IMAGE_SIZES", (32,))
    out = tmp_path / "cost.json"
    measure.main(["--out", str(out), "--repeats", "1"])
    report = json.loads(out.read_text())
    cpu = report["devices"]["cpu"]
    assert [r["tokens"] for r in cpu["attention"]] == [32, 64]
    assert cpu["environment"]["device"] == "cpu" and "torch" in cpu["environment"]
    assert report["command"].startswith("python -m vitutils.measure")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_peak_memory_on_a_gpu():
    peak = measure.peak_memory(lambda: torch.empty(1 << 20, device="cuda"), device="cuda")
    assert peak.peak_bytes >= 4 << 20


def test_the_committed_reference_measurement():
    # book/data/attention_cost.json is what chapter 9 renders: written by the command it records, on the
    # sizes the module declares, with the machine and commit; its memory columns obey the formulas.
    path = Path(__file__).resolve().parents[1] / "book" / "data" / "attention_cost.json"
    report = json.loads(path.read_text())
    assert report["command"].startswith("python -m vitutils.measure")
    assert "cpu" in report["devices"]
    for device, result in report["devices"].items():
        env = result["environment"]
        assert env["device"] == device or device == "cuda"
        assert len(env["commit"]) == 40 and env["torch"]
        rows = result["attention"]
        assert [r["tokens"] for r in rows] == list(measure.FULL_TOKENS)
        assert [r["image_size"] for r in result["model"]] == list(measure.FULL_IMAGE_SIZES)
        for r in rows:
            n, D = r["tokens"], report["attention"]["dim"]
            assert r["weights_bytes"] == 3 * n * n * 4
            if device == "cpu":  # the tracker's exact accounting (a GPU reports its allocator's)
                assert r["teaching_peak_bytes"] == 2 * r["weights_bytes"] + 4 * 3 * n * D
                assert r["fused_peak_bytes"] == 4 * 5 * n * D
            assert r["teaching_s"] > 0 and r["fused_s"] > 0
        assert (
            measure.fit_slope(
                [r["tokens"] for r in rows][-3:], [r["teaching_peak_bytes"] for r in rows][-3:]
            )
            > 1.9
        )


def test_axial_sweep_and_its_command_line(tmp_path, monkeypatch):
    rows = measure.axial_sweep([4, 16], dim=32, num_heads=2, repeats=1, warmup=0)
    assert [(r["grid"], r["tokens"]) for r in rows] == [(4, 16), (16, 256)]
    for r in rows:
        n, g, D = r["tokens"], r["grid"], 32
        assert r["full_flops"] == 8 * n * D * D + 4 * n * n * D  # qkv + proj, QKᵀ + AV
        assert r["axial_flops"] == 2 * 8 * n * D * D + 4 * n * (g + g) * D  # two steps of g tokens
        assert all(r[f"{m}_{p}_s"] > 0 for m in ("full", "axial") for p in ("fused", "teaching"))
        # Full attention's teaching path holds logits and weights (2·h·N·N) beside qkv (3·N·D).
        assert r["full_teaching_peak_bytes"] == 4 * (2 * 2 * n * n + 3 * n * D)
    big = rows[-1]
    assert big["axial_teaching_peak_bytes"] < big["full_teaching_peak_bytes"] / 2
    monkeypatch.setattr(measure, "FULL_GRIDS", (4,))
    out = tmp_path / "axial.json"
    measure.main(["--sweep", "axial", "--out", str(out), "--repeats", "1"])
    report = json.loads(out.read_text())
    assert [r["grid"] for r in report["devices"]["cpu"]["axial"]] == [4]
    assert report["axial"]["grids"] == [4] and "attention" not in report["devices"]["cpu"]


def test_the_committed_axial_measurement():
    # book/data/axial_cost.json is what chapter 10 renders: full against axial attention on the grids
    # the module declares, with the machine and commit.
    path = Path(__file__).resolve().parents[1] / "book" / "data" / "axial_cost.json"
    report = json.loads(path.read_text())
    assert report["command"].startswith("python -m vitutils.measure --sweep axial")
    for device, result in report["devices"].items():
        assert len(result["environment"]["commit"]) == 40
        rows = result["axial"]
        assert [r["grid"] for r in rows] == list(measure.FULL_GRIDS)
        goal = rows[-1]  # 64 × 64, width 64, 4 heads: a FLOP ratio of 11
        assert goal["grid"] == 64 and 10.9 < goal["full_flops"] / goal["axial_flops"] < 11.1
        if device == "cpu":
            n = goal["tokens"]
            assert goal["full_teaching_peak_bytes"] == 4 * (2 * 4 * n * n + 3 * n * 64)
