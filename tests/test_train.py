"""The training loop (vitutils.train): the run directory, exact resume, atomic checkpoints, two processes,
evaluation and clear errors. Uses the `smoke` recipe (a 2-layer, width-32 ViT) on the shared CIFAR-10."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vitutils import checkpoint, train
from vitutils.recipes import get_recipe
from vitutils.vit import ViT

pytestmark = pytest.mark.skipif(
    not (
        Path(os.environ.get("VITUTILS_DATA_DIR", "/nonexistent")) / "cifar-10-batches-py"
    ).is_dir(),
    reason="needs CIFAR-10 in $VITUTILS_DATA_DIR (the shared folder)",
)

SMOKE = get_recipe("smoke", steps=30, eval_every=10, warmup_steps=5)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different[:5]}"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "full"
    train.train(SMOKE, out, seed=1, progress=False)
    return out


def test_a_run_writes_weights_config_log_and_state(full_run):
    assert {p.name for p in full_run.iterdir()} == {
        "model.safetensors",
        "config.json",
        "log.json",
        "state.pt",
    }
    log = json.loads((full_run / "log.json").read_text())
    assert log["status"] == "finished" and log["step"] == 30
    assert [e["step"] for e in log["epochs"]] == [10, 20, 30]
    for entry in log["epochs"]:
        assert {
            "train_loss",
            "val_loss",
            "val_accuracy",
            "lr",
            "images_per_s",
            "train_seconds",
        } <= set(entry)
    assert set(log["environment"]) >= {"commit", "torch", "device", "threads", "processes"}
    assert len(log["test"]["confusion"]) == 10 and sum(map(sum, log["test"]["confusion"])) == 10_000
    model, recipe, _ = checkpoint.load_run(full_run)
    assert recipe == SMOKE and isinstance(model, ViT) and not model.training
    assert checkpoint.read_config(full_run) == (SMOKE, 1)


def test_the_same_seed_gives_the_same_weights(full_run, tmp_path):
    train.train(SMOKE, tmp_path / "again", seed=1, max_steps=10, progress=False)
    train.train(SMOKE, tmp_path / "other", seed=2, max_steps=10, progress=False)
    state = checkpoint.load_state(full_run / "state.pt")
    assert state["step"] == 30
    first10 = json.loads((tmp_path / "again" / "log.json").read_text())["epochs"][0]
    logged = json.loads((full_run / "log.json").read_text())["epochs"][0]
    assert first10["train_loss"] == logged["train_loss"]
    other = json.loads((tmp_path / "other" / "log.json").read_text())["epochs"][0]
    assert other["train_loss"] != logged["train_loss"]


def test_resume_after_a_stop_is_bit_exact(full_run, tmp_path):
    out = tmp_path / "stopped"
    train.train(SMOKE, out, seed=1, max_steps=20, progress=False)
    assert checkpoint.load_state(out / "state.pt")["step"] == 20
    log = train.train(SMOKE, out, seed=1, resume=True, progress=False)
    assert log["step"] == 30 and [e["step"] for e in log["epochs"]] == [10, 20, 30]
    _assert_bit_identical(_weights(out), _weights(full_run))


def test_resume_after_a_crash_between_checkpoints_is_bit_exact(full_run, tmp_path, monkeypatch):
    out = tmp_path / "crashed"

    def crash(step):
        if step == 15:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(train, "_after_step", crash)
    with pytest.raises(KeyboardInterrupt):
        train.train(SMOKE, out, seed=1, progress=False)
    assert checkpoint.load_state(out / "state.pt")["step"] == 10  # the last checkpoint
    monkeypatch.undo()
    train.train(SMOKE, out, seed=1, resume=True, progress=False)
    _assert_bit_identical(_weights(out), _weights(full_run))


def test_a_kill_while_writing_leaves_the_previous_checkpoint(full_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.pt").write_bytes((full_run / "state.pt").read_bytes())

    def half_write(obj, path):
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_state(run / "state.pt", {"step": 99})
    monkeypatch.undo()
    assert checkpoint.load_state(run / "state.pt")["step"] == 30  # untouched
    assert [p.name for p in run.iterdir()] == ["state.pt"]  # and no temporary file left behind


def test_two_processes_follow_one(tmp_path):
    """torchrun with 2 gloo processes and the same global batch: the same losses and weights as one
    process, within float tolerance (the two halves' gradients are averaged, summed in another order)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["-m", "vitutils.train", "--recipe", "smoke", "--max-steps", "12", "--no-progress"]
    one = subprocess.run(
        [sys.executable, *args, "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two = subprocess.run(
        [*torchrun, *args, "--out", str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    log1 = json.loads((tmp_path / "one" / "log.json").read_text())
    log2 = json.loads((tmp_path / "two" / "log.json").read_text())
    assert log2["environment"]["processes"] == 2 and log1["environment"]["processes"] == 1
    assert log2["epochs"][-1]["train_loss"] == pytest.approx(
        log1["epochs"][-1]["train_loss"], abs=1e-4
    )
    assert log2["test"]["loss"] == pytest.approx(log1["test"]["loss"], abs=1e-4)
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=1e-4, rtol=0)


def test_evaluate_counts_a_constant_classifier():
    class Always3(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), 3), 10).float()

    labels = torch.arange(10).repeat(7)
    images = torch.zeros(len(labels), 3, 32, 32, dtype=torch.uint8)
    result = train.evaluate(Always3(), images, labels, batch_size=16)
    assert result["accuracy"] == pytest.approx(0.1)
    assert result["per_class_accuracy"] == [0.0, 0.0, 0.0, 1.0] + [0.0] * 6
    assert [row[3] for row in result["confusion"]] == [7] * 10 and sum(
        map(sum, result["confusion"])
    ) == 70


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vitutils.train", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_the_recipes():
    out = _cli("--help")
    assert out.returncode == 0
    for name in ("uva", "cpu", "gpu", "smoke"):
        assert f"  {name} " in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--recipe", "fast", "--out", "X"],
            "unknown recipe 'fast'; expected one of: uva, cpu, cpu_axial, cpu_axial_p2, cpu_p2, gpu, smoke",
        ),
        (["--recipe", "smoke", "--out", "X", "--resume"], "nothing to resume in X"),
        (
            ["--recipe", "smoke", "--out", "X", "--data-dir", "/nonexistent"],
            "--data-dir /nonexistent: no cifar-10-batches-py folder in it",
        ),
    ],
)
def test_cli_errors_name_the_problem(args, message, tmp_path):
    args = [str(tmp_path / "X") if a == "X" else a for a in args]
    out = _cli(*args)
    assert out.returncode == 2
    assert message.replace("X", str(tmp_path / "X")) in out.stderr
    assert "Traceback" not in out.stderr


def test_resume_refuses_another_run_and_a_rerun_refuses_to_overwrite(full_run, tmp_path):
    with pytest.raises(ValueError, match=r"holds a different run.*'lr': \(0.001, 0.002\)"):
        train.train(SMOKE.replace(lr=2e-3), full_run, seed=1, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"'seed': \(1, 5\)"):
        train.train(SMOKE, full_run, seed=5, resume=True, progress=False)
    with pytest.raises(FileExistsError, match="already holds a run; pass --resume"):
        train.train(SMOKE, full_run, seed=1, progress=False)


def test_corrupt_files_and_mismatched_weights_are_named(full_run, tmp_path):
    bad = tmp_path / "state.pt"
    bad.write_bytes((full_run / "state.pt").read_bytes()[:1000])  # truncated
    with pytest.raises(ValueError, match="is corrupt or not a vitutils state file"):
        checkpoint.load_state(bad)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="is corrupt or not a safetensors file"):
        checkpoint.load_weights(ViT(SMOKE.model), weights)
    wider = ViT(SMOKE.model.replace(embed_dim=48))
    with pytest.raises(
        ValueError, match=r"do not match the model's config.*shape mismatches \['cls_token"
    ):
        checkpoint.load_weights(wider, full_run / "model.safetensors")
    with pytest.raises(ValueError, match="no bundled run 'nope'"):
        checkpoint.load_bundled("nope")


def test_a_missing_dataset_is_named(monkeypatch, tmp_path):
    from vitutils.data import cifar10

    def offline(root):
        raise OSError("network unreachable")

    monkeypatch.setattr(cifar10, "download_cifar10", offline)
    monkeypatch.setenv("VITUTILS_DATA_DIR", str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=f"CIFAR-10 is not in {tmp_path} and could not be downloaded"
    ):
        train.load_split("train")


def test_compare_trains_every_change_from_the_same_seed():
    from vitutils import ablation

    base = get_recipe("smoke", steps=4, warmup_steps=1)
    results = ablation.compare({"a": {}, "again": {}, "no flip": {"flip": False}}, base, evals=2)
    assert list(results) == ["a", "again", "no flip"]
    assert [e["step"] for e in results["a"]["log"]["epochs"]] == [2, 4]
    assert results["a"]["val_accuracy"] == results["again"]["val_accuracy"]  # the same run twice
    assert results["a"]["log"]["epochs"][0]["train_loss"] != pytest.approx(
        results["no flip"]["log"]["epochs"][0]["train_loss"], abs=1e-6
    )  # the change reached the run
    assert results["a"]["images_per_s"] > 0 and results["a"]["train_seconds"] > 0


def test_axial_maps_command_writes_every_layers_row_and_column_weights(full_run, tmp_path):
    from vitutils import analysis

    axial = {"attn_type": "axial", "class_token": False, "global_pool": "avg", "pos_embed": "axial"}
    run = tmp_path / "axial"
    train.train(SMOKE.replace(model=axial), run, max_steps=3, progress=False, test=False)
    out = tmp_path / "maps.json"
    analysis.main(["--run", str(run), "--images", "2", "--out", str(out)])
    maps = json.loads(out.read_text())
    assert maps["command"].startswith("python -m vitutils.analysis --run")
    assert (
        maps["grid"] == [8, 8] and maps["test_indices"] == [0, 1] and len(maps["predictions"]) == 2
    )
    from vitutils.evaluation import load_split

    assert maps["labels"] == load_split("test")[1][:2].tolist()
    assert len(maps["layers"]) == SMOKE.model.depth
    for layer in maps["layers"]:
        row, col = torch.tensor(layer["row"]), torch.tensor(layer["col"])
        assert row.shape == col.shape == (2, 8, 8, 8)  # (B, gh, gw, gw) and (B, gw, gh, gh)
        torch.testing.assert_close(row.sum(-1), torch.ones(2, 8, 8), atol=1e-3, rtol=0)
        torch.testing.assert_close(col.sum(-1), torch.ones(2, 8, 8), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="is not an axial run"):
        analysis.main(["--run", str(full_run), "--images", "1"])
