"""Tests for chapter 4's attention on a real photo before training: hand-made patch features as queries and
keys (`vitutils.attention.patch_features`, `patch_attention`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vitutils.attention import PATCH_FEATURE_KINDS, patch_attention, patch_features


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(("h", "w", "p"), [(32, 48, 16), (24, 40, 8)])
def test_patch_features_shapes_and_normalisation(h, w, p):
    image = _image(h, w)
    N = (h // p) * (w // p)
    pixels = patch_features(image, p, "pixels")
    colour = patch_features(image, p, "colour")
    texture = patch_features(image, p, "texture")
    assert pixels.shape == (N, 3 * p * p)
    assert colour.shape == (N, 3)
    assert texture.shape == (N, p * p)
    torch.testing.assert_close(pixels.mean(0), torch.zeros(3 * p * p), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        pixels.std(0, unbiased=False), torch.ones(3 * p * p), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(texture.norm(dim=1), torch.ones(N))
    torch.testing.assert_close(texture.mean(dim=1), torch.zeros(N), atol=1e-6, rtol=0)

    # colour against numpy: mean RGB of each patch in raster order, then standardised
    blocks = image.reshape(h // p, p, w // p, p, 3).mean(axis=(1, 3)).reshape(N, 3) / 255
    expected = (blocks - blocks.mean(0)) / blocks.std(0)
    np.testing.assert_allclose(colour.numpy(), expected, atol=1e-4)


def test_patch_features_texture_is_grey_and_centred():
    image = _image(16, 32)
    grey = image[:, :16].astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255  # first patch
    grey = (grey - grey.mean()).reshape(-1)
    np.testing.assert_allclose(
        patch_features(image, 16, "texture")[0], grey / np.linalg.norm(grey), atol=1e-5
    )
    flat = np.full((16, 16, 3), 128, np.uint8)
    assert torch.equal(patch_features(flat, 8, "texture"), torch.zeros(4, 64))  # no texture, no NaN


def test_patch_features_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind 'edges'"):
        patch_features(_image(16, 16), 8, "edges")


@pytest.mark.parametrize("kind", PATCH_FEATURE_KINDS)
@pytest.mark.parametrize("temperature", [0.05, 1.0, 20.0])
def test_patch_attention_is_softmax_of_scaled_dot_products(kind, temperature):
    image = _image(32, 48)
    weights = patch_attention(image, 16, kind=kind, temperature=temperature)
    assert weights.shape == (6, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(6))
    f = patch_features(image, 16, kind)
    expected = torch.softmax(f @ f.T / (math.sqrt(f.shape[1]) * temperature), dim=-1)
    torch.testing.assert_close(weights, expected)


def test_cold_texture_attention_looks_at_itself():
    image = _image(64, 96, seed=1)  # noise: every patch has its own texture
    hot = patch_attention(image, 16, kind="texture", temperature=10.0)
    cold = patch_attention(image, 16, kind="texture", temperature=0.005)
    assert (cold.diagonal() > 0.99).all()
    assert (hot.diagonal() < 0.1).all()  # at a high temperature the weights are near uniform (1/24)


def test_patch_attention_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature must be positive"):
        patch_attention(_image(16, 16), 8, temperature=0)


def test_patch_features_accept_tensors_and_grey_images():
    image = _image(32, 32)
    as_tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255  # (3, H, W) in [0, 1]
    torch.testing.assert_close(patch_features(as_tensor, 16, "pixels"), patch_features(image, 16))
    grey = image[..., 0]  # (H, W): one channel, texture uses it as it is
    assert patch_features(grey, 16, "texture").shape == (4, 256)
    assert patch_features(grey, 16, "colour").shape == (4, 1)
