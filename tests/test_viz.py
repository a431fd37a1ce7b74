"""Tests for vitutils.viz: every figure has a title and draws the right numbers."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from vitutils import viz
from vitutils.attention import patch_attention
from vitutils.positional import ENCODING_KINDS, sincos_1d, sincos_2d


@pytest.fixture(autouse=True)
def _agg_and_close():
    matplotlib.use("Agg")
    yield
    plt.close("all")


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _title(fig: Figure) -> str:
    titles = [fig.get_suptitle()] + [ax.get_title() for ax in fig.axes]
    return " ".join(t for t in titles if t)


def _check_labelled(fig: Figure) -> None:
    assert isinstance(fig, Figure)
    assert _title(fig).strip()
    labelled = [ax for ax in fig.axes if ax.get_xlabel() or ax.get_ylabel()]
    assert labelled or fig.get_supxlabel()


SHAPES = [(64, 64, 16), (48, 80, 16), (32, 96, 8)]  # square and non-square images


@pytest.mark.parametrize(("h", "w", "p"), SHAPES)
def test_patch_figures_run_on_non_square_images(h, w, p):
    image = _image(h, w)
    for fig in (
        viz.plot_patch_grid(image, p),
        viz.plot_patch_sequence(image, p),
        viz.plot_patch_sequence(image, p, max_patches=5),
        viz.plot_image_with_grid(image, p),
        viz.plot_image_with_grid(image, p, show_grid=False),
        viz.plot_patch_explorer(image, p),
        viz.plot_patch_explorer(image, p, show_grid=False),
        viz.plot_patch_attention(image, p, 0),
    ):
        _check_labelled(fig)
    n = (h // p) * (w // p)
    assert f"= {n} patches" in viz.plot_patch_explorer(image, p).get_suptitle()


def test_patch_grid_draws_each_patch_in_place():
    image = _image(48, 80)
    P, gap = 16, 0.125  # a 2-pixel gap
    canvas = viz.plot_patch_grid(image, P, gap=gap).axes[0].images[0].get_array()
    g = 2
    for r, c in [(0, 0), (1, 3), (2, 4)]:
        top, left = r * (P + g), c * (P + g)
        np.testing.assert_allclose(
            canvas[top : top + P, left : left + P],
            image[r * P : (r + 1) * P, c * P : (c + 1) * P] / 255,
            atol=1e-6,
        )
    assert (canvas[P : P + g] == 1).all()  # the gap is white


def test_patch_sequence_is_raster_order():
    image = _image(32, 48)
    P = 16  # grid 2 × 3: token 3 is row 1, column 0
    canvas = viz.plot_patch_sequence(image, P).axes[0].images[0].get_array()
    g = round(0.15 * P)
    np.testing.assert_allclose(
        canvas[:, 3 * (P + g) : 3 * (P + g) + P], image[P:, :P] / 255, atol=1e-6
    )


def test_patch_sequence_wraps_and_truncates():
    image = _image(16, 16 * 40)
    fig = viz.plot_patch_sequence(image, 16)
    assert fig.axes[0].images[0].get_array().shape[0] > 16  # 40 tokens wrap onto a second line
    assert "first 5 shown" in viz.plot_patch_sequence(image, 16, max_patches=5).axes[0].get_title()
    with pytest.raises(ValueError, match="max_patches"):
        viz.plot_patch_sequence(image, 16, max_patches=0)


def test_patch_figures_reject_bad_sizes():
    with pytest.raises(ValueError, match="not divisible by patch size 16"):
        viz.plot_patch_grid(_image(50, 64), 16)
    with pytest.raises(ValueError, match="expected an \\(H, W, 3\\)"):
        viz.plot_patch_grid(np.zeros((4, 16, 16), np.uint8), 4)


def test_image_with_grid_accepts_tensors_and_draws_on_given_axes():
    fig, ax = plt.subplots()
    out = viz.plot_image_with_grid(torch.rand(3, 32, 48), 16, ax=ax)
    assert out is fig
    assert "2 × 3 = 6 patches" in ax.get_title()


# --- positional encodings -------------------------------------------------------------------------------------


def test_positional_heatmap_shows_the_encodings():
    pe = torch.randn(12, 8)
    fig = viz.plot_positional_heatmap(pe)
    _check_labelled(fig)
    im = fig.axes[0].images[0]
    np.testing.assert_allclose(im.get_array(), pe.numpy())
    assert im.get_cmap().name == "RdBu"
    low, high = im.get_clim()
    assert low == -high == -float(pe.abs().max())


@pytest.mark.parametrize(("gh", "gw"), [(3, 5), (4, 4)])
def test_similarity_grid_is_cosine_similarity(gh, gw):
    pe = torch.randn(gh * gw, 16)
    fig = viz.plot_similarity_grid(pe, (gh, gw))
    _check_labelled(fig)
    expected = F.cosine_similarity(pe[:, None, :], pe[None, :, :], dim=-1)  # (N, N), independent
    maps = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(maps) == gh * gw
    for n, im in enumerate(maps):  # axes are created row by row: map n belongs to position n
        np.testing.assert_allclose(im.get_array(), expected[n].reshape(gh, gw).numpy(), atol=1e-5)
        assert im.get_cmap().name == "viridis"
    assert len({im.get_clim() for im in maps}) == 1  # one shared colour scale
    assert maps[0].get_clim() == (math.floor(float(expected.min()) * 10) / 10, 1)
    assert viz.plot_similarity_grid(pe, (gh, gw), vmin=-1).axes[0].images[0].get_clim() == (-1, 1)


def test_similarity_grid_rejects_class_token_row():
    with pytest.raises(ValueError, match="needs 16 encodings, got 17"):
        viz.plot_similarity_grid(torch.randn(1, 17, 8), 4)


def test_position_similarity():
    pe = sincos_2d(3, 4, 8)
    fig = viz.plot_position_similarity(pe, (3, 4), (1, 2))
    _check_labelled(fig)
    expected = F.cosine_similarity(pe[6][None], pe, dim=-1).reshape(3, 4)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), expected.numpy(), atol=1e-6)
    same = viz.plot_position_similarity(pe, (3, 4), 6).axes[0].images[0].get_array()
    np.testing.assert_array_equal(same, fig.axes[0].images[0].get_array())
    with pytest.raises(ValueError, match="outside"):
        viz.plot_position_similarity(pe, (3, 4), 12)


@pytest.mark.parametrize("kind", ENCODING_KINDS)
def test_positional_explorer(kind):
    fig = viz.plot_positional_explorer(kind, 16, 5, grid_size=(4, 6))
    _check_labelled(fig)
    shown = torch.from_numpy(np.asarray(fig.axes[0].images[0].get_array()))
    assert shown.shape == (24, 16)
    if kind == "sincos_2d":
        torch.testing.assert_close(shown, sincos_2d(4, 6, 16))
    if kind == "sincos_1d":
        torch.testing.assert_close(shown, sincos_1d(24, 16))
    state = torch.random.get_rng_state()
    again = (
        viz.plot_positional_explorer(kind, 16, 5, grid_size=(4, 6)).axes[0].images[0].get_array()
    )
    np.testing.assert_array_equal(again, shown.numpy())  # deterministic, also for "learned"
    assert torch.equal(torch.random.get_rng_state(), state)  # and the global seed is untouched


def test_positional_explorer_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind 'rope'"):
        viz.plot_positional_explorer("rope", 16, 0)


# --- chapter 4: attention on a photo ------------------------------------------------------------------------


def test_plot_patch_attention_shows_the_query_row():
    image = _image(32, 64)
    fig = viz.plot_patch_attention(image, 16, (1, 2), kind="texture", temperature=0.5)
    title = fig.get_suptitle()
    assert (
        "P = 16" in title
        and "query 6" in title
        and "texture" in title
        and "temperature = 0.5" in title
    )
    overlay = fig.axes[1].images[1]
    assert overlay.get_cmap().name == "magma"
    w = patch_attention(image, 16, kind="texture", temperature=0.5)[6]
    np.testing.assert_allclose(overlay.get_array(), w.reshape(2, 4).numpy(), atol=1e-7)
    entropy = float(-(w * w.log()).sum())
    assert f"entropy of the weights {entropy:.2f} nats" in title
    with pytest.raises(ValueError, match="outside"):
        viz.plot_patch_attention(image, 16, (2, 0))


def test_viz_draws_and_does_not_compute():
    """Figures live in viz, maths does not: no figure module defines a softmax, a similarity or features,
    or imports torch.nn.functional (the one place a figure would compute one)."""
    import ast
    import pathlib

    import vitutils.viz

    folder = pathlib.Path(vitutils.viz.__file__).parent
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module != "torch.nn.functional", path.name
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"softmax", "normalize", "cosine_similarity"}, (
                    f"{path.name}:{node.lineno} computes {node.attr}"
                )
            if isinstance(node, ast.BinOp):
                assert not isinstance(node.op, ast.MatMult), f"{path.name}:{node.lineno} uses @"
