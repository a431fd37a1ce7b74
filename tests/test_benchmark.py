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
