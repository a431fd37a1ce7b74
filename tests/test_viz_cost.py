"""Tests for vitutils.viz.cost: the bars are `vitutils.cost`'s numbers, read back from the drawn figure."""

from __future__ import annotations

import math
import re

import matplotlib
import matplotlib.pyplot as plt
import pytest

from vitutils import cost, viz
from vitutils.viz.cost import plot_cost

UNITS = {"MFLOPs": 1e6, "GFLOPs": 1e9, "TFLOPs": 1e12, "PFLOPs": 1e15}
UNITS |= {"kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
SETTINGS = [  # (model, img_size, patch_size): the default, tiny, huge, a small model on big patches
    ("vit_base_patch16_224", 224, 16),
    ("vit_tiny_patch16_224", 32, 4),
    ("vit_large_patch16_224", 1024, 8),
    ("vit_small_patch16_224", 384, 32),
]


@pytest.fixture(autouse=True)
def _agg_and_close():
    matplotlib.use("Agg")
    yield
    plt.close("all")


def _unit(ax) -> float:
    """The size of the unit the x-axis label names, e.g. "... (GFLOPs)" -> 1e9."""
    return UNITS[re.search(r"\((\w+)\)$", ax.get_xlabel()).group(1)]


def _value(text: str) -> float:
    """ "21.1 GFLOPs" -> 2.11e10."""
    number, name = text.split()
    return float(number) * UNITS[name]


@pytest.mark.parametrize(("model", "img_size", "patch_size"), SETTINGS)
def test_flop_bars_are_forward_flops(model, img_size, patch_size):
    fig = plot_cost(model, img_size, patch_size)
    ax = fig.axes[0]
    flops = cost.forward_flops(model, img_size=img_size, patch_size=patch_size)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(cost.PARTS)
    bars = ax.containers[0]
    scale = _unit(ax)
    drawn = [bar.get_width() * scale for bar in bars]
    assert drawn == pytest.approx([flops[p] for p in cost.PARTS], rel=1e-12)
    assert 1 <= max(bar.get_width() for bar in bars) < 1000  # the axis unit fits the largest part
    written = [_value(t.get_text()) for t in ax.texts]  # the value beside each bar, 3 digits
    assert written == pytest.approx([flops[p] for p in cost.PARTS], rel=5e-3)
    assert _value(ax.get_title().split(": ")[1]) == pytest.approx(sum(flops.values()), rel=5e-3)


@pytest.mark.parametrize(("model", "img_size", "patch_size"), SETTINGS)
def test_memory_bars_are_cost_memory(model, img_size, patch_size):
    fig = plot_cost(model, img_size, patch_size)
    overrides = {"img_size": img_size, "patch_size": patch_size}
    for ax, training in ((fig.axes[1], False), (fig.axes[2], True)):
        paths = [t.get_text() for t in ax.get_yticklabels()]
        assert paths == ["teaching path\n(fused=False)", "fused path\n(fused=True)"]
        need = [
            cost.memory(model, batch_size=1, training=training, fused=fused, **overrides)
            for fused in (False, True)
        ]
        assert [c.get_label() for c in ax.containers] == list(need[0])  # one segment per key
        scale = _unit(ax)
        ends = [0.0, 0.0]
        for container in ax.containers:
            key = container.get_label()
            for i, bar in enumerate(container):
                assert bar.get_width() * scale == pytest.approx(need[i][key], rel=1e-12, abs=1e-3)
                assert bar.get_x() == pytest.approx(ends[i])  # stacked: starts where the last ended
                ends[i] = bar.get_x() + bar.get_width()
        totals = [sum(n.values()) for n in need]
        assert [e * scale for e in ends] == pytest.approx(totals, rel=1e-9)
        assert 1 <= max(ends) < 1000
        assert [_value(t.get_text()) for t in ax.texts] == pytest.approx(totals, rel=5e-3)
    # the fused path keeps no T × T weights; the teaching path's training step does
    weights = {c.get_label(): c for c in fig.axes[2].containers}[cost.ATTENTION_WEIGHTS]
    assert weights[1].get_width() == 0 and weights[0].get_width() > 0


@pytest.mark.parametrize(("model", "img_size", "patch_size"), SETTINGS)
def test_titles_state_the_setting_and_T(model, img_size, patch_size):
    title = plot_cost(model, img_size, patch_size).get_suptitle()
    T = cost.num_tokens(model, img_size=img_size, patch_size=patch_size)
    assert f"T = {T} tokens" in title
    assert f"{img_size} × {img_size} image, P = {patch_size}" in title


def test_units_follow_the_size():
    tiny, huge = (
        plot_cost("vit_tiny_patch16_224", 32, 4),
        plot_cost("vit_large_patch16_224", 1024, 8),
    )
    assert cost.num_tokens("vit_large_patch16_224", img_size=1024, patch_size=8) == 16385
    assert [ax.get_xlabel().split("(")[-1] for ax in tiny.axes] == ["MFLOPs)", "MB)", "MB)"]
    assert [ax.get_xlabel().split("(")[-1] for ax in huge.axes] == ["TFLOPs)", "GB)", "GB)"]
    assert "ViT-Ti (D = 192, L = 12, h = 3)" in tiny.get_suptitle()
    assert "ViT-L (D = 1024, L = 24, h = 16)" in huge.get_suptitle()


def test_plot_cost_rejects_a_patch_size_that_does_not_divide_the_image():
    with pytest.raises(ValueError, match="divisible"):
        plot_cost("vit_base_patch16_224", 224, 32 + 1)


def test_explorer_controls_and_default_figure():
    explorer = viz.cost_explorer()
    model, img_size, patch_size = explorer.controls
    assert model.name == "model" and model.kind == "menu"
    assert model.values == (
        "vit_tiny_patch16_224",
        "vit_small_patch16_224",
        "vit_base_patch16_224",
        "vit_large_patch16_224",
    )
    assert [model.format(v) for v in model.values] == ["ViT-Ti", "ViT-S", "ViT-B", "ViT-L"]
    assert img_size.values == (224, 384, 512, 768, 1024) and img_size.label == "image size"
    assert patch_size.values == (8, 16, 32) and patch_size.label == "patch size"
    assert all(s % p == 0 for s in img_size.values for p in patch_size.values)
    assert (model.default, img_size.default, patch_size.default) == (
        "vit_base_patch16_224",
        224,
        16,
    )
    assert explorer.figure().get_suptitle() == plot_cost().get_suptitle()
    big = explorer.figure(model="vit_large_patch16_224", img_size=1024, patch_size=8)
    assert "T = 16385 tokens" in big.get_suptitle()
    with pytest.raises(ValueError, match="divide every image size"):
        viz.cost_explorer(img_sizes=(224, 384), patch_sizes=(14, 16))


def test_explorer_static_page_is_light():
    explorer = viz.cost_explorer()
    page = explorer.static().data
    frames = math.prod(len(c.static) for c in explorer.controls)
    assert frames == 4 * 3 * 3
    assert int(re.search(r'data-frames="(\d+)"', page).group(1)) == frames
    assert len(page.encode()) < 1_500_000  # MAX_BYTES of tests/test_explorer.py
    assert plt.get_fignums() == []
