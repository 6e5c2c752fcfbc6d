"""Preemption-safe resume and clear errors: kill at several points, SIGTERM, corrupt files, NaN, bad input."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from ltkd import pipeline
from ltkd.checkpoint import load_checkpoint, save_checkpoint
from ltkd.config import load_config
from ltkd.distillers import Distiller
from ltkd.engine import PREEMPTED_EXIT_CODE, NonFiniteLoss, StopSignal
from ltkd.errors import CheckpointError, DataError
from tests.helpers import KILL_POINTS, LONGER, accuracies, run_cli, start_cli, toy_overrides, wait_for


@pytest.fixture(scope="module")
def uninterrupted(fake_cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("reference")
    proc = run_cli(*toy_overrides(fake_cifar_root, tmp / "cache", *LONGER, f"hydra.run.dir={tmp / 'run'}"), cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return accuracies(tmp / "run")


# the student stage in the fast suite; the teacher stage and between the stages in `make test-all`
@pytest.mark.parametrize("point", [pytest.param(p, marks=[] if p == "student" else pytest.mark.slow)
                                   for p in KILL_POINTS])
def test_sigkill_then_resume_matches_an_uninterrupted_run(point: str, uninterrupted: dict, fake_cifar_root: Path,
                                                          tmp_path: Path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    args = toy_overrides(fake_cifar_root, cache, *LONGER, f"hydra.run.dir={run}")
    proc = start_cli(args, tmp_path)
    wait_for(lambda: KILL_POINTS[point](cache, run), proc)
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists()
    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert ("loaded from cache" if point == "between" else "resuming from") in resumed.stdout
    assert accuracies(run) == uninterrupted


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGUSR1, marks=pytest.mark.slow)])
def test_stop_signal_saves_mid_epoch_and_resumes_exactly(signum: int, uninterrupted: dict, fake_cifar_root: Path,
                                                         tmp_path: Path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    args = toy_overrides(fake_cifar_root, cache, *LONGER, f"hydra.run.dir={run}")
    proc = start_cli(args, tmp_path)
    wait_for(lambda: KILL_POINTS["student"](cache, run), proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE, stderr[-2000:]
    assert "checkpoint saved" in stderr
    state = load_checkpoint(run / "checkpoints" / "student.ckpt")
    assert state["skip_steps"] > 0  # saved inside the epoch, not at its end
    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout
    assert accuracies(run) == uninterrupted


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])  # SIGUSR1: Slurm's preemption notice
def test_stop_signals_are_recorded_while_installed(signum: int):
    stop = StopSignal()
    before = signal.getsignal(signum)
    with stop.installed():
        os.kill(os.getpid(), signum)
        assert stop.received == signum
    assert signal.getsignal(signum) is before  # the previous handler is back


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(compose_toy, tmp_path: Path, monkeypatch):
    original = Distiller.forward

    def poisoned(self, images, target, epoch):
        logits, losses = original(self, images, target, epoch)
        if self.teacher is not None and epoch == 2:
            losses["loss_ce"] = losses["loss_ce"] * float("nan")
        return logits, losses

    monkeypatch.setattr(Distiller, "forward", poisoned)
    cfg = load_config(compose_toy("loss=kd", "trainer.epochs=3", "trainer.lr_milestones=[2]"))
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss at epoch 2, step 0; the last good checkpoint is "
                       r"kept in .*student\.ckpt \(lower trainer\.lr"):
        pipeline.run(cfg, tmp_path / "run")
    kept = load_checkpoint(tmp_path / "run" / "checkpoints" / "student.ckpt")
    assert kept["next_epoch"] == 2
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_non_finite_loss_in_the_first_epoch_claims_no_checkpoint(compose_toy, tmp_path: Path, monkeypatch):
    original = Distiller.forward

    def poisoned(self, images, target, epoch):
        logits, losses = original(self, images, target, epoch)
        if self.teacher is not None:
            losses["loss_ce"] = losses["loss_ce"] * float("nan")
        return logits, losses

    monkeypatch.setattr(Distiller, "forward", poisoned)
    cfg = load_config(compose_toy("loss=kd", "trainer.epochs=3", "trainer.lr_milestones=[2]"))
    with pytest.raises(NonFiniteLoss) as info:
        pipeline.run(cfg, tmp_path / "run")
    assert "non-finite loss at epoch 1, step 0; no checkpoint was saved yet (lower trainer.lr" in str(info.value)
    assert not (tmp_path / "run" / "checkpoints" / "student.ckpt").exists()


def test_truncated_student_checkpoint_is_reported_not_retrained(compose_toy, tmp_path: Path):
    ckpt = tmp_path / "run" / "checkpoints" / "student.ckpt"
    ckpt.parent.mkdir(parents=True)
    save_checkpoint(ckpt, {"stage": "student"})
    ckpt.write_bytes(ckpt.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="truncated"):
        pipeline.run(load_config(compose_toy("loss=kd")), tmp_path / "run")
    assert ckpt.stat().st_size == 40  # left for the user to inspect, not overwritten


def test_corrupt_dataset_file_is_a_clear_error(compose_toy, fake_cifar_root: Path, tmp_path: Path):
    broken = tmp_path / "data" / "cifar-100-python"
    broken.mkdir(parents=True)
    for name in ("train", "test", "meta"):
        (broken / name).write_bytes((fake_cifar_root / "cifar-100-python" / name).read_bytes()[:100])
    cfg = load_config(compose_toy("loss=kd", f"data.root={tmp_path / 'data'}"))
    with pytest.raises(DataError, match="cifar-100-python"):
        pipeline.run(cfg, tmp_path / "run")


def test_teacher_checkpoint_of_another_architecture_is_refused(compose_toy, tmp_path: Path):
    path = tmp_path / "teacher.pt"
    save_checkpoint(path, {"arch": "resnet8", "num_classes": 100, "state_dict": {}})
    cfg = load_config(compose_toy("loss=kd", "teacher.arch=resnet20", f"teacher.checkpoint={path}"))
    with pytest.raises(CheckpointError, match="holds resnet8 with 100 classes; this run needs resnet20 with 100"):
        pipeline.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before any work


def test_missing_data_with_downloads_off_is_one_line_exit_2(tmp_path: Path):
    args = toy_overrides(tmp_path / "nowhere", tmp_path / "cache", f"hydra.run.dir={tmp_path / 'run'}")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cifar-100-python" in lines[0] and "Traceback" not in proc.stderr


def test_rejected_command_leaves_an_earlier_run_untouched(fake_cifar_root: Path, tmp_path: Path):
    run = tmp_path / "run"
    good = toy_overrides(fake_cifar_root, tmp_path / "cache", "loss=kd", f"hydra.run.dir={run}")
    assert run_cli(*good, cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    bad = run_cli(*good, "loss.temperature=-1", cwd=tmp_path)
    assert bad.returncode == 2 and "loss.temperature: -1; must be > 0" in bad.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before



class _Reached(Exception):
    pass


def test_a_run_sweeps_the_temps_of_writers_killed_before_it(compose_toy, tmp_path: Path, monkeypatch):
    from types import SimpleNamespace

    from ltkd import stages
    from ltkd.checkpoint import STALE_TEMP_AGE_S
    from tests.helpers import plant_temps

    run, cache = tmp_path / "run", tmp_path / "cache"
    cfg = load_config(compose_toy("loss=kd", f"paths.teacher_cache={cache}", f"data.root={tmp_path / 'none'}"))
    old = [*plant_temps(run, "config.yaml", "metrics.json", age_s=STALE_TEMP_AGE_S + 1),
           *plant_temps(run / "checkpoints", "student.ckpt", age_s=STALE_TEMP_AGE_S + 1),
           *plant_temps(cache, "cifar100_lt-g10-resnet8-seed0-0123456789abcdef.pt", age_s=STALE_TEMP_AGE_S + 1)]
    fresh = plant_temps(cache, "another-jobs-teacher.pt", age_s=1)
    with pytest.raises(DataError, match="cifar-100-python"):  # the run directory is swept before anything else
        pipeline.run(cfg, run)
    assert not any(p.exists() for p in old[:3]) and all(p.exists() for p in old[3:])

    def reached(*args, **kwargs):
        raise _Reached

    monkeypatch.setattr(stages, "broadcast_object", reached)  # the first thing after opening the cache
    ctx = SimpleNamespace(cfg=cfg, new_model=lambda *args: None, runtime=SimpleNamespace(bf16=False), dist=None)
    with pytest.raises(_Reached):
        stages.obtain_teacher(ctx, None)
    assert not any(p.exists() for p in old) and all(p.exists() for p in fresh)
