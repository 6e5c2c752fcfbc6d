"""Experiments: teacher cache (reuse, concurrency, corruption), Hydra multirun + table, W&B offline output."""

from __future__ import annotations

import csv
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ltkd import pipeline, stages
from ltkd.config import load_config
from ltkd.engine import PREEMPTED_EXIT_CODE
from ltkd.errors import CheckpointError
from ltkd.recipes import CONFIG_DIR
from tests.helpers import ROOT, run_cli, start_cli, toy_overrides, wait_for


def teacher_final(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["teacher"]["final"]


def test_teacher_is_trained_once_and_reused(compose_toy, tmp_path: Path, capsys):
    cache = tmp_path / "cache"
    first = pipeline.run(load_config(compose_toy("loss=kd", f"paths.teacher_cache={cache}")), tmp_path / "a")
    out_first = capsys.readouterr().out
    second = pipeline.run(load_config(compose_toy("loss=ltkd", f"paths.teacher_cache={cache}")), tmp_path / "b")
    out_second = capsys.readouterr().out
    assert "loaded from cache" not in out_first and "loaded from cache" in out_second
    assert len(list(cache.glob("*.pt"))) == 1 and not list(cache.glob("*.ckpt"))
    assert first["teacher"]["final"] == second["teacher"]["final"]
    assert first["teacher"]["source"] == second["teacher"]["source"]


def test_given_teacher_checkpoint_skips_stage_1_and_reports_that_teacher(compose_toy, tmp_path: Path, monkeypatch):
    from ltkd.teacher_cache import TeacherCache, teacher_key

    cfg = load_config(compose_toy("loss=kd"))
    first = pipeline.run(cfg, tmp_path / "first")  # its teacher is in the session's cache
    entry = TeacherCache(cfg.paths.teacher_cache, teacher_key(cfg, bf16=False)).path

    def no_training(*args, **kwargs):
        raise AssertionError("stage 1 ran although teacher.checkpoint was given")

    monkeypatch.setattr(stages, "train_teacher", no_training)
    # a teacher cache entry, and a student.pt (resnet8 here, as the teacher): each reported as the teacher
    for given, expected in ((entry, first["teacher"]["final"]), (tmp_path / "first" / "student.pt",
                                                                   first["student"]["final"])):
        cfg = load_config(compose_toy("loss=ltkd", f"teacher.checkpoint={given}",
                                      f"paths.teacher_cache={tmp_path / 'unused'}"))
        metrics = pipeline.run(cfg, tmp_path / given.stem)
        assert metrics["teacher"]["source"] == str(given)
        assert metrics["teacher"]["final"] == expected  # evaluated again on this run's test set
    # no teacher trained or cached there (only the shared outputs of the given teacher)
    assert {p.name for p in (tmp_path / "unused").iterdir()} <= {"outputs"}


def test_cache_key_separates_what_determines_a_teacher(compose_toy, tmp_path: Path):
    from ltkd.teacher_cache import TeacherCache, teacher_key

    def name(*overrides: str) -> str:
        return TeacherCache(tmp_path, teacher_key(load_config(compose_toy(*overrides)), bf16=False)).name

    base = name("loss=kd")
    assert name("loss=ltkd") == base and name("loss.alpha=3") == base and name("student.arch=resnet20") == base
    for different in ("seed=1", "dataset.imbalance_factor=5", "dataset.seed=1", "teacher.arch=resnet20",
                      "trainer.epochs=3", "trainer.lr=0.1"):
        assert name(different) != base, different


def test_concurrent_runs_train_one_shared_teacher(fake_cifar_root: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    procs = [start_cli(toy_overrides(fake_cifar_root, cache, f"loss={loss}", f"hydra.run.dir={tmp_path / loss}"),
                       tmp_path) for loss in ("kd", "ltkd")]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][1][-1500:] + outputs[1][1][-1500:]
    assert sum("loaded from cache" in out for out, _ in outputs) == 1  # one trained it, the other waited
    assert teacher_final(tmp_path / "kd") == teacher_final(tmp_path / "ltkd")
    assert len(list(cache.glob("*.pt"))) == 1


def test_smaller_balanced_test_set_for_smoke_runs(compose_toy, tmp_path: Path):
    metrics = pipeline.run(load_config(compose_toy("loss=ce", "dataset.max_test_per_class=1")), tmp_path / "run")
    per_class = metrics["student"]["final"]["per_class"]
    assert len(per_class) == 100 and set(per_class) <= {0.0, 100.0}  # one test image per class
    assert metrics["student"]["final"]["overall"] == pytest.approx(sum(per_class) / 100)


def test_corrupt_cache_entry_is_never_used(compose_toy, tmp_path: Path):
    cache = tmp_path / "cache"
    cfg = load_config(compose_toy("loss=kd", f"paths.teacher_cache={cache}"))
    pipeline.run(cfg, tmp_path / "a")
    (entry,) = cache.glob("*.pt")
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=entry.name):
        pipeline.run(load_config(compose_toy("loss=ltkd", f"paths.teacher_cache={cache}")), tmp_path / "b")


def test_smoke_multirun_and_table(fake_cifar_root: Path, tmp_path: Path):
    sweep = tmp_path / "sweep"
    args = ["-m", *toy_overrides(fake_cifar_root, tmp_path / "cache", "loss=kd,ltkd",
                                 "dataset.imbalance_factor=5,10", f"hydra.sweep.dir={sweep}")]
    proc = run_cli(*args, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = sorted(sweep.rglob("metrics.json"))
    assert len(found) == 4
    assert {(m["loss"], m["imbalance_factor"]) for m in map(lambda p: json.loads(p.read_text()), found)} == {
        ("kd", 5), ("kd", 10), ("ltkd", 5), ("ltkd", 10)}
    assert all(p.parent.parent.name in ("kd", "ltkd") for p in found)  # <dataset-γ>/<pair>/<loss>/<seed...>
    table = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_table.py"), str(sweep), "--name", "toy",
                            "--out", str(tmp_path / "results")], capture_output=True, text=True, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    with open(tmp_path / "results" / "toy.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["imbalance_factor"], r["method"]) for r in rows] == [
        ("10", "teacher"), ("10", "kd"), ("10", "ltkd"), ("5", "teacher"), ("5", "kd"), ("5", "ltkd")]
    assert "REDUCED SCALE" in (tmp_path / "results" / "toy.md").read_text()


def test_rerunning_a_sweep_skips_finished_jobs_and_resumes_unfinished_ones(fake_cifar_root: Path, tmp_path: Path):
    sweep = tmp_path / "sweep"
    args = ["-m", *toy_overrides(fake_cifar_root, tmp_path / "cache", "loss=kd,ltkd", "trainer.epochs=4",
                                 "trainer.lr_milestones=[3]", f"hydra.sweep.dir={sweep}")]
    first = start_cli(args, tmp_path)  # interrupted once the second job (ltkd) has its first checkpoint
    wait_for(lambda: any(sweep.glob("**/ltkd/*/checkpoints/student.ckpt")), first)
    first.kill()
    first.communicate()
    (kd_metrics,) = sweep.glob("**/kd/*/metrics.json")
    kd_before = kd_metrics.read_bytes()
    assert not any(sweep.glob("**/ltkd/*/metrics.json"))
    again = run_cli(*args, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "run complete" in again.stdout and "[student] resuming from" in again.stdout
    assert kd_metrics.read_bytes() == kd_before  # the finished job was not rerun
    (ltkd_metrics,) = sweep.glob("**/ltkd/*/metrics.json")
    assert [h["epoch"] for h in json.loads(ltkd_metrics.read_text())["student"]["history"]] == [1, 2, 3, 4]


PRESETS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_experiment_preset_composes_and_validates(preset: str, tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        raw = compose("train", overrides=[f"experiment={preset}", f"data.root={tmp_path}"], return_hydra_config=True)
    cfg = load_config(raw)
    params = dict(raw.hydra.sweeper.params or {})
    if preset in ("table_cifar100_lt", "table_tinyimagenet_lt", "table_imagenet_lt"):
        assert set(params) == {"dataset.imbalance_factor", "pair", "loss"}
        assert params["loss"] == "ce,kd,dkd,reviewkd,ltkd"
        for pair in params["pair"].split(","):
            assert (Path(CONFIG_DIR) / "pair" / f"{pair}.yaml").exists()
    if preset == "table_cifar100_lt_g100_resnet32x4_resnet8x4":
        assert (cfg.dataset.imbalance_factor, cfg.teacher.arch, cfg.student.arch) == (100, "resnet32x4", "resnet8x4")
        assert params["loss"].split(",")[:2] == ["ltkd", "kd"] and cfg.trainer.epochs == 240
    if preset == "table_ablation":
        assert cfg.loss.name == "ltkd" and set(params) == {"loss.rebalance", "loss.reweight"}
    if preset == "table_imagenet_lt":
        assert cfg.dataset.name == "imagenet_lt" and cfg.trainer.epochs == 100  # loss values: test_loss_presets


def wandb_run_records(path: Path) -> list:
    """The run records (job type, group, tags, ...) of a .wandb file: a LevelDB-style log of protobuf Records
    (7-byte file header; 32 KiB blocks of chunks with a 7-byte header: CRC, length, type FULL/FIRST/MIDDLE/LAST)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block, header = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B"
    pos, pending, runs = header, b"", []
    while pos + header <= len(data):
        room = block - pos % block
        if room < header:
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + header])
        pending += data[pos + header:pos + header + length]
        pos += header + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = Record.FromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "run":
                runs.append(record.run)
    return runs


def test_wandb_records_job_group_tags_metrics_and_charts_offline_without_credentials(
        fake_cifar_root: Path, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # no mode forced: no credentials must mean offline
    run = tmp_path / "run"
    args = toy_overrides(fake_cifar_root, tmp_path / "cache", "loss=ltkd", "logger=wandb", f"hydra.run.dir={run}")
    args.remove("logger=none")
    proc = run_cli(*args, cwd=tmp_path, env_extra={"WANDB_API_KEY": "", "HOME": str(tmp_path), "NETRC": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 2  # one W&B run for the teacher stage, one for the student stage
    for path, job_type in zip(runs, ("teacher", "student"), strict=True):
        records = wandb_run_records(path)
        assert records and {(r.job_type, r.run_group, tuple(r.tags)) for r in records} == {
            (job_type, "cifar100_lt-g10-resnet8-resnet8", ("ltkd", "cifar100_lt", "g10"))}
    teacher_log, student_log = (p.read_bytes() for p in runs)
    for log in (teacher_log, student_log):
        assert b"imbalance_factor" in log  # the config
    assert b"teacher" in teacher_log and b"teacher/test/tail" in teacher_log and b"teacher/lr" in teacher_log
    for key in (b"student", b"student/test/overall", b"student/train/loss_kd", b"student/per_class_chart",
                b"teacher/per_class", b"teacher/tail", b"student/ltkd/teacher_mass_tail",
                b"student/ltkd/rebalance_factor_head", b"group_mass/teacher train T=1 head"):
        assert key in student_log, key


PARALLEL = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def toy_multirun(data_root: Path, tmp_path: Path, name: str, *overrides: str, env_extra: dict | None = None):
    args = ["-m", *toy_overrides(data_root, tmp_path / f"{name}-cache", "loss=kd,ltkd", "deterministic=true",
                                 f"hydra.sweep.dir={tmp_path / name}", *overrides)]
    return run_cli(*args, cwd=tmp_path, env_extra=env_extra, timeout=600)


def sweep_metrics(sweep: Path) -> dict[str, dict]:
    found = (json.loads(p.read_text()) for p in sweep.rglob("metrics.json"))
    return {m["loss"]: {who: m[who]["final"] for who in ("teacher", "student")} for m in found}


@pytest.mark.slow  # two sweeps (~50 s); test_concurrent_runs_train_one_shared_teacher stays fast
def test_parallel_multirun_trains_the_teacher_once_and_matches_the_sequential_one(fake_cifar_root: Path,
                                                                                  tmp_path: Path):
    sequential = toy_multirun(fake_cifar_root, tmp_path, "sequential")
    parallel = toy_multirun(fake_cifar_root, tmp_path, "parallel", *PARALLEL)
    assert sequential.returncode == 0 and parallel.returncode == 0, parallel.stderr[-2000:]
    assert "Joblib.Parallel(n_jobs=2" in parallel.stdout  # the jobs really ran in two worker processes
    assert parallel.stdout.count("loaded from cache") == 1  # one job trained the teacher, the other loaded it
    assert len(list((tmp_path / "parallel-cache").glob("*.pt"))) == 1
    expected = sweep_metrics(tmp_path / "sequential")
    assert set(expected) == {"kd", "ltkd"} and sweep_metrics(tmp_path / "parallel") == expected


def test_parallel_multirun_honours_the_time_limit_in_every_job(fake_cifar_root: Path, tmp_path: Path):
    # 300 epochs need minutes; the budget stops them. The mechanism is asserted, not the wall clock (a loaded
    # machine may take longer than the budget to start two jobs): each job reports its own time-limit stop.
    long = ["trainer.epochs=300", "trainer.time_limit=30s"]
    proc = toy_multirun(fake_cifar_root, tmp_path, "budget", *PARALLEL, *long)
    assert proc.returncode == PREEMPTED_EXIT_CODE, proc.stderr[-2000:]
    assert "2 jobs, 0 succeeded, 0 failed, 2 stopped before finishing" in proc.stderr, proc.stderr[-3000:]
    stops = re.findall(r"^  job \d .* exit 75: .*time limit", proc.stderr, flags=re.M)
    assert len(stops) == 2, proc.stderr[-3000:]  # each job stopped on the budget itself
    assert not list((tmp_path / "budget").rglob("metrics.json"))
