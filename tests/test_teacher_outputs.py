"""The teacher's outputs computed once per epoch and shared by a row's students: the same students, bit for
bit, as with a live teacher (also across SIGTERM / SIGKILL and resume); live teacher where sharing can't serve."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ltkd import pipeline
from ltkd.checkpoint import load_checkpoint
from ltkd.config import load_config
from ltkd.data.loaders import DeviceLoader
from ltkd.distillers import KD, ReviewKD
from ltkd.engine import PREEMPTED_EXIT_CODE, StopSignal
from ltkd.errors import CheckpointError, OutputError
from ltkd.teacher_cache import file_lock
from ltkd.teacher_outputs import OutputStore, ReplayTeacher, SharedOutputsLoader, live_teacher_reason
from tests.helpers import LONGER, accuracies, run_cli, start_cli, toy_overrides, wait_for


def student_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "student.pt")["state_dict"]


def assert_same_student(run: Path, reference: Path) -> None:
    assert accuracies(run)["student"] == accuracies(reference)["student"]
    weights, expected = student_weights(run), student_weights(reference)
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[k], expected[k]) for k in expected)


def test_a_row_runs_the_teacher_once_per_epoch_and_its_students_equal_live_ones(compose_toy, tmp_path: Path,
                                                                               monkeypatch, capsys):
    computed = []
    compute = SharedOutputsLoader.compute

    def counting(self, epoch):
        computed.append(epoch)
        return compute(self, epoch)

    monkeypatch.setattr(SharedOutputsLoader, "compute", counting)
    cache = f"paths.teacher_cache={tmp_path / 'cache'}"

    def run(name: str, *overrides: str) -> Path:
        pipeline.run(load_config(compose_toy("deterministic=true", cache, *overrides)), tmp_path / name)
        return tmp_path / name

    live = {loss: run(f"live-{loss}", f"loss={loss}", "trainer.share_teacher=false") for loss in ("kd", "ltkd")}
    assert computed == [] and "live teacher: trainer.share_teacher=false" in capsys.readouterr().out
    run("shared-dkd", "loss=dkd")  # the first student of the row computes every epoch
    shared = {loss: run(f"shared-{loss}", f"loss={loss}") for loss in ("kd", "ltkd")}
    run("shared-grid", "loss=ltkd", "loss.alpha=2", "loss.beta=4")
    assert computed == [1, 2]  # once per epoch for four students
    assert "teacher outputs shared in" in capsys.readouterr().out
    assert len(list((tmp_path / "cache" / "outputs").glob("*/epoch*.pt"))) == 2
    for loss in ("kd", "ltkd"):
        assert_same_student(shared[loss], live[loss])


@pytest.mark.parametrize("loss", ["ltkd", pytest.param("kd", marks=pytest.mark.slow)])
def test_shared_student_resumed_after_sigterm_and_sigkill_equals_a_live_uninterrupted_one(
        loss: str, fake_cifar_root: Path, tmp_path: Path):
    common = [*LONGER, f"loss={loss}"]
    reference = tmp_path / "live"
    live = run_cli(*toy_overrides(fake_cifar_root, tmp_path / "live-cache", *common, "trainer.share_teacher=false",
                                  f"hydra.run.dir={reference}"), cwd=tmp_path)
    assert live.returncode == 0, live.stderr[-2000:]
    run = tmp_path / "run"
    checkpoint = run / "checkpoints" / "student.ckpt"
    args = toy_overrides(fake_cifar_root, tmp_path / "cache", *common, f"hydra.run.dir={run}")
    proc = start_cli(args, tmp_path)
    wait_for(checkpoint.exists, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE, stderr[-2000:]
    assert "teacher outputs shared in" in stdout
    first_stop = load_checkpoint(checkpoint)
    assert first_stop["skip_steps"] > 0  # saved inside the epoch
    proc = start_cli(args, tmp_path)  # resumes, then is killed after its next checkpoint
    wait_for(lambda: load_checkpoint(checkpoint)["next_epoch"] > first_stop["next_epoch"], proc)
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stderr[-2000:]
    assert_same_student(run, reference)


def test_reviewkd_keeps_a_live_teacher_and_says_why(compose_toy, tmp_path: Path, capsys):
    pipeline.run(load_config(compose_toy("loss=reviewkd", f"paths.teacher_cache={tmp_path / 'cache'}")),
                 tmp_path / "run")
    assert "[student] live teacher: loss=reviewkd needs the teacher's features" in capsys.readouterr().out
    assert not (tmp_path / "cache" / "outputs").exists()


def test_live_teacher_reasons(compose_toy):
    cfg = load_config(compose_toy("loss=kd"))
    ctx = SimpleNamespace(cfg=cfg, dist=SimpleNamespace(enabled=False))
    kd = KD.__new__(KD)
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    device_loader = DeviceLoader(images, torch.zeros(4), batch_size=2, train=True, mean=[0.0] * 3, std=[1.0] * 3,
                                 pad=0, device="cpu")
    assert live_teacher_reason(ctx, kd, device_loader) is None
    assert "not held in memory" in live_teacher_reason(ctx, kd, object())
    assert "needs the teacher's features" in live_teacher_reason(ctx, ReviewKD.__new__(ReviewKD), device_loader)
    assert "DDP" in live_teacher_reason(SimpleNamespace(cfg=cfg, dist=SimpleNamespace(enabled=True)), kd,
                                        device_loader)


class CountingTeacher(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, dict]:
        self.calls += 1
        return images.flatten(1)[:, :5] * 3, {}


def toy_job(store: OutputStore, teacher: CountingTeacher, stop: StopSignal) -> SharedOutputsLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8, generator=generator)
    loader = DeviceLoader(images, torch.arange(8), batch_size=4, train=True, mean=[0.5] * 3, std=[0.2] * 3,
                          pad=1, device="cpu", seed=3)
    runtime = SimpleNamespace(device=torch.device("cpu"), autocast=contextlib.nullcontext)
    return SharedOutputsLoader(loader, ReplayTeacher(teacher), store, stop, runtime)


def test_jobs_compute_an_epoch_once_replay_it_exactly_and_run_live_when_stopped_while_waiting(tmp_path: Path):
    store = OutputStore(tmp_path, {"dataset": "toy", "imbalance_factor": 1, "teacher_arch": "t", "stage_seed": 3})
    teacher = CountingTeacher()
    first, second = toy_job(store, teacher, StopSignal()), toy_job(store, teacher, StopSignal())
    first.set_epoch(1)
    assert teacher.calls == 2  # the epoch's two batches
    second.set_epoch(1)
    assert teacher.calls == 2  # read, not recomputed
    for images, _ in second:
        assert torch.equal(second.replay(images)[0], teacher(images)[0])  # the live teacher's exact output
    stopping = StopSignal()
    stopping.received = signal.SIGTERM
    with file_lock(store.directory / "compute.lock"):  # another job is computing epoch 2
        waiting = toy_job(store, CountingTeacher(), stopping)
        waiting.set_epoch(2)
    assert waiting.logits is None and not store.path(2).exists()  # gave up: its next step runs the teacher live
    images, _ = next(iter(waiting))
    assert torch.equal(waiting.replay(images)[0], waiting.replay.live(images)[0])


def test_a_damaged_or_foreign_entry_stops_with_its_path(tmp_path: Path):
    key = {"dataset": "toy", "imbalance_factor": 1, "teacher_arch": "t", "stage_seed": 3}
    toy_job(OutputStore(tmp_path, key), CountingTeacher(), StopSignal()).set_epoch(1)
    foreign = toy_job(OutputStore(tmp_path, key), CountingTeacher(), StopSignal())
    foreign.store.key = {**key, "teacher": "another"}  # same file name, another configuration inside
    with pytest.raises(CheckpointError, match="another configuration"):
        foreign.set_epoch(1)
    entry = OutputStore(tmp_path, key).path(1)
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])  # a half-written entry (a flipped byte: tests/test_checkpoint.py)
    with pytest.raises(CheckpointError, match=entry.name):
        toy_job(OutputStore(tmp_path, key), CountingTeacher(), StopSignal()).set_epoch(1)


def test_a_store_that_cannot_be_written_leaves_the_student_on_its_live_teacher(tmp_path: Path, monkeypatch,
                                                                                capsys):
    def read_only(self, epoch, logits):
        raise OutputError(f"cannot write {self.path(epoch)}: Read-only file system")

    monkeypatch.setattr(OutputStore, "write", read_only)
    teacher = CountingTeacher()
    job = toy_job(OutputStore(tmp_path, {"dataset": "toy", "imbalance_factor": 1, "teacher_arch": "t",
                                         "stage_seed": 3}), teacher, StopSignal())
    job.set_epoch(1)
    assert job.logits is None and "live teacher from now on: cannot store" in capsys.readouterr().out
    job.set_epoch(2)
    assert job.logits is None and teacher.calls == 2  # no second attempt to compute and store
