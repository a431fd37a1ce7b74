"""Tests for vitutils.cost against PyTorch's FLOP counter and the token counts written out by hand."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vitutils import cost, measure
from vitutils.attention import set_fused_attn
from vitutils.cost import PARTS, crossover_image_size, crossover_tokens, forward_flops
from vitutils.vit import ViT, count_parameters, vit_config

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


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "config",
    [
        *CONFIGS.values(),
        vit_config("vit_cifar_tiny", pos_embed="sincos"),  # a buffer, not a parameter
        vit_config("vit_cifar_tiny", pos_embed="none", qkv_bias=False),
        vit_config("vit_huge_patch14_224"),
    ],
)
def test_parameters_sum_to_the_counted_parameters(config):
    parts = cost.parameters(config)
    assert set(parts) == {*PARTS, "tokens and norms"}
    with torch.device("meta"):  # shapes only: ViT-H costs no memory
        model = ViT(config)
    assert sum(parts.values()) == count_parameters(model)


def test_parameters_per_block_are_12d2_plus_13d():
    D = 768
    p = cost.parameters("vit_base_patch16_224", depth=1)
    # qkv and proj: 4D² + 4D, MLP: 8D² + 5D, the block's two LayerNorms: 4D.
    assert p["qkv + proj"] + p["MLP"] + 4 * D == 12 * D**2 + 13 * D


# ----------------------------------------------------------------------------- training FLOPs


@pytest.mark.parametrize("name", ["cifar tiny 48 px", "non-square image", "pre-logits", "patch 8"])
def test_training_flops_equal_the_flop_counter_on_forward_and_backward(name):
    config = CONFIGS[name]
    torch.manual_seed(0)
    model = ViT(config, fused_attn=False).train()
    with FlopCounterMode(display=False) as counter:
        model(_images(config)).sum().backward()  # the image itself needs no gradient
    assert sum(cost.training_flops(config).values()) == counter.get_total_flops()
    forward = forward_flops(config)
    assert cost.training_flops(config)["MLP"] == 3 * forward["MLP"]
    assert cost.training_flops(config)["patch embedding"] == 2 * forward["patch embedding"]


# ----------------------------------------------------------------------------- memory

# Formulas against `measure.peak_memory` (every storage an operator creates, followed until freed).
# Inference: exact. Training, for two or more blocks: within 25 % below and 10 % above (measured: 0.80 to
# 1.02). The formula follows the backward pass block by block; it overestimates where the parameters'
# gradients weigh in, since the backward pass frees activations while it makes them (with one block and
# tiny images, by 30 %).
MEMORY_CONFIGS = {
    "cifar tiny": vit_config("vit_cifar_tiny", depth=2),
    "cifar tiny 48 px": vit_config("vit_cifar_tiny", img_size=48, depth=2),
    "non-square image": vit_config("vit_cifar_tiny", img_size=(32, 48), depth=3),
    "long sequence": vit_config("vit_cifar_tiny", img_size=128, depth=2, embed_dim=64, num_heads=4),
    "long, mlp ratio 2": vit_config(
        "vit_cifar_tiny", img_size=160, depth=3, embed_dim=48, num_heads=3, mlp_ratio=2.0
    ),
    "one block, mlp ratio 2": vit_config("vit_cifar_tiny", depth=1, mlp_ratio=2.0),
    "mlp ratio 1": vit_config("vit_cifar_tiny", depth=3, mlp_ratio=1.0),
}


def _measured(config, *, fused, training, batch=2):
    torch.manual_seed(0)
    model = ViT(config, fused_attn=fused).train(training)
    images = _images(config, batch=batch)
    if training:
        return measure.peak_memory(lambda: model(images).sum().backward()).peak_bytes
    with torch.no_grad():
        return measure.peak_memory(lambda: model(images)).peak_bytes


@pytest.mark.parametrize("fused", [False, True], ids=["teaching", "fused"])
@pytest.mark.parametrize("name", list(MEMORY_CONFIGS))
def test_inference_memory_formula_equals_the_measured_peak(name, fused):
    config = MEMORY_CONFIGS[name]
    formula = sum(cost.activation_memory(config, batch_size=2, fused=fused).values())
    measured = _measured(config, fused=fused, training=False)
    assert measured == pytest.approx(formula, rel=0.01)


@pytest.mark.parametrize("fused", [False, True], ids=["teaching", "fused"])
@pytest.mark.parametrize("name", [n for n in MEMORY_CONFIGS if MEMORY_CONFIGS[n].depth > 1])
def test_training_memory_formula_against_the_measured_peak(name, fused):
    config = MEMORY_CONFIGS[name]
    need = cost.memory(config, batch_size=2, fused=fused, training=True)
    # The parameters existed before and AdamW's moments are not made by forward and backward.
    formula = sum(need.values()) - need["parameters"] - need["AdamW moments"]
    ratio = _measured(config, fused=fused, training=True) / formula
    assert 0.75 <= ratio <= 1.1


@pytest.mark.parametrize("fused", [False, True], ids=["teaching", "fused"])
def test_saved_activations_per_block(fused):
    # What autograd keeps after the forward pass: (8D + 2H + 4)·T per block, the h × T × T softmax output
    # on the teaching path (h·T log-sum-exp values on the fused one), 2·T·D after the last block.
    config = MEMORY_CONFIGS["long sequence"]
    T, D, h, L, B = cost.num_tokens(config), 64, 4, 2, 2
    torch.manual_seed(0)
    model = ViT(config, fused_attn=fused).train()
    images = _images(config, batch=B)
    tracker = measure._StorageTracker()
    with tracker:
        logits = model(images)
    by_hand = (
        4 * B * (L * (T * (8 * D + 2 * 4 * D + 4) + (h * T if fused else h * T * T)) + 2 * T * D)
    )
    assert tracker.live - logits.untyped_storage().nbytes() == pytest.approx(by_hand, rel=0.01)
    transient = 4 * B * (4 * T * D if fused else 2 * h * T * T)  # gradients in flight at the peak
    formula = sum(cost.activation_memory(config, batch_size=B, fused=fused, training=True).values())
    assert formula - transient == by_hand


def test_teaching_attention_holds_two_t_by_t_tensors_at_its_peak():
    config = MEMORY_CONFIGS["long sequence"]
    T, h = cost.num_tokens(config), 4
    teaching = cost.activation_memory(config, fused=False)
    assert teaching[cost.ATTENTION_WEIGHTS] == 4 * 2 * h * T * T  # logits and softmax, float32
    assert cost.activation_memory(config, fused=True)[cost.ATTENTION_WEIGHTS] == 0
    measured = _measured(config, fused=False, training=False, batch=1)
    fused = _measured(config, fused=True, training=False, batch=1)
    assert measured - fused == pytest.approx(sum(teaching.values()) - 4 * 12 * T * 64, rel=0.01)


def test_memory_parts():
    inference = cost.memory("vit_base_patch16_224")
    training = cost.memory("vit_base_patch16_224", training=True)
    n = 4 * count_parameters("vit_base_patch16_224")
    assert inference["parameters"] == training["parameters"] == n
    assert training["AdamW moments"] == 2 * n
    assert "gradients" not in inference
    # At 224 px the peak is the first block's backward: every gradient but the embeddings' (made last),
    # one block's activations. At 1024 px it is the last block's backward: the head's and one block's
    # gradients, every block's activations.
    p = cost.parameters("vit_base_patch16_224")
    embeddings = (
        p["patch embedding"] + 768 + 197 * 768
    )  # with the class token and position embedding
    assert training["gradients"] == n - 4 * embeddings
    assert (
        training[cost.ATTENTION_WEIGHTS] == 0
    )  # the fused path (the default) saves no T × T matrix
    large = cost.memory("vit_base_patch16_224", img_size=1024, training=True, fused=False)
    block = 4 * (12 * 768**2 + 13 * 768)
    assert large["gradients"] == block + 4 * (
        cost.parameters("vit_base_patch16_224")["head"] + 2 * 768
    )
    T = cost.num_tokens("vit_base_patch16_224", img_size=1024)
    assert large[cost.ATTENTION_WEIGHTS] == 4 * (12 * 12 * T * T + 2 * 12 * T * T)
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        cost.memory("vit_base_patch16_224", batch_size=0)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("fused", [False, True])
def test_largest_image_size_is_the_last_that_fits(training, fused):
    budget = 2 * 2**30
    side = cost.largest_image_size("vit_base_patch16_224", budget, training=training, fused=fused)
    assert side % 16 == 0 and side > 0

    def need(s):
        m = cost.memory("vit_base_patch16_224", img_size=s, training=training, fused=fused)
        return sum(m.values())

    assert need(side) <= budget < need(side + 16)
    assert cost.largest_image_size("vit_base_patch16_224", 1e6) == 0  # not even the weights fit
    bigger = cost.largest_image_size(
        "vit_base_patch16_224", 4 * budget, training=training, fused=fused
    )
    assert bigger > side


def test_fused_attention_moves_the_memory_wall():
    G = 2**30
    explicit = cost.largest_image_size("vit_base_patch16_224", 16 * G, fused=False)
    fused = cost.largest_image_size("vit_base_patch16_224", 16 * G, fused=True)
    assert fused > 4 * explicit
