"""Tests for vitutils.viz.architecture: the diagram draws the shapes the model really produces."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from vitutils import viz
from vitutils.vit import ViT, vit_config
from vitutils.viz.architecture import _measured_shapes, plot_architecture


@pytest.fixture(autouse=True)
def _agg_and_close():
    matplotlib.use("Agg")
    yield
    plt.close("all")


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def _fmt(shape) -> str:
    return f"({', '.join(map(str, shape))})"


def _drawn(fig: Figure, shape) -> bool:
    return any(_fmt(shape) in text for text in _texts(fig))


def _real_shapes(cfg, batch_size: int) -> list[tuple[int, ...]]:
    """Image, patch tokens, tokens through the blocks, pooled features, logits, of a real CPU run."""
    torch.manual_seed(0)
    model = ViT.from_config(cfg).eval()
    H, W = (cfg.img_size, cfg.img_size) if isinstance(cfg.img_size, int) else cfg.img_size
    x = torch.randn(batch_size, cfg.in_chans, H, W)
    with torch.no_grad():
        patches = model.patch_embed(x)  # (B, N, D)
        features = model.forward_features(x)  # (B, T, D)
        pooled = model.forward_head(features, pre_logits=True)  # (B, D)
        logits = model(x)  # (B, K)
    return [x.shape, patches.shape, features.shape, pooled.shape, logits.shape]


@pytest.mark.parametrize(
    ("cfg", "batch_size"),
    [
        (vit_config("vit_cifar_tiny"), 1),
        (vit_config("vit_cifar_tiny", img_size=(32, 48)), 2),
        (vit_config("vit_cifar_tiny", global_pool="avg", num_classes=7), 3),
        (vit_config("vit_cifar_tiny", patch_size=8, embed_dim=96, depth=2, mlp_ratio=2.0), 1),
    ],
)
def test_drawn_shapes_are_those_of_a_real_forward_pass(cfg, batch_size):
    fig = plot_architecture(cfg, batch_size=batch_size)
    for shape in _real_shapes(cfg, batch_size):
        assert _drawn(fig, shape), f"{_fmt(shape)} not drawn in {_texts(fig)}"
    B, T, D = _real_shapes(cfg, batch_size)[2]
    assert _drawn(fig, (B, T, int(cfg.mlp_ratio * D)))  # the mlp's hidden width


def test_cifar_tiny_and_vit_b16_numbers():
    texts = " ".join(_texts(plot_architecture("vit_cifar_tiny")))
    for shape in ["(1, 3, 32, 32)", "(1, 64, 192)", "(1, 65, 192)", "(1, 192)", "(1, 10)"]:
        assert shape in texts
    assert "(B, N + 1, D)\n= (1, 65, 192)" in texts  # letters and numbers together
    fig = plot_architecture("vit_base_patch16_224")
    texts = " ".join(_texts(fig))
    N = (224 // 16) * (224 // 16)  # 196
    for shape in ["(1, 3, 224, 224)", f"(1, {N}, 768)", f"(1, {N + 1}, 768)", "(1, 1000)"]:
        assert shape in texts
    assert "(1, 197, 3072)" in texts  # mlp hidden 4D
    assert "blocks.11" in texts and "× L = 12" in texts
    for name in ["patch_embed", "cls_token", "pos_embed", "norm", "head", "norm1", "attn", "mlp"]:
        assert name in texts
    assert fig.axes[0].get_title().startswith("ViT-B/16 at 224 × 224: N = 14 × 14 = 196 patches")


def test_no_class_token_draws_n_tokens():
    cfg = vit_config("vit_cifar_tiny", class_token=False, global_pool="avg")
    fig = plot_architecture(cfg)
    texts = _texts(fig)
    assert not any("cls_token" in t for t in texts)
    assert not any("N + 1" in t or "(1, 65, 192)" in t for t in texts)
    assert any("(B, N, D)\n= (1, 64, 192)" in t for t in texts)
    assert any("fc_norm" in t for t in texts)
    assert "no class token" in fig.axes[0].get_title()
    assert _measured_shapes(cfg, 1)["tokens"] == (1, 64, 192)


def test_measured_shapes_come_from_the_meta_model():
    shapes = _measured_shapes(vit_config("vit_cifar_tiny", img_size=(32, 48)), 4)
    assert shapes["image"] == (4, 3, 32, 48)
    assert shapes["patch_embed"] == (4, 96, 192)
    assert shapes["tokens"] == shapes["blocks.0"] == shapes["norm"] == (4, 97, 192)
    assert shapes["fc_norm"] == (4, 192)
    assert shapes["head"] == (4, 10)
    assert shapes["cls_token"] == (1, 1, 192)


def test_figure_has_title_and_closes():
    before = set(plt.get_fignums())
    fig = plot_architecture("vit_cifar_tiny")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert "vit_cifar_tiny at 32 × 32" in fig.axes[0].get_title()
    assert "D = 192, L = 6, h = 3" in fig.axes[0].get_title()
    fig.canvas.draw()
    plt.close(fig)
    assert set(plt.get_fignums()) == before


def test_reexported_and_rejects_bad_arguments():
    assert viz.plot_architecture is plot_architecture
    with pytest.raises(ValueError, match="unknown preset"):
        plot_architecture("vit_gigantic_patch1_1")
    with pytest.raises(ValueError, match="batch_size"):
        plot_architecture("vit_cifar_tiny", batch_size=0)
