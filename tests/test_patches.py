"""Tests for vitutils.patches: patchify against F.unfold and a plain loop, exact round trips."""

import pytest
import torch
import torch.nn.functional as F

from vitutils.patches import grid_size, patchify, to_2tuple, unpatchify

# (B, C, H, W, P): square, non-square, one patch, batch 1, one channel, patch of one pixel.
CONFIGS = [
    (2, 3, 32, 32, 8),
    (1, 3, 224, 224, 16),
    (2, 3, 64, 96, 16),
    (3, 1, 12, 20, 4),
    (1, 3, 16, 16, 16),  # a single patch
    (2, 2, 6, 9, 3),
    (1, 5, 4, 6, 1),
]


def loop_patchify(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Reference: visit the grid in raster order and flatten each patch as (c, p1, p2)."""
    B, C, H, W = x.shape
    rows = []
    for b in range(B):
        seq = []
        for r in range(H // ph):
            for c in range(W // pw):
                values = [
                    x[b, ch, r * ph + i, c * pw + j]
                    for ch in range(C)  # channel-major: (c, p1, p2)
                    for i in range(ph)
                    for j in range(pw)
                ]
                seq.append(torch.stack(values))
        rows.append(torch.stack(seq))
    return torch.stack(rows)


@pytest.mark.parametrize(("B", "C", "H", "W", "P"), CONFIGS)
def test_patchify_equals_unfold(B, C, H, W, P):
    x = torch.randn(B, C, H, W)
    reference = F.unfold(x, kernel_size=P, stride=P).transpose(1, 2)  # (B, N, C*P*P)
    out = patchify(x, P)
    assert out.shape == (B, (H // P) * (W // P), C * P * P)
    assert torch.equal(out, reference)


@pytest.mark.parametrize(
    ("B", "C", "H", "W", "ph", "pw"),
    [(2, 3, 8, 12, 2, 3), (1, 1, 6, 6, 3, 2), (1, 2, 5, 8, 5, 4), (2, 3, 4, 4, 1, 4)],
)
def test_patchify_non_square_patches_equals_loop(B, C, H, W, ph, pw):
    x = torch.randn(B, C, H, W)
    out = patchify(x, (ph, pw))
    assert torch.equal(out, loop_patchify(x, ph, pw))
    # F.unfold agrees for rectangular kernels too.
    ref = F.unfold(x, kernel_size=(ph, pw), stride=(ph, pw)).transpose(1, 2)
    assert torch.equal(out, ref)


def test_patchify_raster_and_channel_order_by_hand():
    # Pixel values encode their coordinates, so the expected layout can be written by hand.
    C, H, W, P = 2, 4, 6, 2
    c, h, w = torch.meshgrid(torch.arange(C), torch.arange(H), torch.arange(W), indexing="ij")
    x = (100 * c + 10 * h + w).unsqueeze(0).float()  # (1, C, H, W)
    out = patchify(x, P)  # (1, 6, 8)
    # Patch 1 is grid row 0, column 1: pixels rows 0-1, columns 2-3; channel 0 first.
    assert out[0, 1].tolist() == [2, 3, 12, 13, 102, 103, 112, 113]
    # Patch 3 is grid row 1, column 0 (raster order, 3 patches per row).
    assert out[0, 3].tolist() == [20, 21, 30, 31, 120, 121, 130, 131]


@pytest.mark.parametrize(("B", "C", "H", "W", "P"), CONFIGS)
def test_unpatchify_inverts_patchify(B, C, H, W, P):
    x = torch.randn(B, C, H, W)
    assert torch.equal(unpatchify(patchify(x, P), P, (H, W)), x)
    p = torch.randn(B, (H // P) * (W // P), C * P * P)
    assert torch.equal(patchify(unpatchify(p, P, (H, W)), P), p)


def test_unpatchify_non_square_patches_and_int_image_size():
    x = torch.randn(2, 3, 12, 12)
    assert torch.equal(unpatchify(patchify(x, (3, 4)), (3, 4), 12), x)


def test_patchify_gradient_is_unpatchify():
    # patchify only permutes entries, so its backward pass must be unpatchify.
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    w = torch.randn(1, 4, 48)
    (patchify(x, 4) * w).sum().backward()
    assert torch.equal(x.grad, unpatchify(w, 4, 8))


@pytest.mark.parametrize(
    ("image_size", "patch_size", "expected"),
    [(224, 16, (14, 14)), ((64, 96), 16, (4, 6)), ((12, 20), (3, 4), (4, 5)), (16, 16, (1, 1))],
)
def test_grid_size(image_size, patch_size, expected):
    assert grid_size(image_size, patch_size) == expected


@pytest.mark.parametrize(
    ("image_size", "patch_size", "match"),
    [
        (225, 16, "image height 225 is not divisible by patch size 16"),
        ((224, 100), 16, "image width 100 is not divisible by patch size 16"),
        ((32, 30), (8, 7), "image width 30 is not divisible by patch size 7"),
        (224, 0, "patch size must be positive"),
        ((0, 32), 8, "image size must be positive"),
    ],
)
def test_grid_size_errors(image_size, patch_size, match):
    with pytest.raises(ValueError, match=match):
        grid_size(image_size, patch_size)


def test_to_2tuple():
    assert to_2tuple(7) == (7, 7)
    assert to_2tuple((3, 5)) == (3, 5)
    assert to_2tuple([3, 5]) == (3, 5)
    for bad in [(1, 2, 3), 2.5, "ab"]:
        with pytest.raises(ValueError, match="pair of ints"):
            to_2tuple(bad)


def test_patchify_errors():
    with pytest.raises(ValueError, match="image height 225 is not divisible by patch size 16"):
        patchify(torch.zeros(1, 3, 225, 224), 16)
    with pytest.raises(ValueError, match="image width 30 is not divisible by patch size 8"):
        patchify(torch.zeros(1, 3, 32, 30), 8)
    with pytest.raises(
        ValueError, match=r"expected a batch of images \(B, C, H, W\).*\(3, 32, 32\)"
    ):
        patchify(torch.zeros(3, 32, 32), 8)


def test_unpatchify_errors():
    with pytest.raises(ValueError, match="needs 4 x 4 = 16 patches, got 15"):
        unpatchify(torch.zeros(1, 15, 48), 8, 32)
    with pytest.raises(
        ValueError, match="feature size 50 is not divisible by patch area 8 x 8 = 64"
    ):
        unpatchify(torch.zeros(1, 16, 50), 8, 32)
    with pytest.raises(ValueError, match="image height 33 is not divisible by patch size 8"):
        unpatchify(torch.zeros(1, 16, 192), 8, (33, 32))
    with pytest.raises(ValueError, match=r"expected patches of shape \(B, N, C\*P\*P\)"):
        unpatchify(torch.zeros(16, 192), 8, 32)
