"""Tests for vitutils.embedding: the Conv2d patch embedding equals patchify + a linear map."""

import pytest
import torch
import torch.nn.functional as F

from vitutils.embedding import PatchEmbedding, init_class_token, prepend_class_token
from vitutils.patches import patchify

# (B, C, H, W, P, D): square, non-square, one patch, batch 1, one channel, rectangular patches.
CONFIGS = [
    (2, 3, 32, 32, 8, 16),
    (1, 3, 64, 96, 16, 24),
    (1, 3, 16, 16, 16, 8),  # a single patch
    (3, 1, 12, 20, 4, 5),
    (2, 3, 12, 12, (3, 4), 7),
]


@pytest.mark.parametrize(("B", "C", "H", "W", "P", "D"), CONFIGS)
@pytest.mark.parametrize("bias", [True, False])
def test_patch_embedding_equals_patchify_then_linear(B, C, H, W, P, D, bias):
    torch.manual_seed(0)
    embed = PatchEmbedding(img_size=(H, W), patch_size=P, in_chans=C, embed_dim=D, bias=bias)
    x = torch.randn(B, C, H, W)
    weight = embed.proj.weight.reshape(D, -1)  # (D, C*P*P), (c, p1, p2) order
    reference = F.linear(patchify(x, P), weight, embed.proj.bias)  # (B, N, D)
    out = embed(x)
    assert out.shape == (B, embed.num_patches, D)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


def test_patch_embedding_token_order_is_raster():
    # Put a single bright pixel in grid cell (row 1, column 2) of a 3 x 4 grid: only token 1*4+2
    # may differ from the bias.
    embed = PatchEmbedding(img_size=(12, 16), patch_size=4, in_chans=1, embed_dim=3)
    x = torch.zeros(1, 1, 12, 16)
    x[0, 0, 5, 9] = 1.0
    out = embed(x)[0] - embed.proj.bias  # (N, D)
    changed = out.abs().sum(dim=1).nonzero().flatten().tolist()
    assert changed == [1 * 4 + 2]


def test_state_dict_layout_matches_timm():
    embed = PatchEmbedding()
    state = embed.state_dict()
    assert list(state) == ["proj.weight", "proj.bias"]
    assert state["proj.weight"].shape == (768, 3, 16, 16)
    assert state["proj.bias"].shape == (768,)
    assert PatchEmbedding(bias=False).state_dict().keys() == {"proj.weight"}


@pytest.mark.parametrize(
    ("img_size", "patch_size", "grid", "num_patches"),
    [
        (224, 16, (14, 14), 196),
        (224, 32, (7, 7), 49),
        (384, 16, (24, 24), 576),
        ((64, 96), 16, (4, 6), 24),
        ((12, 20), (3, 4), (4, 5), 20),
        (16, 16, (1, 1), 1),
    ],
)
def test_grid_size_and_num_patches(img_size, patch_size, grid, num_patches):
    embed = PatchEmbedding(img_size=img_size, patch_size=patch_size, embed_dim=4)
    assert embed.grid_size == grid
    assert embed.num_patches == num_patches
    assert isinstance(embed.img_size, tuple)
    assert isinstance(embed.patch_size, tuple)


def test_constructor_is_keyword_only_and_validates():
    with pytest.raises(TypeError):
        PatchEmbedding(224, 16)  # type: ignore[misc]
    with pytest.raises(ValueError, match="image height 225 is not divisible by patch size 16"):
        PatchEmbedding(img_size=225, patch_size=16)
    with pytest.raises(ValueError, match="embed_dim=0"):
        PatchEmbedding(embed_dim=0)


def test_forward_errors():
    embed = PatchEmbedding(img_size=32, patch_size=8, in_chans=3, embed_dim=4)
    with pytest.raises(ValueError, match="expected 3 input channels, got 1"):
        embed(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"expected images of size 32 x 32 \(H x W\), got 64 x 32"):
        embed(torch.zeros(1, 3, 64, 32))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        embed(torch.zeros(3, 32, 32))


def test_init_class_token():
    torch.manual_seed(0)
    cls_token = init_class_token(4096)
    assert isinstance(cls_token, torch.nn.Parameter)
    assert cls_token.shape == (1, 1, 4096)
    assert cls_token.requires_grad
    # timm: normal with std 1e-6. With 4096 samples the sample std is within 10 % of it.
    assert 0.9e-6 < cls_token.std().item() < 1.1e-6
    assert not torch.equal(cls_token, torch.zeros_like(cls_token))
    with pytest.raises(ValueError, match="embed_dim must be positive"):
        init_class_token(0)


@pytest.mark.parametrize(("B", "N", "D"), [(1, 1, 4), (3, 196, 8), (2, 24, 5)])
def test_prepend_class_token(B, N, D):
    tokens = torch.randn(B, N, D)
    cls_token = torch.nn.Parameter(torch.randn(1, 1, D))
    out = prepend_class_token(tokens, cls_token)
    assert out.shape == (B, N + 1, D)
    for b in range(B):
        assert torch.equal(out[b, 0], cls_token[0, 0])
    assert torch.equal(out[:, 1:], tokens)
    # The token is shared by the batch: its gradient sums over the B copies.
    out[:, 0].sum().backward()
    assert torch.equal(cls_token.grad, torch.full((1, 1, D), float(B)))


def test_prepend_class_token_errors():
    with pytest.raises(ValueError, match=r"class token of shape \(1, 1, 8\), got \(1, 1, 4\)"):
        prepend_class_token(torch.zeros(2, 3, 8), torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match=r"tokens of shape \(B, N, D\)"):
        prepend_class_token(torch.zeros(3, 8), torch.zeros(1, 1, 8))


def test_patch_dropout_keeps_the_prefix_and_a_random_subset_of_patches():
    """timm's PatchDropout: in training, max(1, int(N(1 − p))) patch tokens per image, prefix first,
    each kept row one of the image's own tokens, a different subset per image; identity in eval."""
    from vitutils.embedding import PatchDropout

    torch.manual_seed(0)
    x = torch.randn(6, 1 + 64, 8)
    drop = PatchDropout(0.5, num_prefix_tokens=1).train()
    out = drop(x)
    assert out.shape == (6, 1 + 32, 8)
    assert torch.equal(out[:, 0], x[:, 0])
    subsets = []
    for b in range(6):
        rows = [int((x[b, 1:] == r).all(-1).nonzero()) for r in out[b, 1:]]
        assert len(set(rows)) == 32  # distinct patches, all from this image
        subsets.append(frozenset(rows))
    assert len(set(subsets)) == 6
    assert PatchDropout(0.99, num_prefix_tokens=0).train()(x).shape == (
        6,
        1,
        8,
    )  # at least one kept
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ValueError, match=r"patch dropout probability must be in \[0, 1\), got 1.0"):
        PatchDropout(1.0)


def test_vit_with_patch_dropout_trains_on_fewer_tokens_and_evaluates_on_all():
    from vitutils.vit import ViT

    model = ViT(img_size=32, patch_size=4, embed_dim=16, depth=1, num_heads=2, patch_drop_rate=0.5)
    seen = []
    model.blocks[0].register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    x = torch.randn(2, 3, 32, 32)
    model.train()(x)
    model.eval()(x)
    assert seen == [1 + 32, 1 + 64]
