"""The Vision Transformer, assembled from the book's parts (chapter 6).

Implements equations (1)-(4) of Dosovitskiy et al. (2021), §3.1:

    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos                     (patch + position embedding)
    z'_l = MSA(LN(z_{l-1})) + z_{l-1},  z_l = MLP(LN(z'_l)) + z'_l      (L encoder blocks)
    y = LN(z_L^0)                                                        (class token → head)

The module tree, parameter names and shapes are those of timm's `VisionTransformer` (`cls_token`,
`pos_embed`, `patch_embed.proj`, `blocks.i.*`, `norm`, `head`; `fc_norm` for average pooling), so a
timm checkpoint of the same configuration loads with `load_state_dict(..., strict=True)`.
`ViTConfig` and `PRESETS` name the configurations of the paper (Table 1) plus small CIFAR-10 ones.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from vitutils.axial import AxialPositionEmbedding
from vitutils.block import Block, drop_path_rates
from vitutils.embedding import (
    PatchDropout,
    PatchEmbedding,
    init_class_token,
    prepend_class_token,
)
from vitutils.positional import init_learned_pos_embed, posemb_sincos_2d

__all__ = ["PRESETS", "ViT", "ViTConfig", "count_parameters", "vit_config", "vit_from_preset"]


@dataclass(frozen=True)
class ViTConfig:
    """Every hyper-parameter of a `ViT`, with timm's names, meanings and defaults (ViT-B/16, ImageNet-1k).

    The one source of truth: `ViT(config)` and `ViT(**fields)` both build from it, and an invalid
    combination raises ValueError when the config is made. The paper's "dropout" (Appendix B.1: after
    every dense layer except qkv, and after adding the position embedding) is timm's `proj_drop_rate`
    plus `pos_drop_rate`; timm's `drop_rate` is only the dropout before the head.

    Book: chapter 6, "Configurations".
    """

    img_size: int | tuple[int, int] = 224  # input image size in pixels, H = W or (H, W)
    patch_size: int | tuple[int, int] = 16  # patch side P in pixels (or (P_h, P_w))
    in_chans: int = 3  # image channels C
    num_classes: int = 1000  # classes of the linear head; 0 = no head (features only)
    global_pool: Literal["token", "avg"] = "token"  # class token, or mean of the patch tokens
    embed_dim: int = 768  # token width D
    depth: int = 12  # number of encoder blocks L
    num_heads: int = 12  # attention heads h, D divisible by h
    mlp_ratio: float = 4.0  # MLP hidden width / D
    qkv_bias: bool = True  # bias in the fused qkv projection
    class_token: bool = True  # prepend a learnable class token
    pos_embed: Literal["learn", "sincos", "axial", "none"] = (
        "learn"  # learned, fixed 2D sin-cos, learned per row + per column (chapter 10), or none
    )
    drop_rate: float = 0.0  # dropout on the pooled features before the head (`head_drop`)
    pos_drop_rate: float = 0.0  # dropout after adding the position embedding (`pos_drop`)
    patch_drop_rate: float = (
        0.0  # share of patch tokens dropped in training (`patch_drop`, chapter 7)
    )
    proj_drop_rate: float = (
        0.0  # after attn.proj and both MLP layers (`attn.proj_drop`, `mlp.drop1/2`)
    )
    attn_drop_rate: float = 0.0  # dropout on the attention weights (`attn.attn_drop`)
    drop_path_rate: float = (
        0.0  # stochastic depth of the last block (0 for the first, linear between)
    )
    representation_size: int | None = None  # None: linear head; int: tanh pre-logits layer first
    fused_attn: bool = True  # F.scaled_dot_product_attention (True) or the teaching path
    attn_type: Literal["full", "axial"] = "full"  # every token, or its row then its column (ch. 10)
    sum_axial_out: bool = False  # axial: add the row and column steps instead of composing them

    def __post_init__(self) -> None:
        if self.global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {self.global_pool!r}")
        if self.global_pool == "token" and not self.class_token:
            raise ValueError(
                "global_pool='token' needs class_token=True (or use global_pool='avg')"
            )
        if self.pos_embed not in ("learn", "sincos", "axial", "none"):
            raise ValueError(
                f"pos_embed must be 'learn', 'sincos', 'axial' or 'none', got {self.pos_embed!r}"
            )
        if self.attn_type not in ("full", "axial"):
            raise ValueError(f"attn_type must be 'full' or 'axial', got {self.attn_type!r}")
        if self.attn_type == "axial" and (self.class_token or self.patch_drop_rate > 0):
            raise ValueError(
                "attn_type='axial' attends along the rows and columns of the patch grid: it needs "
                "class_token=False (with global_pool='avg') and patch_drop_rate=0"
            )
        if self.sum_axial_out and self.attn_type != "axial":
            raise ValueError("sum_axial_out=True needs attn_type='axial'")
        if self.num_heads <= 0 or self.embed_dim % self.num_heads != 0:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")
        for name in (
            "drop_rate",
            "pos_drop_rate",
            "patch_drop_rate",
            "proj_drop_rate",
            "attn_drop_rate",
        ):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.drop_path_rate <= 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1], got {self.drop_path_rate}")

    def replace(self, **overrides: Any) -> ViTConfig:
        """A copy with some fields replaced; ValueError names any unknown field."""
        fields = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(f"unknown ViTConfig field(s) {unknown}; expected some of {fields}")
        return dataclasses.replace(self, **overrides)


def _imagenet(patch_size: int, embed_dim: int, depth: int, num_heads: int) -> ViTConfig:
    return ViTConfig(patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads)


def _cifar(embed_dim: int, depth: int, num_heads: int) -> ViTConfig:
    return ViTConfig(
        img_size=32,
        patch_size=4,
        num_classes=10,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
    )


# timm's ImageNet models (ViT paper, Table 1, plus DeiT's Tiny and Small) and 32 × 32 CIFAR-10 ones (all
# with timm's state dict except the axial one, which timm does not have).
PRESETS: dict[str, ViTConfig] = {
    "vit_tiny_patch16_224": _imagenet(16, 192, 12, 3),
    "vit_small_patch16_224": _imagenet(16, 384, 12, 6),
    "vit_base_patch16_224": _imagenet(16, 768, 12, 12),
    "vit_base_patch32_224": _imagenet(32, 768, 12, 12),
    "vit_large_patch16_224": _imagenet(16, 1024, 24, 16),
    "vit_huge_patch14_224": _imagenet(14, 1280, 32, 16),
    "vit_cifar_tiny": _cifar(192, 6, 3),
    "vit_cifar_small": _cifar(384, 6, 6),
    # Chapter 10: the tiny one with axial attention; the grid has no room for a class token.
    "vit_cifar_tiny_axial": _cifar(192, 6, 3).replace(
        attn_type="axial", class_token=False, global_pool="avg", pos_embed="axial"
    ),
}


def vit_config(name: str, **overrides) -> ViTConfig:
    """The `ViTConfig` of preset `name` (a key of `PRESETS`), with fields replaced by `overrides`.

    Book: chapter 6, "Configurations".
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)


class ViT(nn.Module):
    """Vision Transformer with timm's module names; every argument is a field of `ViTConfig`.

    Build it from a config, from keywords, or both: ``ViT(config)``, ``ViT(embed_dim=192, depth=6)``,
    ``ViT(config, num_classes=10)`` (keywords replace fields of `config`, default `ViTConfig()`). The
    config used is kept as `model.config`.

    `forward_features` (B, C, H, W) → (B, T, D) normalised tokens, T = N + 1 with a class token;
    `forward_head` pools them to (B, D) and maps to (B, num_classes) logits; `forward` does both.
    With `pos_embed="sincos"` the position embedding is the fixed 2D sin-cos of Simple ViT
    (`vitutils.positional.posemb_sincos_2d`) in a persistent buffer (in the state dict under `pos_embed`,
    like a learned one, but never trained); the class token's row is zero. Dropout sits where timm puts
    it: `pos_drop` after the position embedding (then `patch_drop`, which drops whole patch tokens in
    training), `attn.proj_drop`, `mlp.drop1`, `mlp.drop2` and
    `attn.attn_drop` in every block, `head_drop` before the head (see `ViTConfig`).

    Book: chapter 6, "The whole model".
    """

    def __init__(self, config: ViTConfig | None = None, /, **overrides: Any) -> None:
        super().__init__()
        config = (config or ViTConfig()).replace(**overrides)
        self.config = config
        embed_dim = config.embed_dim
        self.num_classes = config.num_classes
        self.global_pool = config.global_pool
        self.embed_dim = embed_dim
        self.num_prefix_tokens = 1 if config.class_token else 0

        # Equation 1: patch embedding, class token, position embedding.
        self.patch_embed = PatchEmbedding(
            img_size=config.img_size,
            patch_size=config.patch_size,
            in_chans=config.in_chans,
            embed_dim=embed_dim,
        )
        num_tokens = self.patch_embed.num_patches + self.num_prefix_tokens  # T = N (+ 1)
        self.cls_token = init_class_token(embed_dim) if config.class_token else None
        if config.pos_embed == "learn":
            self.pos_embed = init_learned_pos_embed(num_tokens, embed_dim)  # (1, T, D)
        elif config.pos_embed == "axial":
            self.register_parameter("pos_embed", None)
            self.axial_pos_embed = AxialPositionEmbedding(self.patch_embed.grid_size, embed_dim)
        elif config.pos_embed == "sincos":
            fixed = posemb_sincos_2d(*self.patch_embed.grid_size, embed_dim)  # (N, D)
            prefix = fixed.new_zeros(self.num_prefix_tokens, embed_dim)  # (0 or 1, D)
            self.register_buffer("pos_embed", torch.cat([prefix, fixed])[None])  # (1, T, D)
        else:
            self.register_parameter("pos_embed", None)
        self.pos_drop = nn.Dropout(config.pos_drop_rate)
        self.patch_drop = (
            PatchDropout(config.patch_drop_rate, num_prefix_tokens=self.num_prefix_tokens)
            if config.patch_drop_rate > 0
            else nn.Identity()
        )

        # Equations 2-3: L pre-norm encoder blocks with linearly increasing stochastic depth.
        self.blocks = nn.Sequential(
            *[
                Block(
                    dim=embed_dim,
                    num_heads=config.num_heads,
                    mlp_ratio=config.mlp_ratio,
                    qkv_bias=config.qkv_bias,
                    proj_drop=config.proj_drop_rate,
                    attn_drop=config.attn_drop_rate,
                    drop_path=rate,
                    fused_attn=config.fused_attn,
                    attn_type=config.attn_type,
                    grid_size=self.patch_embed.grid_size,
                    sum_axial_out=config.sum_axial_out,
                )
                for rate in drop_path_rates(config.drop_path_rate, config.depth)
            ]
        )

        # Equation 4 and the head. timm: average pooling normalises after pooling (fc_norm).
        use_fc_norm = config.global_pool == "avg"
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6) if use_fc_norm else nn.Identity()
        self.num_features = embed_dim
        if config.representation_size:  # the paper's pre-training head: one hidden tanh layer
            self.pre_logits = nn.Sequential(
                OrderedDict(fc=nn.Linear(embed_dim, config.representation_size), act=nn.Tanh())
            )
            self.num_features = config.representation_size
        else:
            self.pre_logits = nn.Identity()
        self.head_drop = nn.Dropout(config.drop_rate)
        self.head = (
            nn.Linear(self.num_features, config.num_classes)
            if config.num_classes > 0
            else nn.Identity()
        )
        self.apply(_init_linear)

    @classmethod
    def from_config(cls, config: ViTConfig) -> ViT:
        """Build a ViT from a `ViTConfig` (the same as ``ViT(config)``)."""
        return cls(config)

    def forward_features(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) → normalised tokens (B, T, D), class token first if there is one."""
        x = self.patch_embed(x)  # (B, N, D)
        if self.cls_token is not None:
            x = prepend_class_token(x, self.cls_token)  # (B, T, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed  # (B, T, D)
        elif self.config.pos_embed == "axial":
            table = self.axial_pos_embed()  # (1, N, D): row vector + column vector
            prefix = table.new_zeros(1, self.num_prefix_tokens, self.embed_dim)  # (1, 0 or 1, D)
            x = x + torch.cat([prefix, table], dim=1)  # (B, T, D)
        x = self.patch_drop(self.pos_drop(x))  # (B, T, D); fewer tokens in training with patch_drop
        x = self.blocks(x)  # (B, T, D)
        return self.norm(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Tokens (B, T, D) → logits (B, num_classes), or the pooled features (B, num_features)."""
        if self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens :].mean(dim=1)  # (B, D): mean of the patch tokens
        else:
            x = x[:, 0]  # (B, D): the class token
        x = self.head_drop(self.pre_logits(self.fc_norm(x)))  # (B, num_features)
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) → logits (B, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a fresh one for `num_classes` classes (0: none), to fine-tune."""
        self.num_classes = num_classes
        self.config = self.config.replace(num_classes=num_classes)
        if num_classes > 0:
            device = self.patch_embed.proj.weight.device
            self.head = nn.Linear(self.num_features, num_classes, device=device)
            _init_linear(self.head)
        else:
            self.head = nn.Identity()


# `ViT(**fields)` takes exactly the fields of ViTConfig. Its signature says so, for help() and for
# Jupyter's shift-tab, derived from the dataclass rather than written out a second time.
ViT.__init__.__signature__ = inspect.Signature(
    [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY),
        inspect.Parameter(
            "config", inspect.Parameter.POSITIONAL_ONLY, default=None, annotation="ViTConfig | None"
        ),
        *(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type
            )
            for f in dataclasses.fields(ViTConfig)
        ),
    ],
    return_annotation="None",
)


def _init_linear(module: nn.Module) -> None:
    """timm's initialisation of linear layers: truncated normal std 0.02, zero bias."""
    if isinstance(module, nn.Linear):
        # As in timm, the cut-off is at ±2 in absolute value (100 std): in effect a plain normal.
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def vit_from_preset(name: str, **overrides) -> ViT:
    """A freshly initialised `ViT` of preset `name`, e.g. ``vit_from_preset("vit_cifar_tiny")``.

    Book: chapter 6, "Configurations".
    """
    return ViT.from_config(vit_config(name, **overrides))


def count_parameters(model: nn.Module | str, *, trainable_only: bool = False, **overrides) -> int:
    """Number of parameters of a module, or of a preset built on the meta device (no memory used).

    Buffers (such as a fixed sin-cos position embedding) are not parameters and are not counted.

    Book: chapter 6, "Counting parameters".
    """
    if isinstance(model, str):
        with torch.device("meta"):
            model = vit_from_preset(model, **overrides)
    elif overrides:
        raise ValueError("overrides only apply to a preset name, not to a built model")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
