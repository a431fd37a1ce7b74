"""Tests for vitutils.vit: timm's state-dict layout, parameter counts, transformers' ViT logits."""

import dataclasses
import inspect

import pytest
import torch
from torch import nn
from transformers import ViTConfig as HFViTConfig
from transformers import ViTForImageClassification, ViTModel

from vitutils.attention import Attention, record_attention, set_fused_attn
from vitutils.block import DropPath
from vitutils.positional import posemb_sincos_2d
from vitutils.pretrained import hf_naming, hf_to_timm_state_dict, timm_to_hf_state_dict
from vitutils.vit import PRESETS, ViT, ViTConfig, count_parameters, vit_config, vit_from_preset


def _pair(x):
    return (x, x) if isinstance(x, int) else tuple(x)


def timm_state_dict_shapes(cfg: ViTConfig) -> dict[str, tuple[int, ...]]:
    """The keys and shapes of timm's VisionTransformer for `cfg`, in timm's order.

    Written from timm's naming rules, independently of vitutils (timm itself is not installed).
    """
    (H, W), (ph, pw) = _pair(cfg.img_size), _pair(cfg.patch_size)
    D, C, hidden = cfg.embed_dim, cfg.in_chans, int(cfg.embed_dim * cfg.mlp_ratio)
    N = (H // ph) * (W // pw)
    shapes: dict[str, tuple[int, ...]] = {}
    if cfg.class_token:
        shapes["cls_token"] = (1, 1, D)
    if cfg.pos_embed != "none":
        shapes["pos_embed"] = (1, N + int(cfg.class_token), D)
    shapes["patch_embed.proj.weight"] = (D, C, ph, pw)
    shapes["patch_embed.proj.bias"] = (D,)
    for i in range(cfg.depth):
        b = f"blocks.{i}."
        shapes[b + "norm1.weight"] = shapes[b + "norm1.bias"] = (D,)
        shapes[b + "attn.qkv.weight"] = (3 * D, D)
        if cfg.qkv_bias:
            shapes[b + "attn.qkv.bias"] = (3 * D,)
        shapes[b + "attn.proj.weight"] = (D, D)
        shapes[b + "attn.proj.bias"] = (D,)
        shapes[b + "norm2.weight"] = shapes[b + "norm2.bias"] = (D,)
        shapes[b + "mlp.fc1.weight"] = (hidden, D)
        shapes[b + "mlp.fc1.bias"] = (hidden,)
        shapes[b + "mlp.fc2.weight"] = (D, hidden)
        shapes[b + "mlp.fc2.bias"] = (D,)
    norm = "fc_norm" if cfg.global_pool == "avg" else "norm"
    shapes[f"{norm}.weight"] = shapes[f"{norm}.bias"] = (D,)
    features = D
    if cfg.representation_size:
        features = cfg.representation_size
        shapes["pre_logits.fc.weight"] = (features, D)
        shapes["pre_logits.fc.bias"] = (features,)
    if cfg.num_classes > 0:
        shapes["head.weight"] = (cfg.num_classes, features)
        shapes["head.bias"] = (cfg.num_classes,)
    return shapes


def _meta_model(cfg: ViTConfig) -> ViT:
    with torch.device("meta"):
        return ViT.from_config(cfg)


VARIANTS = [
    dict(global_pool="avg"),
    dict(global_pool="avg", class_token=False),
    dict(representation_size=768),
    dict(num_classes=0),
    dict(qkv_bias=False, img_size=(224, 160), patch_size=(16, 32)),
    dict(pos_embed="none", num_classes=21843),
]


TIMM_PRESETS = [
    name for name, cfg in PRESETS.items() if cfg.attn_type == "full"
]  # timm has no axial


@pytest.mark.parametrize("name", TIMM_PRESETS)
def test_presets_have_timms_state_dict(name):
    cfg = PRESETS[name]
    model = _meta_model(cfg)
    expected = timm_state_dict_shapes(cfg)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert list(model.state_dict()) == list(expected)  # same order as timm, too
    # A checkpoint with exactly these keys and shapes loads strictly.
    with torch.device("meta"):
        checkpoint = {k: torch.empty(shape) for k, shape in expected.items()}
    model.load_state_dict(checkpoint, strict=True, assign=True)


@pytest.mark.parametrize("overrides", VARIANTS)
def test_variants_have_timms_state_dict(overrides):
    cfg = vit_config("vit_base_patch16_224", **overrides)
    model = _meta_model(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == timm_state_dict_shapes(cfg)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vit_base_patch16_224", 86_567_656),
        ("vit_large_patch16_224", 304_326_632),
        ("vit_huge_patch14_224", 632_045_800),
    ],
)
def test_parameter_counts_match_timm(name, expected):
    assert count_parameters(name) == expected
    assert count_parameters(_meta_model(PRESETS[name])) == expected


def test_parameter_count_follows_the_shapes():
    for name in TIMM_PRESETS:
        cfg = PRESETS[name]
        from_shapes = sum(torch.Size(s).numel() for s in timm_state_dict_shapes(cfg).values())
        assert count_parameters(name) == from_shapes, name
    assert count_parameters("vit_base_patch16_224", num_classes=10) == 86_567_656 - 990 * 769


def test_huge_preset_hyper_parameters():
    cfg = vit_config("vit_huge_patch14_224")
    assert (cfg.depth, cfg.embed_dim, cfg.num_heads, cfg.patch_size) == (32, 1280, 16, 14)
    assert int(cfg.embed_dim * cfg.mlp_ratio) == 5120
    tiny = vit_config("vit_cifar_tiny")
    assert (tiny.img_size, tiny.patch_size, tiny.embed_dim, tiny.depth, tiny.num_heads) == (
        32,
        4,
        192,
        6,
        3,
    )
    assert tiny.num_classes == 10


def test_every_config_field_is_a_constructor_argument():
    names = [f.name for f in dataclasses.fields(ViTConfig)]
    assert ViT.from_config(vit_config("vit_cifar_tiny", depth=1)).num_classes == 10
    with pytest.raises(ValueError, match="unknown ViTConfig field"):
        vit_config("vit_cifar_tiny", depths=3)
    with pytest.raises(ValueError, match=r"unknown ViTConfig field\(s\) \['embed_dimm'\]"):
        ViT(embed_dimm=64)
    assert "fused_attn" in names and "representation_size" in names
    # The constructor's documented signature is the dataclass, field for field, default for default.
    params = list(inspect.signature(ViT).parameters.values())
    assert params[0].name == "config" and params[0].kind is inspect.Parameter.POSITIONAL_ONLY
    assert [(p.name, p.default) for p in params[1:]] == [
        (f.name, f.default) for f in dataclasses.fields(ViTConfig)
    ]


def test_config_keywords_and_config_object_build_the_same_model():
    cfg = vit_config("vit_cifar_tiny", depth=2, drop_rate=0.1, representation_size=32)
    by_config = ViT(cfg)
    by_keywords = ViT(**dataclasses.asdict(cfg))
    mixed = ViT(vit_config("vit_cifar_tiny"), depth=2, drop_rate=0.1, representation_size=32)
    assert by_config.config == by_keywords.config == mixed.config == cfg
    assert repr(by_config) == repr(by_keywords) == repr(mixed)
    assert ViT().config == ViTConfig()


# For every field of ViTConfig, a second valid value. Building a model with it must change the model:
# otherwise the field is read by nobody (the constructor and the config have drifted apart). A field added
# to ViTConfig without a row here fails the first assertion.
_BASE = dict(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=5)
_OTHER_VALUE = {
    "img_size": 48,
    "patch_size": 4,
    "in_chans": 1,
    "num_classes": 3,
    "global_pool": "avg",
    "embed_dim": 32,
    "depth": 3,
    "num_heads": 4,
    "mlp_ratio": 2.0,
    "qkv_bias": False,
    "class_token": False,
    "pos_embed": "sincos",
    "drop_rate": 0.1,
    "pos_drop_rate": 0.1,
    "patch_drop_rate": 0.5,
    "proj_drop_rate": 0.1,
    "attn_drop_rate": 0.1,
    "drop_path_rate": 0.1,
    "representation_size": 8,
    "fused_attn": False,
    "attn_type": "axial",
    "sum_axial_out": True,
}
# Fields whose second value needs other fields changed too: axial attention has no class token.
_AXIAL = {"class_token": False, "global_pool": "avg"}
_BASE_FOR = {
    "class_token": {"global_pool": "avg"},
    "attn_type": _AXIAL,
    "sum_axial_out": {**_AXIAL, "attn_type": "axial"},
}


def _fingerprint(model: nn.Module) -> tuple:
    # The module tree with every hyper-parameter its repr shows (dropout p, drop_prob, fused_attn, …),
    # and every tensor's name, shape and kind (parameter or buffer).
    params = {k: tuple(v.shape) for k, v in model.named_parameters()}
    buffers = {k: tuple(v.shape) for k, v in model.named_buffers()}
    return repr(model), params, buffers


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(ViTConfig)])
def test_every_config_field_reaches_the_model(field):
    assert set(_OTHER_VALUE) == {f.name for f in dataclasses.fields(ViTConfig)}
    base = {**_BASE, **_BASE_FOR.get(field, {})}
    changed = {**base, field: _OTHER_VALUE[field]}
    with torch.device("meta"):
        assert _fingerprint(ViT(**changed)) != _fingerprint(ViT(**base)), field


def _tiny_vit(**overrides) -> ViT:
    return ViT(img_size=32, patch_size=8, embed_dim=16, num_heads=2, **{"depth": 2, **overrides})


def test_dropout_follows_timm():
    """Five rates with timm's names, meanings and module paths (timm's VisionTransformer: `drop_rate` is the
    head's dropout, `pos_drop_rate` follows the position embedding, `proj_drop_rate` acts after attn.proj
    and both MLP layers, `attn_drop_rate` on the attention weights, `drop_path_rate` the last block's
    stochastic depth). Written from timm's source; timm itself cannot be imported here."""
    rates = dict(
        drop_rate=0.11,
        pos_drop_rate=0.22,
        proj_drop_rate=0.33,
        attn_drop_rate=0.44,
        drop_path_rate=0.5,
    )
    depth = 3
    model = _tiny_vit(depth=depth, **rates)
    expected = {"pos_drop": 0.22, "head_drop": 0.11}
    for i in range(depth):
        expected |= {
            f"blocks.{i}.attn.attn_drop": 0.44,
            f"blocks.{i}.attn.proj_drop": 0.33,
            f"blocks.{i}.mlp.drop1": 0.33,
            f"blocks.{i}.mlp.drop2": 0.33,
        }
    dropouts = {n: m.p for n, m in model.named_modules() if isinstance(m, nn.Dropout)}
    assert dropouts == pytest.approx(expected)  # every dropout is one of timm's, at timm's rate
    drop_paths = {n: m.drop_prob for n, m in model.named_modules() if isinstance(m, DropPath)}
    linear = [0.0, 0.25, 0.5]  # timm: torch.linspace(0, drop_path_rate, depth); 0 → nn.Identity
    assert drop_paths == pytest.approx(
        {f"blocks.{i}.drop_path{j}": linear[i] for i in (1, 2) for j in (1, 2)}
    )
    # The state dict does not depend on any rate: dropout has no parameters.
    plain = _tiny_vit(depth=depth)
    assert list(model.state_dict()) == list(plain.state_dict())


def _active(model: nn.Module, x: torch.Tensor) -> set[str]:
    """Names of the dropout modules that changed their input in one training-mode forward pass."""
    changed: set[str] = set()
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out, name=name: (
                changed.add(name) if not torch.equal(inp[0], out) else None
            )
        )
        for name, m in model.named_modules()
        if isinstance(m, nn.Dropout)
    ]
    model.train()(x)
    for h in hooks:
        h.remove()
    return changed


@pytest.mark.parametrize(
    ("rate", "where"),
    [
        ("drop_rate", {"head_drop"}),
        ("pos_drop_rate", {"pos_drop"}),
        ("proj_drop_rate", {"attn.proj_drop", "mlp.drop1", "mlp.drop2"}),
        ("attn_drop_rate", {"attn.attn_drop"}),
    ],
)
def test_each_dropout_rate_acts_only_where_timm_puts_it(rate, where):
    torch.manual_seed(0)
    model = _tiny_vit(**{rate: 0.5})
    set_fused_attn(model, False)  # attention dropout on the teaching path runs through attn_drop
    active = _active(model, torch.randn(4, 3, 32, 32))
    assert {name.split(".", 2)[-1] for name in active} == where
    assert all(name.startswith("blocks.") for name in active) == (
        rate in ("proj_drop_rate", "attn_drop_rate")
    )


def test_head_dropout_sits_after_pre_logits_before_the_head():
    model = _tiny_vit(depth=1, drop_rate=0.5, representation_size=8, num_classes=3).train()
    seen = []
    model.pre_logits.register_forward_hook(lambda m, i, o: seen.append("pre_logits"))
    model.head_drop.register_forward_hook(lambda m, i, o: seen.append("head_drop"))
    model.head.register_forward_hook(lambda m, i, o: seen.append("head"))
    model(torch.randn(2, 3, 32, 32))
    assert seen == ["pre_logits", "head_drop", "head"]
    features = model.forward_head(
        model.forward_features(torch.randn(2, 3, 32, 32)), pre_logits=True
    )
    assert features.shape == (2, 8)  # timm: pre_logits=True returns the features after head_drop


def test_bad_dropout_rates_raise():
    with pytest.raises(ValueError, match=r"proj_drop_rate must be in \[0, 1\), got 1.5"):
        ViTConfig(proj_drop_rate=1.5)
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\], got -0.1"):
        ViTConfig(drop_path_rate=-0.1)


def _hf_config(image_size, **kwargs):
    return HFViTConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        image_size=image_size,
        patch_size=8,
        num_labels=7,
        layer_norm_eps=1e-6,  # timm's eps, so that the comparison is exact
        attn_implementation="sdpa",
        **kwargs,
    )


def _small_vit(image_size, **kwargs):
    return ViT(
        img_size=image_size,
        patch_size=8,
        num_classes=7,
        embed_dim=64,
        depth=2,
        num_heads=4,
        **kwargs,
    )


@pytest.mark.parametrize("image_size", [32, (32, 48), (16, 40)])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("fused", [True, False])
def test_logits_match_transformers(image_size, B, fused):
    torch.manual_seed(0)
    hf = ViTForImageClassification(_hf_config(image_size)).eval()
    ours = _small_vit(image_size, fused_attn=fused).eval()
    ours.load_state_dict(hf_to_timm_state_dict(hf.state_dict()), strict=True)
    H, W = _pair(image_size)
    x = torch.randn(B, 3, H, W)
    with torch.no_grad():
        expected = hf(pixel_values=x).logits
        logits = ours(x)
    assert logits.shape == (B, 7)
    assert expected.abs().max() > 0.1  # not a trivially small output
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


def test_our_weights_run_in_transformers():
    torch.manual_seed(1)
    ours = _small_vit(32).eval()
    with torch.no_grad():  # non-trivial norms and biases, so that all of them are compared
        for name, p in ours.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.normal_(std=0.5)
    hf = ViTForImageClassification(_hf_config(32)).eval()
    sd = timm_to_hf_state_dict(ours.state_dict(), naming=hf_naming(hf.state_dict()))
    hf.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(pixel_values=x).logits, atol=1e-4, rtol=0)


def test_representation_head_is_transformers_pooler():
    torch.manual_seed(0)
    hf = ViTModel(_hf_config(32), add_pooling_layer=True).eval()
    ours = _small_vit(32, representation_size=64).eval()
    ours.reset_classifier(0)
    ours.load_state_dict(hf_to_timm_state_dict(hf.state_dict()), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = hf(pixel_values=x)
        torch.testing.assert_close(
            ours.forward_features(x), out.last_hidden_state, atol=1e-4, rtol=0
        )
        torch.testing.assert_close(ours(x), out.pooler_output, atol=1e-4, rtol=0)


def test_representation_size_head():
    model = _small_vit(32, representation_size=20)
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_head(model.forward_features(x), pre_logits=True)
    assert features.shape == (2, 20)
    assert features.abs().max() < 1  # tanh
    assert model.head.in_features == 20
    assert isinstance(model.pre_logits.act, nn.Tanh)
    assert isinstance(_small_vit(32).pre_logits, nn.Identity)


@pytest.mark.parametrize(
    ("kwargs", "T"),
    [
        (dict(), 17),
        (dict(global_pool="avg"), 17),
        (dict(global_pool="avg", class_token=False), 16),
        (dict(pos_embed="sincos"), 17),
        (dict(pos_embed="none"), 17),
    ],
)
@pytest.mark.parametrize("B", [1, 2])
def test_forward_shapes(kwargs, T, B):
    model = _small_vit(32, **kwargs)
    x = torch.randn(B, 3, 32, 32)
    tokens = model.forward_features(x)
    assert tokens.shape == (B, T, 64)
    assert model.forward_head(tokens).shape == (B, 7)
    assert model.forward_head(tokens, pre_logits=True).shape == (B, 64)
    torch.testing.assert_close(model(x), model.forward_head(tokens), atol=0, rtol=0)


def test_average_pooling_uses_fc_norm_on_patch_tokens():
    torch.manual_seed(0)
    model = _small_vit(32, global_pool="avg").eval()
    assert isinstance(model.norm, nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    tokens = model.forward_features(x)
    pooled = model.fc_norm(tokens[:, 1:].mean(dim=1))
    torch.testing.assert_close(model(x), model.head(pooled), atol=1e-6, rtol=0)


def test_sincos_position_embedding_is_fixed():
    """pos_embed="sincos" is Simple ViT's fixed 2D sin-cos (big_vision layout), the class token's row zero."""
    model = _small_vit((32, 48), pos_embed="sincos")
    expected = torch.cat([torch.zeros(1, 64), posemb_sincos_2d(4, 6, 64)])[None]
    assert torch.equal(model.pos_embed, expected)
    assert "pos_embed" in model.state_dict()
    assert "pos_embed" not in dict(model.named_parameters())
    learned = _small_vit((32, 48))
    assert count_parameters(learned) - count_parameters(model) == 25 * 64
    with pytest.raises(ValueError, match="multiple of 4"):
        ViT(img_size=32, patch_size=8, embed_dim=18, num_heads=3, depth=1, pos_embed="sincos")


def test_fused_and_teaching_paths_agree():
    torch.manual_seed(0)
    model = _small_vit((24, 40)).eval()
    x = torch.randn(2, 3, 24, 40)
    fused = model(x)
    set_fused_attn(model, False)
    assert not any(m.fused_attn for m in model.modules() if isinstance(m, Attention))
    torch.testing.assert_close(model(x), fused, atol=1e-5, rtol=0)
    set_fused_attn(model, True)
    assert all(m.fused_attn for m in model.modules() if isinstance(m, Attention))
    torch.testing.assert_close(model(x), fused, atol=0, rtol=0)
    with pytest.raises(ValueError, match="contains no vitutils Attention"):
        set_fused_attn(nn.Linear(2, 2), False)


def test_record_attention_on_a_vit():
    model = _small_vit((32, 48)).eval()
    with record_attention(model) as attn:
        model(torch.randn(1, 3, 32, 48))
    assert list(attn) == ["blocks.0.attn", "blocks.1.attn"]
    assert all(w.shape == (1, 4, 25, 25) for w in attn.values())


def test_initialisation_like_timm():
    torch.manual_seed(0)
    model = vit_from_preset("vit_small_patch16_224", depth=2)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            assert 0.018 < module.weight.std().item() < 0.022, name
            assert abs(module.weight.mean().item()) < 0.002, name
            assert (module.bias == 0).all(), name
        if isinstance(module, nn.LayerNorm):
            assert (module.weight == 1).all() and (module.bias == 0).all(), name
    assert 0.018 < model.pos_embed.std().item() < 0.022
    assert model.cls_token.abs().max() < 1e-5


def test_drop_path_rate_increases_linearly_with_depth():
    model = ViT(img_size=32, patch_size=8, embed_dim=16, num_heads=2, depth=4, drop_path_rate=0.3)
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for b in model.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert [getattr(b.drop_path2, "drop_prob", 0.0) for b in model.blocks] == rates


def test_reset_classifier():
    model = _small_vit(32)
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert model.config.num_classes == 3
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 64)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(embed_dim=100, num_heads=3), "embed_dim 100 is not divisible by num_heads 3"),
        (dict(img_size=225), "image height 225 is not divisible by patch size 16"),
        (dict(img_size=(224, 200)), "image width 200 is not divisible by patch size 16"),
        (dict(global_pool="max"), "global_pool must be 'token' or 'avg', got 'max'"),
        (dict(class_token=False), "global_pool='token' needs class_token=True"),
        (
            dict(pos_embed="rope"),
            "pos_embed must be 'learn', 'sincos', 'axial' or 'none', got 'rope'",
        ),
        (dict(depth=0), "depth must be at least 1, got 0"),
    ],
)
def test_bad_configurations_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        with torch.device("meta"):
            vit_from_preset("vit_base_patch16_224", **kwargs)


def test_unknown_preset_and_wrong_input():
    with pytest.raises(ValueError, match=r"unknown preset 'vit_gigantic'.*vit_base_patch16_224"):
        vit_config("vit_gigantic")
    with pytest.raises(ValueError, match="unknown preset"):
        count_parameters("vit_gigantic")
    with pytest.raises(ValueError, match="expected images of size 32 x 32"):
        _small_vit(32)(torch.randn(1, 3, 32, 40))
