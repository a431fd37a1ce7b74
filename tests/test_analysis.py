"""vitutils.analysis against cases with known answers and against explicit loops (chapter 8)."""

import itertools
import math

import pytest
import torch

from vitutils import analysis
from vitutils.attention import record_attention
from vitutils.vit import ViT


def random_attention(L=3, B=2, h=2, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, h, T, T, generator=g).softmax(-1) for _ in range(L)]


def rollout_by_loops(layers, fusion="mean"):
    """Abnar & Zuidema written out entry by entry: no broadcasting, no matmul."""
    B, h, T, _ = layers[0].shape
    result = [[[float(i == j) for j in range(T)] for i in range(T)] for _ in range(B)]
    for w in layers:
        for b in range(B):
            a = [[0.0] * T for _ in range(T)]
            for i in range(T):
                for j in range(T):
                    heads = [float(w[b, k, i, j]) for k in range(h)]
                    fused = {"mean": sum(heads) / h, "max": max(heads), "min": min(heads)}[fusion]
                    a[i][j] = 0.5 * fused + 0.5 * (i == j)
                total = sum(a[i])
                a[i] = [v / total for v in a[i]]
            result[b] = [
                [sum(a[i][m] * result[b][m][j] for m in range(T)) for j in range(T)]
                for i in range(T)
            ]
    return torch.tensor(result)


@pytest.mark.parametrize("fusion", analysis.HEAD_FUSIONS)
def test_rollout_equals_explicit_loops(fusion):
    layers = random_attention()
    ours = analysis.attention_rollout(layers, head_fusion=fusion)
    torch.testing.assert_close(ours, rollout_by_loops(layers, fusion), atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.sum(-1), torch.ones(2, 5))  # rows stay distributions


def test_rollout_of_identity_attention_is_the_identity():
    eye = torch.eye(7).expand(2, 3, 7, 7)
    rollout = analysis.attention_rollout([eye] * 4)
    torch.testing.assert_close(rollout, torch.eye(7).expand(2, 7, 7))


def test_rollout_of_uniform_attention():
    # One layer of uniform attention: A = ½·(1/T) + ½·I; rows already sum to 1.
    T = 4
    rollout = analysis.attention_rollout([torch.full((1, 2, T, T), 1 / T)])
    torch.testing.assert_close(rollout[0], 0.5 / T + 0.5 * torch.eye(T))


def test_rollout_accepts_the_recorders_dict_in_layer_order():
    model = ViT(img_size=16, patch_size=4, embed_dim=16, depth=3, num_heads=2).eval()
    with record_attention(model) as records:
        model(torch.randn(2, 3, 16, 16))
    stacked = analysis.stack_attention(records)
    assert stacked.shape == (3, 2, 2, 17, 17)
    torch.testing.assert_close(stacked[1], records["blocks.1.attn"])
    torch.testing.assert_close(
        analysis.attention_rollout(records), analysis.attention_rollout(list(records.values()))
    )
    torch.testing.assert_close(
        analysis.collect_attention(model, torch.randn(5, 3, 16, 16), batch_size=2).shape,
        (3, 5, 2, 17, 17),
    )


def test_discard_zeroes_the_lowest_weights_and_keeps_rows_normalised():
    layers = random_attention(L=2, B=1, h=1, T=4, seed=3)
    full = analysis.attention_rollout(layers)
    torch.testing.assert_close(analysis.attention_rollout(layers, discard_ratio=0.0), full)
    kept = []
    for w in layers:  # by hand: zero the 8 lowest of 16 weights, except [0, 0]
        flat = w[0, 0].flatten().clone()
        order = sorted(range(16), key=lambda i: float(flat[i]))[:8]
        for i in order:
            if i != 0:
                flat[i] = 0.0
        kept.append(flat.reshape(1, 1, 4, 4))
    discarded = analysis.attention_rollout(layers, discard_ratio=0.5)
    torch.testing.assert_close(discarded, rollout_by_loops(kept), atol=1e-6, rtol=0)
    torch.testing.assert_close(discarded.sum(-1), torch.ones(1, 4))


def test_class_attention_maps_take_row_zero():
    w = torch.arange(2 * 7 * 7, dtype=torch.float).reshape(2, 7, 7)  # (B, T, T), 1 + 2 × 3 grid
    maps = analysis.class_attention_maps(w, (2, 3))
    assert maps.shape == (2, 2, 3)
    torch.testing.assert_close(maps[1, 1, 2], w[1, 0, 1 + 3 + 2])
    with pytest.raises(ValueError, match="7 tokens do not make 1 prefix token"):
        analysis.class_attention_maps(w, (3, 3))


def test_patch_distances_on_a_non_square_grid():
    d = analysis.patch_distances((2, 3), 4)
    assert d.shape == (6, 6)
    assert float(d[0, 5]) == pytest.approx(4 * math.hypot(1, 2))  # (0, 0) to (1, 2)
    torch.testing.assert_close(d, d.T)
    assert analysis.patch_distances((2, 2), (2, 3))[0, 3] == pytest.approx(math.hypot(2, 3))


def with_class_token(patch_weights):
    """(..., N, N) patch attention → (..., 1 + N, 1 + N) with a class token that also attends."""
    *lead, N, _ = patch_weights.shape
    out = torch.zeros(*lead, N + 1, N + 1)
    out[..., 1:, 1:] = patch_weights * 0.6
    out[..., 1:, 0] = 0.4  # 40 % to the class token: renormalised away
    out[..., 0, :] = 1 / (N + 1)
    return out


def test_identity_attention_has_distance_zero():
    eye = with_class_token(torch.eye(9).expand(2, 4, 9, 9))
    distance = analysis.mean_attention_distance([eye, eye], 3, 16)
    torch.testing.assert_close(distance, torch.zeros(2, 4))


def test_uniform_attention_has_the_grids_mean_pairwise_distance():
    gh, gw, P = 3, 4, 8
    cells = list(itertools.product(range(gh), range(gw)))
    pairs = [P * math.dist(a, b) for a in cells for b in cells]
    uniform = with_class_token(torch.full((1, 2, 12, 12), 1 / 12))
    distance = analysis.mean_attention_distance([uniform], (gh, gw), P)
    torch.testing.assert_close(distance, torch.full((1, 2), sum(pairs) / len(pairs)))


def test_one_hot_attention_to_a_known_offset():
    # Every query (r, c) attends to (r, (c + 1) mod 4) on a 4 × 4 grid of 16-pixel patches: distance 16
    # for three columns, 48 for the last (it wraps around): mean 24 pixels. A second head looks one row
    # down, wrapping likewise.
    w = torch.zeros(1, 2, 16, 16)
    for r, c in itertools.product(range(4), range(4)):
        w[0, 0, 4 * r + c, 4 * r + (c + 1) % 4] = 1.0
        w[0, 1, 4 * r + c, 4 * ((r + 1) % 4) + c] = 1.0
    distance = analysis.mean_attention_distance([with_class_token(w)], 4, 16)
    torch.testing.assert_close(distance, torch.tensor([[24.0, 24.0]]))


def test_mean_attention_distance_equals_explicit_loops():
    gh, gw, P = 2, 3, 4
    layers = random_attention(L=2, B=3, h=2, T=1 + gh * gw, seed=5)
    ours = analysis.mean_attention_distance(layers, (gh, gw), P)
    expected = torch.zeros(2, 2)
    for layer, w in enumerate(layers):
        for k in range(2):
            total = 0.0
            for b in range(3):
                for q in range(gh * gw):
                    row = w[b, k, 1 + q, 1:]
                    qr, qc = divmod(q, gw)
                    total += sum(
                        float(row[j]) / float(row.sum()) * P * math.dist((qr, qc), divmod(j, gw))
                        for j in range(gh * gw)
                    )
            expected[layer, k] = total / (3 * gh * gw)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="10 tokens do not make 1 prefix token"):
        analysis.mean_attention_distance(random_attention(T=10), 4, 8)
    with pytest.raises(ValueError, match="layer 1 has shape"):
        analysis.stack_attention([torch.ones(1, 1, 5, 5), torch.ones(1, 2, 5, 5)])
    with pytest.raises(ValueError, match=r"expected attention weights \(B, h, T, T\)"):
        analysis.stack_attention([torch.ones(5, 5)])
    with pytest.raises(ValueError, match="no attention weights"):
        analysis.stack_attention({})
    with pytest.raises(ValueError, match="head fusion must be one of"):
        analysis.attention_rollout(random_attention(), head_fusion="median")
    with pytest.raises(ValueError, match="discard_ratio must be in"):
        analysis.attention_rollout(random_attention(), discard_ratio=1.0)


def test_embedding_components_are_the_covariance_eigenvectors():
    torch.manual_seed(0)
    model = ViT(img_size=16, patch_size=4, embed_dim=40, depth=1, num_heads=2)
    components, explained = analysis.embedding_components(model, k=5)
    assert components.shape == (5, 3, 4, 4)
    filters = model.patch_embed.proj.weight.detach().reshape(40, 48)
    centred = filters - filters.mean(0)
    values, vectors = torch.linalg.eigh(centred.T @ centred)  # ascending
    for i in range(5):
        cosine = torch.dot(components[i].flatten(), vectors[:, -1 - i])
        assert abs(float(cosine)) == pytest.approx(1.0, abs=1e-4)  # the same direction, up to sign
    torch.testing.assert_close(explained, (values.flip(0) / values.sum())[:5], atol=1e-5, rtol=0)
    assert float(explained[0]) >= float(explained[1])
    with pytest.raises(ValueError, match=r"k must be in \[1, 40\]"):
        analysis.embedding_components(model, k=41)


def test_figures_draw_what_they_are_given():
    import matplotlib
    import matplotlib.pyplot as plt
    import numpy as np

    from vitutils import viz

    matplotlib.use("Agg")
    d = torch.arange(6.0).reshape(3, 2)  # (L, h)
    ax = viz.plot_attention_distance({"a": d, "b": d + 1}, reference=5.0).axes[0]
    assert [len(c.get_offsets()) for c in ax.collections] == [6, 6]
    np.testing.assert_allclose(ax.collections[1].get_offsets()[:, 1], (d + 1).flatten())
    assert list(ax.lines[0].get_ydata()) == [5.0, 5.0]
    shares = torch.tensor([0.5, 0.2, 0.1, 0.1, 0.1])
    fig = viz.plot_embedding_components(torch.rand(5, 3, 4, 4), shares, ncols=3)
    assert [a.get_title() for a in fig.axes[:5]] == [
        "1: 50 %",
        "2: 20 %",
        "3: 10 %",
        "4: 10 %",
        "5: 10 %",
    ]
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    maps, rollouts = torch.rand(2, 6, 4, 8, 8), torch.rand(2, 8, 8)
    fig = viz.plot_inside(images, ["x", "y"], maps, rollouts, image=1, layer=2, head="mean")
    assert fig.axes[0].get_title() == "class token, layer 2,\nmean of the heads"
    np.testing.assert_allclose(fig.axes[0].images[1].get_array(), maps[1, 1, 3].numpy())
    np.testing.assert_allclose(fig.axes[1].images[1].get_array(), rollouts[1].numpy())
    fig = viz.plot_inside(images, ["x", "y"], maps, rollouts, image=0, layer=6, head="2")
    np.testing.assert_allclose(fig.axes[0].images[1].get_array(), maps[0, 5, 1].numpy())
    with pytest.raises(ValueError, match="one title, map stack and rollout per image"):
        viz.inside_explorer(images, ["x"], maps, rollouts)
    plt.close("all")
