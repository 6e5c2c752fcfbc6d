"""torchrun / DDP on the CPU (gloo) and the Slurm launcher config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra import compose, initialize_config_dir

from ltkd.distributed import mean_over_ranks
from ltkd.losses import ltkd_loss, teacher_group_mean
from ltkd.train import CONFIG_DIR
from tests.conftest import toy_overrides
from tests.test_train import ROOT, run_cli


def summary(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {who: {k: metrics[who]["final"][k] for k in ("overall", "head", "medium", "tail")}
            for who in ("teacher", "student")}


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(fake_cifar_root: Path, tmp_path: Path):
    common = ["loss=ltkd", "trainer.sync_bn=true", "deterministic=true", "trainer.batch_size=16"]
    one = run_cli(*toy_overrides(fake_cifar_root, tmp_path / "c1", *common, f"hydra.run.dir={tmp_path / 'one'}"),
                  cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    overrides = toy_overrides(fake_cifar_root, tmp_path / "c2", *common, f"hydra.run.dir={tmp_path / 'two'}")
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "ltkd.train", *overrides],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    single, double = summary(tmp_path / "one"), summary(tmp_path / "two")
    for who in ("teacher", "student"):
        for key, value in single[who].items():
            assert double[who][key] == pytest.approx(value, abs=1.0), (who, key, single, double)
    history = [json.loads((tmp_path / d / "metrics.json").read_text())["student"]["history"] for d in ("one", "two")]
    for a, b in zip(*history, strict=True):  # the training losses agree to float tolerance, epoch by epoch
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-3)
    assert len(list((tmp_path / "two").glob("wandb"))) == 0 and (tmp_path / "two" / "metrics.json").exists()


def _ltkd_worker(rank: int, world: int, init_file: str, logits_s: torch.Tensor, logits_t: torch.Tensor,
                 groups: torch.Tensor, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    shard = slice(rank * len(logits_s) // world, (rank + 1) * len(logits_s) // world)
    stats = mean_over_ranks(teacher_group_mean(logits_t[shard], groups, 4.0, num_groups=3))
    loss = ltkd_loss(logits_s[shard], logits_t[shard], groups, 1.0, 8.0, 4.0, group_stats=stats, num_groups=3)
    out[rank] = (stats, loss)
    dist.destroy_process_group()


def test_ltkd_statistics_reduced_over_ranks_equal_the_global_batch(tmp_path: Path):
    gen = torch.Generator().manual_seed(0)
    logits_s, logits_t = torch.randn(8, 12, generator=gen) * 3, torch.randn(8, 12, generator=gen) * 3
    groups = torch.tensor([0] * 4 + [1] * 4 + [2] * 4)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_ltkd_worker, args=(2, str(tmp_path / "init"), logits_s, logits_t, groups, out), nprocs=2)
        results = dict(out)
    full_stats = teacher_group_mean(logits_t, groups, 4.0, num_groups=3)
    for stats, _ in results.values():
        torch.testing.assert_close(stats, full_stats)
    full_loss = ltkd_loss(logits_s, logits_t, groups, 1.0, 8.0, 4.0, num_groups=3)
    torch.testing.assert_close((results[0][1] + results[1][1]) / 2, full_loss)  # DDP averages the rank losses
    per_rank = ltkd_loss(logits_s[:4], logits_t[:4], groups, 1.0, 8.0, 4.0, num_groups=3)
    assert not torch.allclose(per_rank, results[0][1])  # per-rank statistics would differ (global_stats=false)


def test_slurm_launcher_config_composes(tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                          "experiment=table_cifar100_lt"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.max_num_timeout > 0
    assert launcher.additional_parameters.requeue is True


def test_sweep_runs_through_submitits_local_executor(fake_cifar_root: Path, tmp_path: Path):
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
            *toy_overrides(fake_cifar_root, tmp_path / "cache", "loss=kd,ltkd", f"hydra.sweep.dir={sweep}")]
    proc = run_cli(*args, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    losses = sorted(json.loads(p.read_text())["loss"] for p in sweep.rglob("metrics.json"))
    assert losses == ["kd", "ltkd"]
