"""The trained run shipped with the package, the book's measured JSON files, the chapter 7 figures and the
budget switch."""

import json
import os
import subprocess
from pathlib import Path

import matplotlib
import pytest
import torch

from conftest import ROOT
from vitutils import ablation, checkpoint, train, viz
from vitutils.benchmark import training_markdown
from vitutils.notebook import budget
from vitutils.recipes import TrainConfig

matplotlib.use("Agg")
BOOK_DATA = ROOT / "book" / "data"
HAS_DATA = (
    Path(os.environ.get("VITUTILS_DATA_DIR", "/nonexistent")) / "cifar-10-batches-py"
).is_dir()


def test_the_bundled_run_is_what_its_command_wrote():
    run = checkpoint.BUNDLED / "cifar10_cpu"
    assert {p.name for p in run.iterdir()} >= {"model.safetensors", "config.json", "log.json"}
    tracked = subprocess.run(
        ["git", "ls-files", str(run)], capture_output=True, text=True, cwd=ROOT
    )
    assert "state.pt" not in tracked.stdout  # the resume state (optimiser moments) is not shipped
    model, preprocess, log = checkpoint.load_bundled()
    assert log["command"].startswith("python -m vitutils.train --recipe cpu")
    assert log["status"] == "finished" and log["step"] == checkpoint.read_config(run)[0].steps
    assert log["wall_seconds"] <= 30 * 60, (
        "the cpu recipe must fit in 30 minutes, evaluations included"
    )
    assert (run / "model.safetensors").stat().st_size < 10 * 2**20  # a few MB
    assert preprocess(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).dtype == torch.float32


@pytest.mark.skipif(not HAS_DATA, reason="needs CIFAR-10 in $VITUTILS_DATA_DIR")
def test_the_bundled_model_scores_what_its_log_says():
    model, _, log = checkpoint.load_bundled()
    test_x, test_y = train.load_split("test")
    result = train.evaluate(model, test_x, test_y)
    assert result["accuracy"] == pytest.approx(log["test"]["accuracy"], abs=1e-3)
    moved = (torch.tensor(result["confusion"]) - torch.tensor(log["test"]["confusion"])).abs()
    assert moved.sum() <= 20  # at most ten images change their predicted class (0.1 %)


def test_the_ablation_report_renders():
    report = json.loads((BOOK_DATA / "cifar10_ablation.json").read_text())
    assert set(report) >= {"command", "date", "machine", "budget_seconds", "results"}
    assert report["machine"]["commit"] and report["command"].startswith(
        "python -m vitutils.ablation"
    )
    assert [r["variant"] for r in report["results"]] == list(ablation.VARIANTS)
    # the baseline the module trains is the one the published table was measured on
    assert TrainConfig.from_dict(report["recipe"]) == ablation.BASELINE
    table = ablation.to_markdown(report)
    base = report["results"][0]["val_accuracy"]
    for r in report["results"]:
        row = next(line for line in table.splitlines() if line.startswith(f"| {r['variant']} |"))
        assert f"| {100 * r['val_accuracy']:.1f} % |" in row
        if r["variant"] != "baseline":
            assert row.endswith(f"| {100 * (r['val_accuracy'] - base):+.1f} |")


def test_the_uva_run_and_the_training_benchmark_render():
    log = json.loads((BOOK_DATA / "runs" / "uva_30min" / "log.json").read_text())
    assert (
        log["command"].startswith("python -m vitutils.train --recipe uva")
        and "--max-minutes 30" in log["command"]
    )
    assert log["status"] == "stopped early" and 0 <= log["test"]["accuracy"] <= 1
    bench = json.loads((BOOK_DATA / "train_benchmark.md.json").read_text())
    table = training_markdown(bench)
    assert (BOOK_DATA / "train_benchmark.md").read_text() == table  # the script's own output
    assert bench["recipe"] == "cpu" and bench["batch_size"] == 128
    for r in bench["results"]:
        assert (
            f"| {r['variant']} | {r['images_per_s']:.0f} | {r['ratio_to_transformers']:.2f} |"
            in table
        )


def test_training_figures_draw_a_log():
    log = {
        "epochs": [
            {
                "epoch": e,
                "train_loss": 2 - e / 10,
                "val_loss": 2.1 - e / 10,
                "val_accuracy": 0.1 * e,
                "train_seconds": 60 * e,
            }
            for e in (1, 2, 3)
        ]
    }
    fig = viz.plot_curves(log, title="t")
    assert [ax.get_title() for ax in fig.axes] == ["Loss", "Validation accuracy"]
    assert list(fig.axes[1].lines[0].get_ydata()) == pytest.approx([10, 20, 30])
    fig = viz.plot_val_vs_time({"a": log})
    assert list(fig.axes[0].lines[0].get_xdata()) == [1, 2, 3]
    fig = viz.plot_confusion([[3, 1], [0, 4]], ["cat", "dog"])
    assert [t.get_text() for t in fig.axes[0].texts] == ["3", "1", "0", "4"]
    fig = viz.plot_per_class([0.5, 1.0], ["cat", "dog"])
    assert [p.get_width() for p in fig.axes[0].patches] == [50, 100]
    fig = viz.plot_image_grid(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), ["a", "b", "c"], ncols=2)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c", ""]


def test_budget_switch(monkeypatch):
    monkeypatch.setenv("VITUTILS_BUDGET", "small")
    assert budget(1, 100) == 1
    monkeypatch.setenv("VITUTILS_BUDGET", "full")
    assert budget(1, 100) == 100
    monkeypatch.delenv("VITUTILS_BUDGET")
    assert budget(1, 100) == 100
    monkeypatch.setenv("VITUTILS_BUDGET", "tiny")
    with pytest.raises(ValueError, match="must be 'small' or 'full', got 'tiny'"):
        budget(1, 100)
