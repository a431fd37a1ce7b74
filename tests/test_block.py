"""Tests for vitutils.block against nn.TransformerEncoderLayer and the definition of drop path."""

import pytest
import torch
from torch import nn

from vitutils.block import Block, DropPath, Mlp, drop_path, drop_path_rates


def _copy_to_torch_layer(block: Block, dim: int, heads: int, hidden: int) -> nn.Module:
    layer = nn.TransformerEncoderLayer(
        d_model=dim,
        nhead=heads,
        dim_feedforward=hidden,
        dropout=0.0,
        activation="gelu",
        batch_first=True,
        norm_first=True,
        layer_norm_eps=1e-6,
    )
    pairs = {
        "self_attn.in_proj_weight": "attn.qkv.weight",
        "self_attn.in_proj_bias": "attn.qkv.bias",
        "self_attn.out_proj.weight": "attn.proj.weight",
        "self_attn.out_proj.bias": "attn.proj.bias",
        "linear1.weight": "mlp.fc1.weight",
        "linear1.bias": "mlp.fc1.bias",
        "linear2.weight": "mlp.fc2.weight",
        "linear2.bias": "mlp.fc2.bias",
        "norm1.weight": "norm1.weight",
        "norm1.bias": "norm1.bias",
        "norm2.weight": "norm2.weight",
        "norm2.bias": "norm2.bias",
    }
    ours = block.state_dict()
    assert set(pairs.values()) == set(ours)
    layer.load_state_dict({theirs: ours[mine] for theirs, mine in pairs.items()}, strict=True)
    return layer.eval()


@pytest.mark.parametrize(
    ("B", "N", "dim", "heads", "mlp_ratio"),
    [(1, 1, 8, 1, 4.0), (2, 17, 48, 3, 4.0), (3, 5, 64, 8, 2.5)],
)
@pytest.mark.parametrize("fused", [True, False])
def test_block_matches_transformer_encoder_layer(B, N, dim, heads, mlp_ratio, fused):
    torch.manual_seed(0)
    block = Block(dim=dim, num_heads=heads, mlp_ratio=mlp_ratio, fused_attn=fused).eval()
    with torch.no_grad():  # non-trivial norms and biases so every parameter is compared
        for name, p in block.named_parameters():
            if name.startswith("norm") or name.endswith("bias"):
                p.normal_()
    layer = _copy_to_torch_layer(block, dim, heads, int(dim * mlp_ratio))
    x = torch.randn(B, N, dim)
    with torch.no_grad():
        expected = layer(x)
        out = block(x)
    assert out.shape == (B, N, dim)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_block_state_dict_keys_are_timms():
    block = Block(dim=32, num_heads=4, drop_path=0.1)
    shapes = {k: tuple(v.shape) for k, v in block.state_dict().items()}
    assert shapes == {
        "norm1.weight": (32,),
        "norm1.bias": (32,),
        "attn.qkv.weight": (96, 32),
        "attn.qkv.bias": (96,),
        "attn.proj.weight": (32, 32),
        "attn.proj.bias": (32,),
        "norm2.weight": (32,),
        "norm2.bias": (32,),
        "mlp.fc1.weight": (128, 32),
        "mlp.fc1.bias": (128,),
        "mlp.fc2.weight": (32, 128),
        "mlp.fc2.bias": (32,),
    }
    assert block.norm1.eps == 1e-6


def test_mlp_is_fc_gelu_fc():
    torch.manual_seed(0)
    mlp = Mlp(in_features=6, hidden_features=10, out_features=3)
    x = torch.randn(2, 4, 6)
    expected = nn.functional.gelu(x @ mlp.fc1.weight.T + mlp.fc1.bias) @ mlp.fc2.weight.T
    torch.testing.assert_close(mlp(x), expected + mlp.fc2.bias, atol=1e-6, rtol=0)
    assert Mlp(in_features=6).fc1.out_features == 6  # hidden defaults to the input width


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_drop_path_is_identity_in_eval(p):
    x = torch.randn(4, 3, 5)
    assert torch.equal(DropPath(p).eval()(x), x)
    assert torch.equal(drop_path(x, p, training=False), x)


@pytest.mark.parametrize("shape", [(64, 5, 7), (64, 3), (64, 2, 3, 4)])
def test_drop_path_zeroes_whole_samples_and_rescales(shape):
    torch.manual_seed(0)
    x = torch.rand(shape) + 0.5  # strictly positive, so a zero means "dropped"
    module = DropPath(0.25).train()
    out = module(x)
    flat_out, flat_x = out.reshape(shape[0], -1), x.reshape(shape[0], -1)
    dropped = (flat_out == 0).all(dim=1)
    kept = (flat_out != 0).all(dim=1)
    assert (dropped | kept).all()  # per sample: all or nothing
    assert 0 < dropped.sum() < shape[0]
    torch.testing.assert_close(flat_out[kept], flat_x[kept] / 0.75, atol=1e-6, rtol=0)


def test_drop_path_preserves_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(200_000, 1)
    out = drop_path(x, 0.3, training=True)
    assert out.unique().tolist() == pytest.approx([0.0, 1 / 0.7])
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)  # std of the mean ≈ 0.0015
    assert (drop_path(x, 1.0, training=True) == 0).all()
    unscaled = drop_path(x, 0.3, training=True, scale_by_keep=False)
    assert unscaled.unique().tolist() == [0.0, 1.0]


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_drop_path_rejects_bad_probabilities(p):
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        DropPath(p)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        drop_path(torch.ones(2), p, training=True)


def test_block_uses_drop_path_only_in_training():
    torch.manual_seed(0)
    block = Block(dim=16, num_heads=2, drop_path=1.0)
    x = torch.randn(3, 4, 16)
    assert torch.equal(block.train()(x), x)  # both branches always dropped
    assert not torch.allclose(block.eval()(x), x)
    assert isinstance(Block(dim=16, num_heads=2).drop_path1, nn.Identity)


@pytest.mark.parametrize(
    ("rate", "depth", "expected"),
    [
        (0.1, 12, [0.1 * i / 11 for i in range(12)]),
        (0.0, 3, [0.0, 0.0, 0.0]),
        (0.5, 1, [0.0]),
        (0.2, 5, [0.0, 0.05, 0.1, 0.15, 0.2]),
    ],
)
def test_drop_path_rates_increase_linearly(rate, depth, expected):
    assert drop_path_rates(rate, depth) == pytest.approx(expected, abs=1e-7)


def test_drop_path_rates_errors():
    with pytest.raises(ValueError, match="depth must be positive, got 0"):
        drop_path_rates(0.1, 0)
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\], got 2"):
        drop_path_rates(2, 4)
