"""Tests for vitutils.attention against PyTorch's own attention (F.sdpa, nn.MultiheadAttention)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vitutils.attention as attention_module
from vitutils.attention import (
    Attention,
    attention_entropy,
    attention_weights,
    record_attention,
    scaled_dot_product_attention,
    set_fused_attn,
)
from vitutils.positional import RelativePositionBias

# (batch shape, N queries, M keys, d, d_v): batch 1, odd sizes, N != M, d_v != d, extra batch dims.
SHAPES = [
    ((1,), 1, 1, 1, 1),
    ((2, 3), 5, 7, 8, 8),
    ((1, 4), 17, 17, 16, 5),
    ((3,), 9, 4, 3, 6),
]


def _qkv(batch, N, M, d, d_v, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, N, d, generator=g)
    k = torch.randn(*batch, M, d, generator=g)
    v = torch.randn(*batch, M, d_v, generator=g)
    return q, k, v


def _bool_mask(N, M, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(N, M, generator=g) > 0.5
    mask[:, 0] = True  # every query keeps at least one key
    return mask


@pytest.mark.parametrize(("batch", "N", "M", "d", "d_v"), SHAPES)
@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_teaching_attention_matches_torch(batch, N, M, d, d_v, mask_kind):
    q, k, v = _qkv(batch, N, M, d, d_v)
    mask = None
    if mask_kind == "bool":
        mask = _bool_mask(N, M)
    elif mask_kind == "float":
        mask = torch.randn(N, M, generator=torch.Generator().manual_seed(2))
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert out.shape == (*batch, N, d_v)
    assert weights.shape == (*batch, N, M)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("batch", "N", "M", "d", "d_v"), SHAPES)
def test_weights_are_a_distribution_and_respect_the_mask(batch, N, M, d, d_v):
    q, k, v = _qkv(batch, N, M, d, d_v, seed=3)
    mask = _bool_mask(N, M)
    weights = attention_weights(q, k, mask)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(*batch, N), atol=1e-6, rtol=0)
    assert (weights[..., ~mask] == 0).all()


def test_custom_scale_and_reference_formula():
    q, k, v = _qkv((2,), 6, 6, 4, 4)
    out, weights = scaled_dot_product_attention(q, k, v, scale=0.3)
    expected_w = torch.softmax(q @ k.transpose(-2, -1) * 0.3, dim=-1)
    torch.testing.assert_close(weights, expected_w, atol=1e-6, rtol=0)
    torch.testing.assert_close(out, expected_w @ v, atol=1e-6, rtol=0)


def test_shape_errors():
    q, k, v = _qkv((1,), 3, 4, 5, 5)
    with pytest.raises(ValueError, match="same width d, got 5 and 6"):
        scaled_dot_product_attention(q, torch.randn(1, 4, 6), v)
    with pytest.raises(ValueError, match="same number of tokens, got 4 and 3"):
        scaled_dot_product_attention(q, k, torch.randn(1, 3, 5))


def _copy_to_mha(attn: Attention) -> nn.MultiheadAttention:
    mha = nn.MultiheadAttention(attn.dim, attn.num_heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)
        if attn.qkv.bias is not None:
            mha.in_proj_bias.copy_(attn.qkv.bias)
        else:
            mha.in_proj_bias.zero_()
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
    return mha.eval()


@pytest.mark.parametrize(("B", "N", "dim", "heads"), [(1, 1, 8, 1), (2, 17, 48, 3), (3, 10, 64, 8)])
@pytest.mark.parametrize("qkv_bias", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_attention_matches_multihead_attention(B, N, dim, heads, qkv_bias, fused):
    torch.manual_seed(0)
    attn = Attention(dim=dim, num_heads=heads, qkv_bias=qkv_bias, fused_attn=fused).eval()
    with torch.no_grad():
        attn.proj.bias.normal_()  # make sure the biases take part in the comparison
        if qkv_bias:
            attn.qkv.bias.normal_()
    mha = _copy_to_mha(attn)
    x = torch.randn(B, N, dim)
    with torch.no_grad():
        expected, _ = mha(x, x, x, need_weights=False)
        out = attn(x)
    assert out.shape == (B, N, dim)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_attention_state_dict_is_timms():
    assert set(Attention(dim=32, num_heads=4, qkv_bias=True).state_dict()) == {
        "qkv.weight",
        "qkv.bias",
        "proj.weight",
        "proj.bias",
    }
    assert set(Attention(dim=32, num_heads=4).state_dict()) == {
        "qkv.weight",
        "proj.weight",
        "proj.bias",
    }


@pytest.mark.parametrize("with_bias", [False, True])
def test_fused_and_teaching_paths_agree_including_gradients(with_bias):
    torch.manual_seed(0)
    rel = (
        RelativePositionBias(grid_size=(3, 2), num_heads=4, num_prefix_tokens=1)
        if with_bias
        else None
    )
    attn = Attention(dim=32, num_heads=4, qkv_bias=True, rel_pos_bias=rel)
    x = torch.randn(2, 7, 32, requires_grad=True)
    set_fused_attn(attn, True)
    fused = attn(x)
    (g_fused,) = torch.autograd.grad(fused.square().sum(), x)
    set_fused_attn(attn, False)
    teaching = attn(x)
    (g_teaching,) = torch.autograd.grad(teaching.square().sum(), x)
    torch.testing.assert_close(fused, teaching, atol=1e-5, rtol=0)
    torch.testing.assert_close(g_fused, g_teaching, atol=1e-4, rtol=0)


@pytest.mark.parametrize(("dim", "heads"), [(10, 3), (64, 0)])
def test_attention_rejects_bad_head_count(dim, heads):
    with pytest.raises(ValueError, match=f"dim {dim} must be divisible by num_heads {heads}"):
        Attention(dim=dim, num_heads=heads)


def test_attention_rejects_wrong_width():
    with pytest.raises(ValueError, match="expected tokens of width 16, got 8"):
        Attention(dim=16, num_heads=2)(torch.randn(1, 3, 8))


def _manual_attention(attn: Attention, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Multi-head attention written with plain loops over heads, as in the paper's appendix A."""
    B, N, D = x.shape
    h, d = attn.num_heads, attn.head_dim
    Wq, Wk, Wv = attn.qkv.weight.split(D)
    bq, bk, bv = attn.qkv.bias.split(D)
    heads = []
    for i in range(h):
        cols = slice(i * d, (i + 1) * d)
        q = x @ Wq[cols].T + bq[cols]
        k = x @ Wk[cols].T + bk[cols]
        v = x @ Wv[cols].T + bv[cols]
        logits = q @ k.transpose(1, 2) / d**0.5
        if bias is not None:
            logits = logits + bias[i]
        heads.append(logits.softmax(-1) @ v)
    return torch.cat(heads, dim=-1) @ attn.proj.weight.T + attn.proj.bias


@pytest.mark.parametrize(("grid", "prefix"), [((2, 3), 1), ((3, 3), 0), ((1, 4), 1)])
def test_relative_position_bias_is_added_to_the_logits(grid, prefix):
    torch.manual_seed(0)
    heads, dim = 2, 16
    rel = RelativePositionBias(grid_size=grid, num_heads=heads, num_prefix_tokens=prefix)
    with torch.no_grad():
        rel.relative_position_bias_table.normal_()  # a bias large enough to matter
    with_bias = Attention(dim=dim, num_heads=heads, qkv_bias=True, rel_pos_bias=rel).eval()
    plain = Attention(dim=dim, num_heads=heads, qkv_bias=True).eval()
    plain.load_state_dict(with_bias.state_dict(), strict=False)
    N = prefix + grid[0] * grid[1]
    x = torch.randn(2, N, dim)
    with torch.no_grad():
        expected = _manual_attention(with_bias, x, rel())
        no_bias = _manual_attention(with_bias, x, None)
        for fused in (True, False):
            set_fused_attn(with_bias, fused)
            torch.testing.assert_close(with_bias(x), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(plain(x), no_bias, atol=1e-5, rtol=0)
    assert (expected - no_bias).abs().max() > 1e-2
    assert set(with_bias.state_dict()) - set(plain.state_dict()) == {
        "rel_pos_bias.relative_position_bias_table"
    }


def test_relative_position_bias_of_the_wrong_size_is_rejected():
    rel = RelativePositionBias(grid_size=2, num_heads=2)
    attn = Attention(dim=8, num_heads=2, rel_pos_bias=rel)
    with pytest.raises(ValueError, match=r"shape \(2, 4, 4\), expected \(2, 5, 5\)"):
        attn(torch.randn(1, 5, 8))


class _TwoLayers(nn.Module):
    def __init__(self, dim=24, heads=(2, 3)):
        super().__init__()
        self.layers = nn.ModuleList(Attention(dim=dim, num_heads=h, qkv_bias=True) for h in heads)

    def forward(self, x):
        for layer in self.layers:
            x = x + layer(x)
        return x


@pytest.fixture
def count_fused_calls(monkeypatch):
    calls = []
    original = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", counting)
    return calls


@pytest.mark.parametrize(("B", "N"), [(1, 1), (2, 9)])
def test_record_attention_returns_every_layer(B, N, count_fused_calls):
    torch.manual_seed(0)
    model = _TwoLayers().eval()
    x = torch.randn(B, N, 24)
    with torch.no_grad():
        expected = model(x)  # fused path
        assert len(count_fused_calls) == 2
        with record_attention(model) as attn:
            recorded = model(x)
        assert len(count_fused_calls) == 2  # the teaching path ran inside the block
    assert list(attn) == ["layers.0", "layers.1"]
    assert attn["layers.0"].shape == (B, 2, N, N)
    assert attn["layers.1"].shape == (B, 3, N, N)
    torch.testing.assert_close(recorded, expected, atol=1e-5, rtol=0)
    for w in attn.values():
        assert not w.requires_grad
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-6, rtol=0)
    # The recorded weights are the softmax of the first layer's own queries and keys.
    layer = model.layers[0]
    q, k, _ = layer.qkv(x).reshape(B, N, 3, 2, 12).permute(2, 0, 3, 1, 4)
    torch.testing.assert_close(
        attn["layers.0"], torch.softmax(q @ k.transpose(-2, -1) / 12**0.5, -1), atol=1e-6, rtol=0
    )


def test_recorded_weights_are_detached_while_training():
    model = _TwoLayers().train()
    x = torch.randn(2, 3, 24, requires_grad=True)
    with record_attention(model) as attn:
        model(x).sum().backward()  # the graph itself is untouched
    assert all(not w.requires_grad for w in attn.values())
    assert x.grad is not None


def test_nothing_is_recorded_outside_the_block(count_fused_calls):
    model = _TwoLayers()
    x = torch.randn(1, 4, 24)
    with record_attention(model) as attn:
        pass
    model(x)
    assert attn == {}
    assert all(layer.recorder is None for layer in model.layers)
    assert len(count_fused_calls) == 2  # back on the fused path


def test_record_attention_nests_and_restores():
    model = _TwoLayers()
    x = torch.randn(1, 4, 24)
    with record_attention(model) as outer:
        with record_attention(model.layers[1]) as inner:
            model(x)
        model(x)
    assert list(inner) == [""]
    assert list(outer) == ["layers.0", "layers.1"]
    assert all(layer.recorder is None for layer in model.layers)


def test_record_attention_needs_attention_modules():
    with pytest.raises(ValueError, match="contains no vitutils Attention"):
        with record_attention(nn.Linear(2, 2)):
            pass


# --- attention_entropy ------------------------------------------------------------------------------


@pytest.mark.parametrize(("batch", "M"), [((), 1), ((3,), 5), ((2, 4), 17), ((1, 1), 196)])
def test_attention_entropy_uniform_rows_give_log_m(batch, M):
    weights = torch.full((*batch, M), 1.0 / M)
    entropy = attention_entropy(weights)
    assert entropy.shape == batch
    torch.testing.assert_close(entropy, torch.full(batch, math.log(M)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("M", [1, 4, 9])
def test_attention_entropy_one_hot_rows_give_zero(M):
    entropy = attention_entropy(torch.eye(M))  # M one-hot rows
    assert entropy.shape == (M,)
    assert torch.equal(entropy, torch.zeros(M))


def test_attention_entropy_one_hot_rows_are_not_negative_zero():
    # torch.equal(-0.0, 0.0) is True, so only the sign bit tells -0.0 (printed "-0.") from 0.0.
    entropy = attention_entropy(torch.eye(4))
    assert not torch.signbit(entropy).any()


@pytest.mark.parametrize(("batch", "M"), [((6,), 7), ((2, 3), 16), ((1,), 2), ((2, 2, 2), 50)])
def test_attention_entropy_matches_categorical(batch, M):
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(*batch, M, generator=g)
    logits[
        ..., 0
    ] = -torch.inf  # a masked key: weight exactly 0, which contributes 0 (0 · log 0 = 0)
    weights = logits.softmax(dim=-1)
    expected = torch.distributions.Categorical(probs=weights).entropy()
    entropy = attention_entropy(weights)
    assert entropy.shape == batch
    torch.testing.assert_close(entropy, expected, atol=1e-5, rtol=0)
    assert (entropy >= 0).all() and (entropy <= math.log(M)).all()


def test_attention_entropy_of_real_attention_weights():
    # Rows from attention_weights (..., N, M) -> (..., N): each one a distribution over the M keys.
    q, k, _ = _qkv((2, 3), 5, 7, 8, 8, seed=4)
    weights = attention_weights(q, k)
    entropy = attention_entropy(weights)
    assert entropy.shape == (2, 3, 5)
    expected = torch.distributions.Categorical(probs=weights).entropy()
    torch.testing.assert_close(entropy, expected, atol=1e-5, rtol=0)
