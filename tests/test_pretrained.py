"""Tests for vitutils.pretrained: key mappings, loading checkpoint directories, offline behaviour.

Nothing here touches the network: Hub checkpoints are imitated by directories written by the tests.
"""

import json

import pytest
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors.torch import save_file
from transformers import ViTConfig as HFViTConfig
from transformers import ViTForImageClassification, ViTModel

import vitutils.pretrained as pretrained
from vitutils.pretrained import (
    HubUnavailableError,
    hf_naming,
    hf_to_timm_state_dict,
    load_pretrained,
    predict,
    timm_to_hf_state_dict,
)
from vitutils.vit import ViT, vit_from_preset

LABELS = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"]


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    config = HFViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=(16, 24),
        patch_size=8,
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
        layer_norm_eps=1e-6,
        attn_implementation="sdpa",
    )
    return ViTForImageClassification(config).eval()


def _ours_for(hf_model) -> ViT:
    return ViT(
        img_size=(16, 24),
        patch_size=8,
        num_classes=5,
        embed_dim=32,
        depth=2,
        num_heads=4,
        mlp_ratio=2.0,
    )


def test_mapping_round_trip(hf_model):
    hf_sd = hf_model.state_dict()
    timm_sd = hf_to_timm_state_dict(hf_sd)
    model = _ours_for(hf_model)
    model.load_state_dict(timm_sd, strict=True)
    # timm → transformers in the naming of the installed transformers gives back every tensor.
    back = timm_to_hf_state_dict(model.state_dict(), naming=hf_naming(hf_sd))
    assert set(back) == set(hf_sd)
    assert all(torch.equal(back[k], hf_sd[k]) for k in hf_sd)
    # ... and through the naming of Hub checkpoints, too.
    hub = timm_to_hf_state_dict(timm_sd, naming="hub")
    assert "vit.encoder.layer.1.attention.attention.value.bias" in hub
    again = hf_to_timm_state_dict(hub)
    assert set(again) == set(timm_sd)
    assert all(torch.equal(again[k], timm_sd[k]) for k in timm_sd)


def test_qkv_is_query_key_value_stacked(hf_model):
    timm_sd = hf_to_timm_state_dict(hf_model.state_dict())
    hub = timm_to_hf_state_dict(timm_sd, naming="hub")
    qkv = timm_sd["blocks.0.attn.qkv.weight"]
    assert qkv.shape == (96, 32)
    prefix = "vit.encoder.layer.0.attention.attention."
    assert torch.equal(qkv[:32], hub[prefix + "query.weight"])
    assert torch.equal(qkv[32:64], hub[prefix + "key.weight"])
    assert torch.equal(qkv[64:], hub[prefix + "value.weight"])


def test_mapping_errors():
    with pytest.raises(ValueError, match=r"unexpected key 'vit\.embeddings\.mask_token'"):
        hf_to_timm_state_dict({"vit.embeddings.mask_token": torch.zeros(1)})
    partial = {
        "vit.encoder.layer.0.attention.attention.query.weight": torch.zeros(2, 2),
        "vit.encoder.layer.0.attention.attention.key.weight": torch.zeros(2, 2),
    }
    with pytest.raises(ValueError, match=r"layer 0 has weight for \['k', 'q'\] only"):
        hf_to_timm_state_dict(partial)
    with pytest.raises(ValueError, match=r"'fc_norm\.weight' has no transformers ViT equivalent"):
        timm_to_hf_state_dict({"fc_norm.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match="naming must be"):
        timm_to_hf_state_dict({}, naming="timm")


@pytest.mark.parametrize("weights_file", ["model.safetensors", "pytorch_model.bin"])
def test_load_a_transformers_checkpoint_directory(hf_model, tmp_path, weights_file):
    if weights_file == "model.safetensors":
        hf_model.save_pretrained(tmp_path)  # Hub naming, as google/vit-base-patch16-224
    else:
        hf_model.config.to_json_file(tmp_path / "config.json")
        hub = timm_to_hf_state_dict(hf_to_timm_state_dict(hf_model.state_dict()))
        torch.save(hub, tmp_path / weights_file)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]})
    )
    model, names = load_pretrained(str(tmp_path))
    assert names == LABELS
    assert not model.training
    assert model.pretrained_cfg == {
        "size": (16, 24),
        "crop_pct": 1.0,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
    }
    x = torch.randn(2, 3, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf_model(pixel_values=x).logits, atol=1e-4, rtol=0)


def test_load_a_transformers_vit_model_checkpoint_with_pooler(tmp_path):
    """Like google/vit-base-patch16-224-in21k: a ViTModel, no classifier, a tanh pooler."""
    torch.manual_seed(0)
    config = HFViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=128,
        image_size=16,
        patch_size=8,
        layer_norm_eps=1e-6,
    )
    hf = ViTModel(config, add_pooling_layer=True).eval()
    hf.save_pretrained(tmp_path)
    model, names = load_pretrained(str(tmp_path))
    assert names == []
    assert model.pretrained_cfg["size"] == 16
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(pixel_values=x).pooler_output, atol=1e-4, rtol=0)


def _timm_checkpoint(tmp_path, **config_extra):
    torch.manual_seed(0)
    model = vit_from_preset("vit_tiny_patch16_224", img_size=32, depth=2, num_classes=5)
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    config = {
        "architecture": "vit_tiny_patch16_224",
        "num_classes": 5,
        "global_pool": "token",
        "model_args": {"img_size": 32, "depth": 2},
        "pretrained_cfg": {
            "input_size": [3, 32, 32],
            "crop_pct": 0.9,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
        },
        **config_extra,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    return model


def test_load_a_timm_checkpoint_directory(tmp_path):
    reference = _timm_checkpoint(tmp_path, label_names=LABELS)
    model, names = load_pretrained(str(tmp_path))
    assert names == LABELS
    assert model.pretrained_cfg == {
        "size": 32,
        "crop_pct": 0.9,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
    }
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_timm_checkpoint_without_labels_gets_generic_names(tmp_path):
    _timm_checkpoint(tmp_path)
    _, names = load_pretrained(str(tmp_path))
    assert names == [f"class {i}" for i in range(5)]


def test_download_through_the_hub_client(monkeypatch, tmp_path):
    """The Hub code path, with hf_hub_download serving files from local directories."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    repo = tmp_path / "timm_repo"
    repo.mkdir()
    torch.manual_seed(0)
    model = vit_from_preset("vit_tiny_patch16_224", img_size=16, depth=1)  # 1000 classes
    save_file(model.state_dict(), repo / "model.safetensors")
    config = {"architecture": "vit_tiny_patch16_224", "model_args": {"img_size": 16, "depth": 1}}
    (repo / "config.json").write_text(json.dumps(config))
    labels = tmp_path / "labels_repo"
    labels.mkdir()
    imagenet = {str(i): f"imagenet class {i}" for i in range(1000)}
    (labels / "config.json").write_text(json.dumps({"model_type": "vit", "id2label": imagenet}))
    hub = {"timm/vit_tiny_patch16_224.test": repo, pretrained.IMAGENET_LABELS_REPO: labels}
    monkeypatch.setattr(pretrained, "_hub_reachable", lambda: True)  # as if online
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs))
        return str(hub[repo_id] / filename)

    monkeypatch.setattr(pretrained, "hf_hub_download", fake_download)
    loaded, names = load_pretrained("timm/vit_tiny_patch16_224.test", revision="main")
    assert names[0] == "imagenet class 0" and len(names) == 1000  # ImageNet names fetched
    assert torch.equal(loaded.head.weight, model.head.weight)
    assert [c[:2] for c in calls] == [
        ("timm/vit_tiny_patch16_224.test", "config.json"),
        ("timm/vit_tiny_patch16_224.test", "model.safetensors"),
        (pretrained.IMAGENET_LABELS_REPO, "config.json"),
    ]
    assert all(not c[2]["local_files_only"] and c[2]["revision"] == "main" for c in calls[:2])
    assert calls[2][2].get("revision") is None  # the revision belongs to the checkpoint only


def test_unsupported_checkpoints(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "vit_giant_patch14_224"}))
    with pytest.raises(ValueError, match="architecture 'vit_giant_patch14_224' has no preset"):
        load_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="neither a timm nor a transformers ViT"):
        load_pretrained(str(tmp_path))


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_offline_without_cache_raises_a_clear_error(monkeypatch, tmp_path, value):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    calls = []
    original = pretrained.hf_hub_download

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(pretrained, "hf_hub_download", spy)
    with pytest.raises(HubUnavailableError, match="offline mode is on \\(HF_HUB_OFFLINE is set\\)"):
        load_pretrained("google/vit-base-patch16-224", cache_dir=str(tmp_path))
    assert calls and all(call["local_files_only"] for call in calls)  # no network attempt


def test_no_network_raises_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    calls = []

    def unreachable(*args, **kwargs):
        calls.append(kwargs)
        raise LocalEntryNotFoundError("cannot reach huggingface.co and the file is not cached")

    monkeypatch.setattr(pretrained, "hf_hub_download", unreachable)
    monkeypatch.setattr(pretrained, "_hub_reachable", lambda: False)
    with pytest.raises(HubUnavailableError, match="could not be reached") as info:
        load_pretrained(cache_dir=str(tmp_path))
    assert isinstance(info.value, OSError)
    assert "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k" in str(info.value)
    assert calls and all(call["local_files_only"] for call in calls)  # no slow retries


def test_hub_reachable_asks_the_endpoints_host(monkeypatch):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        monkeypatch.setattr(pretrained.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        assert pretrained._hub_reachable()
    monkeypatch.setattr(pretrained.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    assert not pretrained._hub_reachable()  # the port is closed now
    monkeypatch.setattr(pretrained.constants, "ENDPOINT", "https://no-such-host.invalid")
    assert not pretrained._hub_reachable()


def test_predict_returns_the_top_classes():
    torch.manual_seed(0)
    model = vit_from_preset("vit_tiny_patch16_224", img_size=32, depth=1, num_classes=5).train()
    images = torch.randn(3, 3, 32, 32)
    top = predict(model, images[0], LABELS, k=3)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        probs = model(images).softmax(-1)
    order = probs[0].argsort(descending=True)[:3].tolist()
    assert [name for name, _ in top] == [LABELS[i] for i in order]
    assert [p for _, p in top] == pytest.approx(probs[0, order].tolist(), abs=1e-6)
    batch = predict(model, images, LABELS, k=5)
    assert len(batch) == 3 and all(len(row) == 5 for row in batch)
    assert sum(p for _, p in batch[2]) == pytest.approx(1.0, abs=1e-5)


def test_predict_errors():
    model = vit_from_preset("vit_tiny_patch16_224", img_size=32, depth=1, num_classes=5)
    image = torch.randn(3, 32, 32)
    with pytest.raises(ValueError, match="k must be in \\[1, 5\\], got 6"):
        predict(model, image, LABELS, k=6)
    with pytest.raises(ValueError, match="model has 5 classes but 4 names"):
        predict(model, image, LABELS[:4])
    with pytest.raises(ValueError, match="expected an image"):
        predict(model, torch.randn(32, 32), LABELS)


@pytest.mark.parametrize("pos_embed", ["learn", "sincos"])
def test_transformers_twin_computes_the_same_logits(pos_embed):
    torch.manual_seed(0)
    model = ViT(
        img_size=32,
        patch_size=4,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=10,
        pos_embed=pos_embed,
    ).eval()
    with torch.no_grad():  # a larger head, so that the logits are far apart
        model.head.weight.normal_()
    twin = pretrained.transformers_twin(model)
    assert isinstance(twin, ViTForImageClassification) and not twin.training
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(twin(pixel_values=x).logits, model(x), atol=1e-5, rtol=0)


def test_transformers_twin_refuses_what_transformers_cannot_hold():
    model = ViT(img_size=32, patch_size=4, embed_dim=32, depth=1, num_heads=2, global_pool="avg")
    with pytest.raises(ValueError, match="classifies from a class token"):
        pretrained.transformers_twin(model)
