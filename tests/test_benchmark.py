"""A quick run of `python -m vitutils.benchmark` on a tiny configuration (a few seconds)."""

import json

import pytest

from vitutils.benchmark import main

VARIANTS = ["vitutils fused", "vitutils teaching", "transformers sdpa"]


def test_tiny_benchmark_writes_markdown_and_json(tmp_path, capsys):
    out = tmp_path / "results" / "bench.md"
    report = main(
        [
            "--models",
            "vit_cifar_tiny",
            "--image-size",
            "16",
            "--batch-size",
            "1",
            "--repeats",
            "2",
            "--warmup",
            "0",
            "--output",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    table = out.read_text()
    assert table == printed
    for variant in VARIANTS:
        assert f"| vit_cifar_tiny | {variant} |" in table

    figures = json.loads(out.with_name("bench.md.json").read_text())
    assert figures == json.loads(json.dumps(report))
    assert figures["torch"] and figures["cpu_threads"] >= 1 and figures["date"]
    assert (figures["batch_size"], figures["image_size"], figures["repeats"]) == (1, 16, 2)
    rows = {r["variant"]: r for r in figures["results"]}
    assert sorted(rows) == sorted(VARIANTS)
    for row in rows.values():
        assert row["images_per_s"] > 0
        assert len(row["times_s"]) == 2 and min(row["times_s"]) > 0
        assert row["max_abs_logit_diff"] < 1e-4  # the same weights in both libraries
    assert rows["transformers sdpa"]["ratio_to_transformers"] == pytest.approx(1.0)
    fused, reference = rows["vitutils fused"]["times_s"], rows["transformers sdpa"]["times_s"]
    per_round = sorted(t_ref / t for t_ref, t in zip(reference, fused, strict=True))
    assert rows["vitutils fused"]["ratio_to_transformers"] == pytest.approx(sum(per_round) / 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="need batch_size >= 1"):
        main(["--models", "vit_cifar_tiny", "--batch-size", "0"])
    with pytest.raises(ValueError, match="unknown preset"):
        main(["--models", "vit_nano", "--repeats", "1"])


def test_training_benchmark_times_steps_against_transformers(tmp_path, capsys):
    out = tmp_path / "train.md"
    report = main(
        [
            "--train",
            "smoke",
            "--batch-size",
            "4",
            "--repeats",
            "2",
            "--warmup",
            "0",
            "--output",
            str(out),
        ]
    )
    assert out.read_text() == capsys.readouterr().out
    assert json.loads(out.with_name("train.md.json").read_text()) == json.loads(json.dumps(report))
    assert report["mode"] == "train" and report["max_abs_logit_diff"] < 1e-4
    assert report["matmul_peak_flops"] > 1e8
    rows = {r["variant"]: r for r in report["results"]}
    assert set(rows) == {"vitutils fused", "transformers sdpa", "vitutils, patch dropout 0.0"}
    # the smoke recipe has no patch dropout: its model costs what the plain one does
    assert (
        rows["vitutils, patch dropout 0.0"]["train_flops_per_image"]
        == rows["vitutils fused"]["train_flops_per_image"]
    )
    for r in rows.values():
        assert r["images_per_s"] > 0 and 0 < r["share_of_matmul_peak"] < 2
        assert f"| {r['variant']} | {r['images_per_s']:.0f} |" in out.read_text()


def test_training_flops_with_patch_dropout_follow_the_token_count():
    from vitutils.cost import forward_flops
    from vitutils.recipes import get_recipe

    config = get_recipe("cpu").model
    parts = forward_flops(config)
    r = 33 / 65  # 1 + 32 of 1 + 64 tokens
    expected = (
        parts["patch embedding"]
        + parts["head"]
        + r * (parts["qkv + proj"] + parts["MLP"])
        + r**2 * parts["attention (QKᵀ, AV)"]
    )
    # the same as the cost formulas for the same model on 1 + 32 tokens, computed directly
    D, L, hidden = config.embed_dim, config.depth, int(config.embed_dim * config.mlp_ratio)
    T = 33
    direct = (
        parts["patch embedding"]
        + parts["head"]
        + L * (8 * T * D * D + 4 * T * T * D + 4 * T * D * hidden)
    )
    assert expected == pytest.approx(direct, rel=1e-12)
