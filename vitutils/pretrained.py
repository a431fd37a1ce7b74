"""Published ImageNet weights for `vitutils.vit.ViT`, from the Hugging Face Hub (chapter 6).

Two families of checkpoints load into the same model:

- timm's (``timm/vit_base_patch16_224.augreg2_in21k_ft_in1k`` …): `ViT` has timm's names, so the
  `model.safetensors` file loads as it is;
- transformers' (``google/vit-base-patch16-224`` …): `hf_to_timm_state_dict` renames the keys of
  `ViTForImageClassification` / `ViTModel` and fuses the separate query, key and value projections
  into timm's single `qkv` matrix. `timm_to_hf_state_dict` goes the other way.

Nothing is bundled: files are fetched at run time with `huggingface_hub` (respecting
`HF_HUB_OFFLINE`) into its cache. Without a network connection and without a cached copy,
`load_pretrained` raises `HubUnavailableError`; it never falls back to random weights.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import torch
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.torch import load_file
from torch import Tensor

from vitutils.data.images import IMAGENET_MEAN, IMAGENET_STD
from vitutils.vit import PRESETS, ViT, vit_config

__all__ = [
    "DEFAULT_CHECKPOINT",
    "HubUnavailableError",
    "hf_naming",
    "hf_to_timm_state_dict",
    "load_pretrained",
    "predict",
    "timm_to_hf_state_dict",
    "transformers_twin",
]

DEFAULT_CHECKPOINT = "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"
# Its config.json holds the 1000 ImageNet-1k class names (id2label), in the order timm uses too.
IMAGENET_LABELS_REPO = "google/vit-base-patch16-224"

# transformers name → timm name inside one encoder layer. Both spellings of transformers are
# accepted: that of the checkpoints on the Hub (transformers < 5) and that of transformers >= 5.
_LAYER_RENAMES = [
    (r"attention\.output\.dense\.", "attn.proj."),
    (r"attention\.o_proj\.", "attn.proj."),
    (r"layernorm_before\.", "norm1."),
    (r"layernorm_after\.", "norm2."),
    (r"intermediate\.dense\.", "mlp.fc1."),
    (r"output\.dense\.", "mlp.fc2."),
    (r"mlp\.fc([12])\.", r"mlp.fc\1."),
]
_QKV = re.compile(r"attention\.(?:attention\.(query|key|value)|([qkv])_proj)\.(weight|bias)$")
_LAYER = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.*)$")
_TOP_RENAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
    "pooler.dense.weight": "pre_logits.fc.weight",  # in21k checkpoints: the tanh pre-logits layer
    "pooler.dense.bias": "pre_logits.fc.bias",
    "classifier.weight": "head.weight",
    "classifier.bias": "head.bias",
}


class HubUnavailableError(OSError):
    """The Hugging Face Hub cannot be reached (no network, HF_HUB_OFFLINE=1) and nothing is cached.

    Book: chapter 6, "Loading published weights".
    """


def hf_to_timm_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a transformers ViT state dict to timm's (and `ViT`'s) names, fusing q, k, v into qkv.

    Accepts `ViTForImageClassification` (keys under ``vit.`` plus ``classifier``) and `ViTModel`
    keys, in the naming of Hub checkpoints (``encoder.layer.i.attention.attention.query``) or of
    transformers >= 5 (``layers.i.attention.q_proj``). `pooler.dense` becomes `pre_logits.fc`.
    Unknown keys raise ValueError.

    Book: chapter 6, "Loading published weights".
    """
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        name = key.removeprefix("vit.")
        if name in _TOP_RENAMES:
            out[_TOP_RENAMES[name]] = value
            continue
        layer = _LAYER.match(name)
        if layer is None:
            raise ValueError(f"unexpected key {key!r} in a transformers ViT state dict")
        i, rest = int(layer.group(1)), layer.group(2)
        part = _QKV.match(rest)
        if part is not None:
            which = (part.group(1) or part.group(2))[0]  # "q", "k" or "v"
            qkv.setdefault((i, part.group(3)), {})[which] = value
            continue
        for pattern, replacement in _LAYER_RENAMES:
            renamed, found = re.subn(f"^{pattern}", replacement, rest)
            if found:
                out[f"blocks.{i}.{renamed}"] = value
                break
        else:
            raise ValueError(f"unexpected key {key!r} in a transformers ViT state dict")
    for (i, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"layer {i} has {kind} for {sorted(parts)} only; expected q, k and v")
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def timm_to_hf_state_dict(
    state_dict: Mapping[str, Tensor],
    *,
    naming: Literal["hub", "transformers5"] = "hub",
    prefix: str = "vit.",
) -> dict[str, Tensor]:
    """Inverse of `hf_to_timm_state_dict`: timm names → transformers ViT names, qkv split in three.

    `naming="hub"` gives the names of checkpoints on the Hub (and of transformers < 5 modules),
    `"transformers5"` those of transformers >= 5 modules (see `hf_naming`). `prefix` is ``"vit."``
    for `ViTForImageClassification`, ``""`` for `ViTModel`; `head` always becomes `classifier`.

    Book: chapter 6, "Loading published weights".
    """
    if naming not in ("hub", "transformers5"):
        raise ValueError(f"naming must be 'hub' or 'transformers5', got {naming!r}")
    hub = naming == "hub"
    layer_names = {
        "attn.proj.": "attention.output.dense." if hub else "attention.o_proj.",
        "norm1.": "layernorm_before.",
        "norm2.": "layernorm_after.",
        "mlp.fc1.": "intermediate.dense." if hub else "mlp.fc1.",
        "mlp.fc2.": "output.dense." if hub else "mlp.fc2.",
    }
    top = {timm: hf for hf, timm in _TOP_RENAMES.items()}
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key in top:
            hf = top[key]
            out[hf if hf.startswith("classifier") else prefix + hf] = value
            continue
        block = re.match(r"^blocks\.(\d+)\.(.*)$", key)
        if block is None:
            raise ValueError(f"key {key!r} has no transformers ViT equivalent")
        i, rest = block.group(1), block.group(2)
        layer = f"{prefix}encoder.layer.{i}." if hub else f"{prefix}layers.{i}."
        if rest.startswith("attn.qkv."):
            kind = rest.removeprefix("attn.qkv.")
            for part, chunk in zip("qkv", value.chunk(3), strict=True):
                name = {"q": "query", "k": "key", "v": "value"}[part]
                sub = f"attention.attention.{name}." if hub else f"attention.{part}_proj."
                out[layer + sub + kind] = chunk
            continue
        for timm, hf in layer_names.items():
            if rest.startswith(timm):
                out[layer + hf + rest.removeprefix(timm)] = value
                break
        else:
            raise ValueError(f"key {key!r} has no transformers ViT equivalent")
    return out


def transformers_twin(model: ViT) -> torch.nn.Module:
    """transformers' `ViTForImageClassification` of `model`'s shape holding its weights, via
    `timm_to_hf_state_dict` and `strict=True` (eval mode). Book: chapter 6, "The trained model"."""
    from transformers import ViTConfig as HFViTConfig
    from transformers import ViTForImageClassification

    cfg = model.config
    if cfg.global_pool != "token" or not cfg.class_token or cfg.pos_embed == "none":
        raise ValueError(
            "transformers' ViT classifies from a class token with a position embedding; got "
            f"global_pool={cfg.global_pool!r}, class_token={cfg.class_token}, pos_embed={cfg.pos_embed!r}"
        )
    image_size = cfg.img_size
    config = HFViTConfig(
        hidden_size=cfg.embed_dim,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.num_heads,
        intermediate_size=int(cfg.embed_dim * cfg.mlp_ratio),
        image_size=image_size,
        patch_size=cfg.patch_size,
        num_channels=cfg.in_chans,
        num_labels=cfg.num_classes,
        qkv_bias=cfg.qkv_bias,
        layer_norm_eps=1e-6,  # timm's value, so both compute the same function
        attn_implementation="sdpa",
    )
    twin = ViTForImageClassification(config).eval()
    naming = hf_naming(twin.state_dict())
    twin.load_state_dict(timm_to_hf_state_dict(model.state_dict(), naming=naming), strict=True)
    return twin


def hf_naming(state_dict: Mapping[str, Tensor]) -> Literal["hub", "transformers5"]:
    """Which transformers naming a state dict uses (pass a model's `state_dict()`).

    Book: chapter 6, "Loading published weights".
    """
    return "transformers5" if any(".q_proj." in key for key in state_dict) else "hub"


def _offline() -> bool:
    # Read at call time: huggingface_hub reads the variable once, when it is imported.
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in {"1", "ON", "YES", "TRUE"}


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub's host accepts a connection: a quick look before the client's slow retries."""
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:  # no DNS, no route, refused or timed out
        return False


def _fetch(repo: str, filename: str, **kwargs) -> Path:
    """A file of a local directory or of a Hub repository (downloaded once, then from the cache)."""
    if Path(repo).is_dir():
        path = Path(repo) / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        return path
    # With no network, huggingface_hub retries for about half a minute before it gives up; a quick
    # look first lets an offline reader get the cached copy, or the clear error below, at once.
    local_only = _offline() or not _hub_reachable()
    try:
        return Path(hf_hub_download(repo, filename, local_files_only=local_only, **kwargs))
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise  # a wrong name, not a connection problem
    except OSError as error:  # LocalEntryNotFoundError: neither cached nor downloadable
        if isinstance(error, EntryNotFoundError) and not isinstance(error, LocalEntryNotFoundError):
            raise  # the repository exists but has no such file
        why = (
            "offline mode is on (HF_HUB_OFFLINE is set)"
            if _offline()
            else "the Hub could not be reached (no network connection?)"
        )
        raise HubUnavailableError(
            f"cannot load {filename} of {repo!r}: it is not in the local Hugging Face cache and "
            f"{why}. Connect to the internet and unset HF_HUB_OFFLINE (it is downloaded once), "
            "or pass a local directory holding config.json and the weights."
        ) from error


def _read_json(repo: str, filename: str, **kwargs) -> dict:
    return json.loads(_fetch(repo, filename, **kwargs).read_text(encoding="utf-8"))


def _load_weights(repo: str, **kwargs) -> dict[str, Tensor]:
    try:
        return load_file(_fetch(repo, "model.safetensors", **kwargs))
    except (EntryNotFoundError, FileNotFoundError):
        path = _fetch(repo, "pytorch_model.bin", **kwargs)  # older transformers checkpoints
        return torch.load(path, map_location="cpu", weights_only=True)


def _square_or_pair(size: int | Sequence[int]) -> int | tuple[int, int]:
    """An image size as `preprocess` takes it (an int) when square, else (H, W)."""
    if isinstance(size, int):
        return size
    H, W = size
    return H if H == W else (H, W)


def _class_names(config: dict, num_classes: int, **kwargs) -> list[str]:
    if "id2label" in config:
        return [config["id2label"][str(i)] for i in range(num_classes)]
    if config.get("label_names"):
        return list(config["label_names"])
    if num_classes == 1000:  # ImageNet-1k: the same class order as the google checkpoints
        labels = _read_json(IMAGENET_LABELS_REPO, "config.json", cache_dir=kwargs.get("cache_dir"))
        return _class_names(labels, 1000)
    return [f"class {i}" for i in range(num_classes)]


def load_pretrained(
    name: str = DEFAULT_CHECKPOINT, *, revision: str | None = None, cache_dir: str | None = None
) -> tuple[ViT, list[str]]:
    """A `ViT` with published weights, in eval mode, and its class names.

    `name` is a Hub repository of timm (``timm/<architecture>.<tag>``, architecture one of
    `vitutils.vit.PRESETS`) or of transformers' ViT (``google/vit-base-patch16-224``), or a local
    directory with the same files. The model gets `model.pretrained_cfg`, the keyword arguments of
    `vitutils.data.preprocess` that match its training (size, crop_pct, mean, std):
    ``preprocess(image, **model.pretrained_cfg)`` (size is an int for square inputs, as in every
    published checkpoint, else (H, W)). transformers' checkpoints use LayerNorm eps 1e-12
    where `ViT` uses timm's 1e-6, which moves the logits by far less than their rounding.

    Raises `HubUnavailableError` when the files are neither cached nor downloadable.

    Book: chapter 6, "Loading published weights".
    """
    kwargs = {"revision": revision, "cache_dir": cache_dir}
    config = _read_json(name, "config.json", **kwargs)
    if "architecture" in config:  # timm
        arch = config["architecture"]
        if arch not in PRESETS:
            raise ValueError(
                f"architecture {arch!r} has no preset; expected one of {list(PRESETS)}"
            )
        overrides = dict(config.get("model_args", {}))
        overrides.setdefault("num_classes", config.get("num_classes", 1000))
        overrides.setdefault("global_pool", config.get("global_pool", "token"))
        model = ViT.from_config(vit_config(arch, **overrides))
        state_dict = _load_weights(name, **kwargs)
        cfg = config.get("pretrained_cfg", {})
        size = _square_or_pair(cfg.get("input_size", [3, 224, 224])[1:])
        crop_pct = cfg.get("crop_pct", 0.875)
        mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
    elif config.get("model_type") == "vit":  # transformers
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"only GELU ViTs are supported, got {config['hidden_act']!r}")
        state_dict = hf_to_timm_state_dict(_load_weights(name, **kwargs))
        D = config["hidden_size"]
        model = ViT(
            img_size=config["image_size"],
            patch_size=config["patch_size"],
            in_chans=config.get("num_channels", 3),
            # A ViTModel checkpoint (e.g. the in21k ones) has no classifier but a pooler.
            num_classes=len(config.get("id2label", {})) if "head.weight" in state_dict else 0,
            embed_dim=D,
            depth=config["num_hidden_layers"],
            num_heads=config["num_attention_heads"],
            mlp_ratio=config["intermediate_size"] / D,
            qkv_bias=config.get("qkv_bias", True),
            representation_size=D if "pre_logits.fc.weight" in state_dict else None,
        )
        try:
            processor = _read_json(name, "preprocessor_config.json", **kwargs)
        except (EntryNotFoundError, FileNotFoundError):
            processor = {}
        size, crop_pct = _square_or_pair(config["image_size"]), 1.0  # resized, not cropped
        mean, std = processor.get("image_mean", [0.5] * 3), processor.get("image_std", [0.5] * 3)
    else:
        raise ValueError(f"{name!r} is neither a timm nor a transformers ViT checkpoint")
    model.load_state_dict(state_dict, strict=True)
    model.pretrained_cfg = {"size": size, "crop_pct": crop_pct, "mean": mean, "std": std}
    return model.eval(), _class_names(config, model.num_classes, **kwargs)


@torch.inference_mode()
def predict(
    model: torch.nn.Module, image: Tensor, class_names: Sequence[str], k: int = 5
) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
    """The k most probable classes of a preprocessed image (3, H, W), as (name, probability) pairs.

    For a batch (B, 3, H, W), one such list per image. Runs the model in eval mode (and restores
    its mode afterwards).

    Book: chapter 6, "Classifying a photo".
    """
    if image.ndim not in (3, 4):
        raise ValueError(
            f"expected an image (C, H, W) or a batch (B, C, H, W), got {tuple(image.shape)}"
        )
    batch = image if image.ndim == 4 else image[None]  # (B, C, H, W)
    was_training = model.training
    model.eval()
    try:
        logits = model(batch)  # (B, num_classes)
    finally:
        model.train(was_training)
    if logits.shape[-1] != len(class_names):
        raise ValueError(
            f"model has {logits.shape[-1]} classes but {len(class_names)} names were given"
        )
    if not 1 <= k <= len(class_names):
        raise ValueError(f"k must be in [1, {len(class_names)}], got {k}")
    probs, indices = logits.softmax(dim=-1).topk(k, dim=-1)  # (B, k), (B, k)
    result = [
        [(class_names[i], p) for i, p in zip(idx.tolist(), prob.tolist(), strict=True)]
        for idx, prob in zip(indices, probs, strict=True)
    ]
    return result if image.ndim == 4 else result[0]
