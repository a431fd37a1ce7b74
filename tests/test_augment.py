"""Augmentation on uint8 batches (vitutils.augment): shapes, that a flip is a flip, that crops stay inside
the padded image, that the random-resized crop is the identity at scale 1, and that all of it is seeded."""

import pytest
import torch
import torch.nn.functional as F

from vitutils import augment


def _batch(B=16, C=3, H=32, W=32, seed=0) -> torch.Tensor:
    return torch.randint(
        0, 256, (B, C, H, W), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


def _gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_flip_is_a_mirror_image_or_nothing():
    x = _batch(64)
    out = augment.random_horizontal_flip(x, _gen())
    assert out.shape == x.shape and out.dtype == torch.uint8
    flipped = [bool(torch.equal(o, i.flip(-1))) for o, i in zip(out, x, strict=True)]
    kept = [bool(torch.equal(o, i)) for o, i in zip(out, x, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # exactly one of the two
    assert (
        16 <= sum(flipped) <= 48
    )  # about half of 64 (binomial, p = 0.5: this fails ~1e-4 of seeds)
    assert torch.equal(augment.random_horizontal_flip(x, _gen(), p=1.0), x.flip(-1))
    assert torch.equal(augment.random_horizontal_flip(x, _gen(), p=0.0), x)


@pytest.mark.parametrize("padding", [1, 4])
@pytest.mark.parametrize("size", [(32, 32), (8, 12)])
def test_crop_is_a_window_of_the_padded_image(padding, size):
    x = _batch(12, H=size[0], W=size[1])
    out = augment.random_crop(x, _gen(3), padding=padding)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x, (padding,) * 4)
    H, W = size
    offsets = []
    for o, p in zip(out, padded, strict=True):
        found = [
            (dy, dx)
            for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)
            if torch.equal(o, p[:, dy : dy + H, dx : dx + W])
        ]
        assert found, "a crop is not a window inside the padded image"
        offsets.append(found[0])
    assert len(set(offsets)) > 1  # the offset varies across the batch


def test_crop_offsets_cover_the_whole_range():
    x = torch.zeros(2000, 1, 4, 4, dtype=torch.uint8)
    x[:, :, 0, 0] = 255  # a marker pixel: where it lands gives the offset
    out = augment.random_crop(x, _gen(), padding=2)
    positions = {tuple(p) for p in (out[:, 0] == 255).nonzero()[:, 1:].tolist()}
    # marker at (2 - dy, 2 - dx) when it is inside: dy, dx ∈ {0, 1, 2} keep it, all 9 appear
    assert positions == {(r, c) for r in range(3) for c in range(3)}
    # and 16 of the 25 offsets hide it: about 16/25 of the crops show no marker
    hidden = (out.flatten(1) == 0).all(1).float().mean().item()
    assert abs(hidden - 16 / 25) < 0.05


def test_random_resized_crop_at_full_scale_is_the_identity():
    x = _batch(8)
    out = augment.random_resized_crop(x, _gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.equal(out, x)


def test_random_resized_crop_zooms_into_the_image():
    # A constant image stays constant whatever the box; an image with a bright centre and dark border
    # gets brighter on average, since every box lies inside the image.
    flat = torch.full((4, 3, 32, 32), 77, dtype=torch.uint8)
    assert torch.equal(augment.random_resized_crop(flat, _gen(), scale=(0.3, 0.6)), flat)
    x = torch.zeros(64, 1, 32, 32, dtype=torch.uint8)
    x[:, :, 8:24, 8:24] = 200
    out = augment.random_resized_crop(x, _gen(), scale=(0.25, 0.5), ratio=(0.9, 1.1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert out.float().mean() > x.float().mean() + 20


@pytest.mark.parametrize("name", ["flip", "crop", "rrc", "batch"])
def test_transforms_are_seeded(name):
    fn = {
        "flip": augment.random_horizontal_flip,
        "crop": augment.random_crop,
        "rrc": augment.random_resized_crop,
        "batch": lambda x, g: augment.augment_batch(
            x, g, crop_padding=4, flip=True, rrc_scale=(0.5, 1)
        ),
    }[name]
    x = _batch(32)
    assert torch.equal(fn(x, _gen(7)), fn(x, _gen(7)))
    assert not torch.equal(fn(x, _gen(7)), fn(x, _gen(8)))


def test_normalize_uint8_is_the_formula():
    x = _batch(4)
    mean, std = torch.tensor(augment.CIFAR10_MEAN), torch.tensor(augment.CIFAR10_STD)
    expected = (x.float() / 255 - mean[:, None, None]) / std[:, None, None]
    torch.testing.assert_close(augment.normalize_uint8(x), expected, atol=1e-5, rtol=0)


def test_bad_input_is_named():
    with pytest.raises(
        ValueError, match=r"expected a uint8 batch \(B, C, H, W\), got dtype torch.float32"
    ):
        augment.random_crop(torch.zeros(2, 3, 8, 8), _gen())
    with pytest.raises(ValueError, match="padding must be >= 0"):
        augment.random_crop(_batch(2), _gen(), padding=-1)
    with pytest.raises(ValueError, match="scale"):
        augment.random_resized_crop(_batch(2), _gen(), scale=(0.9, 0.1))
    with pytest.raises(ValueError, match="one mean and std per channel"):
        augment.normalize_uint8(_batch(2, C=1))
