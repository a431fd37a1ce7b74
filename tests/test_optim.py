"""The optimiser's parameter groups and the learning-rate schedules (vitutils.optim, vitutils.recipes)."""

import itertools
import math

import pytest
import torch

from vitutils.optim import lr_factor, make_optimizer, make_scheduler, param_groups_weight_decay
from vitutils.recipes import RECIPES, TrainConfig, get_recipe
from vitutils.vit import ViT, ViTConfig


def _names(model, params):
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_no_weight_decay_on_norms_biases_pos_embed_and_class_token():
    model = ViT(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=10)
    no_decay, decay = param_groups_weight_decay(model, 0.05)
    assert (no_decay["weight_decay"], decay["weight_decay"]) == (0.0, 0.05)
    skipped, decayed = _names(model, no_decay["params"]), _names(model, decay["params"])
    assert skipped | decayed == {n for n, _ in model.named_parameters()} and not skipped & decayed
    assert decayed == {
        "patch_embed.proj.weight",
        "head.weight",
        *(
            f"blocks.{i}.{m}.weight"
            for i in range(2)
            for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
        ),
    }
    assert {
        "pos_embed",
        "cls_token",
        "norm.weight",
        "norm.bias",
        "blocks.0.norm1.weight",
        "blocks.1.attn.qkv.bias",
        "head.bias",
    } <= skipped


def test_decay_all_is_one_group_as_in_the_uva_tutorial():
    recipe = get_recipe("smoke", decay_all=True, weight_decay=0.01)
    model = ViT(recipe.model)
    (group,) = make_optimizer(model, recipe).param_groups
    assert group["weight_decay"] == 0.01 and len(group["params"]) == len(list(model.parameters()))


def _cosine(**kw) -> TrainConfig:
    return TrainConfig(model=ViTConfig(), **{"steps": 100, "lr": 1e-3, "min_lr": 1e-5, **kw})


def test_warmup_then_cosine():
    cfg = _cosine(warmup_steps=10)
    factors = [lr_factor(s, cfg) for s in range(cfg.steps)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(1e-5 / 1e-3)
    mid = 10 + (cfg.steps - 1 - 10) / 2
    assert lr_factor(int(mid), cfg) == pytest.approx(
        0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (int(mid) - 10) / 89))
    )
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))  # decreasing


def test_multistep_equals_torch_multisteplr():
    cfg = _cosine(schedule="multistep", milestones=(30, 70), gamma=0.1, min_lr=0.0)
    p = torch.nn.Parameter(torch.zeros(1))
    ours = torch.optim.SGD([p], lr=cfg.lr)
    ref = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched_ours, sched_ref = (
        make_scheduler(ours, cfg),
        torch.optim.lr_scheduler.MultiStepLR(ref, milestones=list(cfg.milestones), gamma=0.1),
    )
    for _ in range(cfg.steps):
        assert ours.param_groups[0]["lr"] == pytest.approx(ref.param_groups[0]["lr"], rel=1e-12)
        ours.step(), ref.step(), sched_ours.step(), sched_ref.step()


def test_lambdalr_applies_the_factor_to_every_group():
    recipe = get_recipe("smoke")
    optimizer = make_optimizer(ViT(recipe.model), recipe)
    scheduler = make_scheduler(optimizer, recipe)
    for step in range(40):
        expected = recipe.lr * lr_factor(step, recipe)
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([expected] * 2)
        optimizer.step()
        scheduler.step()


def test_uva_recipe_is_the_tutorial():
    uva = RECIPES["uva"]
    m = uva.model
    assert (m.patch_size, m.embed_dim, int(m.embed_dim * m.mlp_ratio), m.num_heads, m.depth) == (
        4,
        256,
        512,
        8,
        6,
    )
    assert uva.batch_size == 128 and uva.lr == 3e-4 and uva.steps_per_epoch == 351
    assert uva.epochs == 180 and uva.warmup_steps == 0 and uva.label_smoothing == 0
    epoch = uva.steps_per_epoch
    assert lr_factor(100 * epoch - 1, uva) == 1.0
    assert lr_factor(100 * epoch, uva) == pytest.approx(0.1)
    assert lr_factor(150 * epoch, uva) == pytest.approx(0.01)


def test_recipes_round_trip_through_json_and_reject_bad_fields():
    import json

    for recipe in RECIPES.values():
        assert TrainConfig.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    with pytest.raises(ValueError, match="unknown recipe 'fast'; expected one of uva, cpu"):
        get_recipe("fast")
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\) \['epochs_total'\]"):
        get_recipe("cpu", epochs_total=3)
    with pytest.raises(ValueError, match="warmup_steps must be in"):
        get_recipe("smoke", warmup_steps=500)
    with pytest.raises(ValueError, match="contains the validation images"):
        get_recipe("smoke", train_split="train+val")
