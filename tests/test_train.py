"""End to end through the real configs and the Hydra entry point, at toy size on fake CIFAR-100."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ltkd import pipeline
from ltkd.config import load_config
from ltkd.distillers import METHODS
from tests.helpers import run_cli, toy_overrides


# every method of the table; a whole toy run each, so one in the fast suite (the check step and one training
# step of every method: test_distiller_wiring) and the others in `make test-all`
@pytest.mark.parametrize("loss", [pytest.param(m, marks=[] if m == "ltkd" else pytest.mark.slow) for m in METHODS])
def test_each_loss_runs_end_to_end(loss: str, compose_toy, tmp_path: Path):
    cfg = load_config(compose_toy(f"loss={loss}"))
    metrics = pipeline.run(cfg, tmp_path / "run")
    assert metrics["loss"] == loss and metrics["teacher_arch"] == "resnet8"
    for who in ("teacher", "student"):
        for which in ("final", "best"):
            acc = metrics[who][which]
            assert set(acc) == {"overall", "head", "medium", "tail", "per_class"}
            assert len(acc["per_class"]) == 100
            # 3 test images a class: each class's accuracy is a third; groups and overall are means of them
            assert all(round(3 * a / 100) == pytest.approx(3 * a / 100) for a in acc["per_class"])
            for group, members in metrics["groups"].items():
                assert acc[group] == pytest.approx(sum(acc["per_class"][c] for c in members) / len(members))
            assert acc["overall"] == pytest.approx(sum(acc["per_class"]) / 100)
    assert metrics["student"]["history"][-1]["epoch"] == 2
    names = {k for k in metrics["student"]["history"][-1] if k.startswith("train/loss_")}
    assert names == ({"train/loss_ce", "train/loss_kd"} if METHODS[loss].uses_teacher else {"train/loss_ce"})


def test_metrics_json_contract(compose_toy, tmp_path: Path):
    cfg = load_config(compose_toy("loss=kd"))
    run_dir = tmp_path / "run"
    pipeline.run(cfg, run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("dataset", "imbalance_factor", "teacher_arch", "student_arch", "loss", "seed", "train_counts",
                "groups", "teacher", "student", "epochs", "wall_time_s"):
        assert key in metrics
    assert metrics["dataset"] == "cifar100_lt" and metrics["imbalance_factor"] == 10
    counts = metrics["train_counts"]
    assert counts[0] == 12 and counts[-1] == 1 and len(counts) == 100
    groups = metrics["groups"]
    assert [len(groups[g]) for g in ("head", "medium", "tail")] == [33, 34, 33]
    assert sorted(groups["head"] + groups["medium"] + groups["tail"]) == list(range(100))
    assert min(counts[c] for c in groups["head"]) >= max(counts[c] for c in groups["tail"])
    per_class = metrics["student"]["final"]["per_class"]
    head = sum(per_class[c] for c in groups["head"]) / 33
    assert metrics["student"]["final"]["head"] == pytest.approx(head)
    assert (run_dir / "per_class_accuracy.png").stat().st_size > 1000
    assert (run_dir / "student.pt").exists()


def test_cli_runs_then_reports_complete(fake_cifar_root: Path, tmp_path: Path):
    args = toy_overrides(fake_cifar_root, tmp_path / "cache", "loss=ltkd", f"hydra.run.dir={tmp_path / 'run'}")
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "head" in first.stdout and "tail" in first.stdout and "overall" in first.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["loss"] == "ltkd"
    second = run_cli(*args, cwd=tmp_path)
    assert second.returncode == 0 and "run complete" in second.stdout
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics


def test_run_directory_is_derived_from_the_config(fake_cifar_root: Path, tmp_path: Path):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    import ltkd.train  # registers the run_dir resolver

    overrides = toy_overrides(fake_cifar_root, tmp_path, "loss=kd", "loss.alpha=0.5", "paths.output_root=out")
    with initialize_config_dir(config_dir=ltkd.recipes.CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    assert cfg.hydra.run.dir == "out/cifar100_lt-g10/resnet8-resnet8/kd/seed0,dataset.n_max=12,loss.alpha=0.5," \
        "teacher.arch=resnet8,trainer=smoke".replace("teacher.arch=resnet8,", "")


def test_bad_value_stops_with_one_line_and_status_2(fake_cifar_root: Path, tmp_path: Path):
    args = toy_overrides(fake_cifar_root, tmp_path / "cache", "trainer.epochs=0",
                         f"hydra.run.dir={tmp_path / 'run'}")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: trainer.epochs: 0; must be >= 1"]
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_debug_shows_the_traceback(fake_cifar_root: Path, tmp_path: Path):
    args = toy_overrides(fake_cifar_root, tmp_path / "cache", "trainer.epochs=0", "debug=true",
                         f"hydra.run.dir={tmp_path / 'run'}")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ltkd.errors.ConfigError: trainer.epochs: 0; must be >= 1" in proc.stderr
