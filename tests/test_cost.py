"""Tests for vitutils.cost against PyTorch's FLOP counter and the token counts written out by hand."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vitutils.attention import set_fused_attn
from vitutils.cost import PARTS, crossover_image_size, crossover_tokens, forward_flops
from vitutils.vit import ViT, vit_config

ATTENTION = "attention (QKᵀ, AV)"


def counted_flops(model: torch.nn.Module, images: torch.Tensor) -> tuple[dict[str, int], int]:
    """FlopCounterMode's FLOPs per part of the model (as chapter 6 attributes them) and in total.

    `get_flop_counts()` maps module names qualified by the root's class name ("ViT.blocks.0.attn.qkv")
    to {op: FLOPs}; a parent's count includes its children's, so each part is read at one level only.
    """
    with FlopCounterMode(display=False) as counter:
        model(images)
    counts = {
        name: sum(ops.values())
        for name, ops in counter.get_flop_counts().items()
        if name.startswith("ViT.")
    }

    def total(suffix: str) -> int:
        return sum(flops for name, flops in counts.items() if name.endswith(suffix))

    qkv_proj = total(".attn.qkv") + total(".attn.proj")
    parts = {
        "patch embedding": total(".patch_embed"),
        "qkv + proj": qkv_proj,
        ATTENTION: total(".attn") - qkv_proj,  # what the attention module does besides its linears
        "MLP": total(".mlp"),
        "head": total(".head") + total(".pre_logits"),
    }
    return parts, counter.get_total_flops()


CONFIGS = {
    "cifar tiny 48 px": vit_config("vit_cifar_tiny", img_size=48, depth=2),
    "non-square image": vit_config("vit_cifar_tiny", img_size=(32, 48), depth=2),
    "avg pool, no class token": vit_config(
        "vit_cifar_tiny", depth=1, global_pool="avg", class_token=False
    ),
    "pre-logits": vit_config("vit_cifar_tiny", depth=1, representation_size=64),
    "mlp ratio 2": vit_config("vit_cifar_tiny", depth=1, mlp_ratio=2.0),
    "patch 8": vit_config("vit_cifar_tiny", img_size=48, depth=1, patch_size=8),
    "non-square patches, grey": vit_config(
        "vit_cifar_tiny", img_size=(32, 48), patch_size=(4, 8), in_chans=1, depth=1
    ),
    "one patch, no head": vit_config(
        "vit_cifar_tiny", img_size=8, patch_size=8, depth=1, num_classes=0
    ),
}


def _images(config, batch=1, device=None):
    H, W = (
        (config.img_size, config.img_size) if isinstance(config.img_size, int) else config.img_size
    )
    return torch.randn(batch, config.in_chans, H, W, device=device)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_flops_equals_flop_counter(name):
    config = CONFIGS[name]
    torch.manual_seed(0)
    model = ViT(config, fused_attn=False).eval()  # the teaching path: QKᵀ and AV are plain matmuls
    expected = forward_flops(config)
    assert tuple(expected) == PARTS
    parts, total = counted_flops(model, _images(config))
    assert parts == expected
    assert sum(expected.values()) == total  # every counted FLOP belongs to one of the parts
    assert all(
        flops > 0 for part, flops in expected.items() if part != "head" or config.num_classes
    )


def test_forward_flops_is_per_image():
    config = CONFIGS["cifar tiny 48 px"]
    model = ViT(config, fused_attn=False).eval()
    _, total = counted_flops(model, _images(config, batch=3))
    assert total == 3 * sum(forward_flops(config).values())


def test_forward_flops_vit_b16_on_the_meta_device():
    config = vit_config("vit_base_patch16_224")
    with torch.device("meta"):
        model = ViT(config)
    set_fused_attn(model, False)
    parts, total = counted_flops(model, torch.empty(1, 3, 224, 224, device="meta"))
    expected = forward_flops("vit_base_patch16_224")
    assert parts == expected
    assert total == sum(expected.values()) == 35_127_656_448  # ≈ 35.1 GFLOPs (17.6 GMACs)
    # By hand, T = 197, D = 768, L = 12: attention 12 · 4 · 197² · 768.
    assert expected[ATTENTION] == 12 * 4 * 197**2 * 768


def test_forward_flops_accepts_a_preset_name_with_overrides():
    by_name = forward_flops("vit_cifar_tiny", img_size=48, depth=2)
    assert by_name == forward_flops(CONFIGS["cifar tiny 48 px"])
    assert forward_flops(CONFIGS["cifar tiny 48 px"], depth=1)["MLP"] * 2 == by_name["MLP"]


def test_fused_cpu_attention_is_invisible_to_the_flop_counter():
    # In torch 2.13 the fused CPU kernel of F.scaled_dot_product_attention
    # (aten._scaled_dot_product_flash_attention_for_cpu) has no FLOP formula registered, so
    # FlopCounterMode misses QKᵀ and AV on the fused path: its total is lower by exactly the attention
    # part. That is why the book counts on the teaching path. (On the meta device SDPA falls back to its
    # math path, plain matmuls, and is counted in full.) If a later torch counts the CPU kernel, this
    # test fails and says so.
    config = CONFIGS["cifar tiny 48 px"]
    torch.manual_seed(0)
    model = ViT(config, fused_attn=False).eval()
    images = _images(config)
    teaching, teaching_total = counted_flops(model, images)
    set_fused_attn(model, True)
    fused, fused_total = counted_flops(model, images)
    attention = forward_flops(config)[ATTENTION]
    assert attention > 0
    assert fused_total == teaching_total - attention
    assert fused[ATTENTION] == 0
    assert {k: v for k, v in fused.items() if k != ATTENTION} == {
        k: v for k, v in teaching.items() if k != ATTENTION
    }


# ----------------------------------------------------------------------------- crossovers


@pytest.mark.parametrize(
    ("mlp_ratio", "mlp", "linear"), [(4.0, 3072, 4608), (2.0, 1536, 3072), (1.5, 1152, 2688)]
)
def test_crossover_tokens(mlp_ratio, mlp, linear):
    config = vit_config("vit_base_patch16_224", mlp_ratio=mlp_ratio)  # D = 768
    assert crossover_tokens(config) == crossover_tokens(config, against="mlp") == mlp
    assert crossover_tokens(config, against="linear") == linear
    # Reference: a 1-pixel-high image of T - 1 one-pixel patches has exactly T tokens; at T the two
    # costs are equal, one token more and attention costs more.
    for against, T in [("mlp", mlp), ("linear", linear)]:
        for tokens, relation in [(T, "equal"), (T + 1, "above")]:
            f = forward_flops(config, patch_size=1, img_size=(1, tokens - 1))
            linear_flops = f["MLP"] + (f["qkv + proj"] if against == "linear" else 0)
            if relation == "equal":
                assert f[ATTENTION] == linear_flops
            else:
                assert f[ATTENTION] > linear_flops


def test_crossover_tokens_4d_and_6d_for_vit_b():
    assert crossover_tokens("vit_base_patch16_224") == 4 * 768
    assert crossover_tokens("vit_base_patch16_224", against="linear") == 6 * 768


def test_crossover_tokens_rejects_bad_against():
    with pytest.raises(ValueError, match="against must be 'mlp' or 'linear', got 'conv'"):
        crossover_tokens("vit_base_patch16_224", against="conv")
    with pytest.raises(ValueError, match="against must be 'mlp' or 'linear', got 'conv'"):
        crossover_image_size("vit_base_patch16_224", against="conv")


def _attention_exceeds(preset, side, against="mlp"):
    f = forward_flops(preset, img_size=side)
    return f[ATTENTION] > f["MLP"] + (f["qkv + proj"] if against == "linear" else 0)


@pytest.mark.parametrize(
    ("preset", "expected"), [("vit_base_patch16_224", 896), ("vit_tiny_patch16_224", 448)]
)
def test_crossover_image_size_against_mlp(preset, expected):
    assert crossover_image_size(preset) == expected
    assert _attention_exceeds(preset, expected)
    assert not _attention_exceeds(preset, expected - 16)  # 880 for ViT-B: not yet
    # By hand: T = (S/16)² + 1 tokens cross 4D between the two sizes.
    D = vit_config(preset).embed_dim
    assert (expected // 16) ** 2 + 1 > 4 * D >= (expected // 16 - 1) ** 2 + 1


def test_crossover_image_size_against_all_linear_layers():
    side = crossover_image_size("vit_base_patch16_224", against="linear")
    assert side > crossover_image_size("vit_base_patch16_224")
    assert side % 16 == 0
    # Reference: the first multiple of 16 whose token count exceeds 6D = 4608, found by a plain loop.
    expected = next(s for s in range(16, 4096, 16) if (s // 16) ** 2 + 1 > 6 * 768)
    assert side == expected == 1088
    assert _attention_exceeds("vit_base_patch16_224", side, "linear")
    assert not _attention_exceeds("vit_base_patch16_224", side - 16, "linear")


def test_crossover_image_size_rejects_non_square_patches():
    config = vit_config("vit_base_patch16_224", patch_size=(16, 8))
    with pytest.raises(ValueError, match=r"square patches only, got patch size \(16, 8\)"):
        crossover_image_size(config)
