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

from ltkd.build import student_distiller
from ltkd.config import RunConfig, load_config
from ltkd.distributed import mean_over_ranks
from ltkd.losses import ltkd_loss, teacher_group_mean
from ltkd.recipes import CONFIG_DIR
from tests.helpers import ROOT, biased_teacher, context, join_gloo, run_cli, spawn, toy_overrides


def summary(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {who: {k: metrics[who]["final"][k] for k in ("overall", "head", "medium", "tail")}
            for who in ("teacher", "student")}


@pytest.mark.slow  # two whole toy runs under torchrun-like spawning (~35 s); the rank reductions are fast below
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(fake_cifar_root: Path, tmp_path: Path):
    common = ["loss=ltkd", "loss.warmup_epochs=0", "trainer.sync_bn=true", "deterministic=true",
              "trainer.batch_size=16"]
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
        for term in ("train/loss_ce", "train/loss_kd"):  # no warm-up: the LTKD term counts in full
            assert b[term] == pytest.approx(a[term], rel=1e-4), (term, a, b)
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


def _shard(rank: int, n: int) -> slice:
    return slice(rank * n // 2, (rank + 1) * n // 2)


def _stage2_worker(rank: int, init_file: str, cfg: RunConfig, images: torch.Tensor, target: torch.Tensor,
                   out: dict) -> None:
    ctx = context(cfg, Path(init_file).parent, join_gloo(rank, init_file))
    distiller = student_distiller(ctx, biased_teacher(cfg)).eval()  # eval: no batch-norm batch statistics
    shard = _shard(rank, len(images))
    out[rank] = distiller(images[shard], target[shard], 1)[1]["loss_kd"].detach()
    dist.destroy_process_group()


@pytest.mark.parametrize("global_stats", [True, False])
def test_ltkd_global_stats_switch_under_ddp(global_stats: bool, compose_toy, tmp_path: Path):
    """The config's switch, through the pipeline's builder: true = the global batch's statistics (the rank
    losses average to the one-process loss on the whole batch), false = each rank's own."""
    switch = f"loss.global_stats={str(global_stats).lower()}"
    cfg = load_config(compose_toy("loss=ltkd", "loss.warmup_epochs=0", switch))
    gen = torch.Generator().manual_seed(0)
    images, target = torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 100, (8,), generator=gen)
    images[:4] *= 30  # the ranks' halves have very different teacher group distributions
    ranks = spawn(_stage2_worker, str(tmp_path / "init"), cfg, images, target)
    one = student_distiller(context(cfg, tmp_path), biased_teacher(cfg)).eval()
    whole = one(images, target, 1)[1]["loss_kd"].detach()
    halves = [one(images[_shard(r, 8)], target[_shard(r, 8)], 1)[1]["loss_kd"].detach() for r in (0, 1)]
    ddp = (ranks[0] + ranks[1]) / 2  # DDP averages the ranks' gradients, i.e. their losses
    torch.testing.assert_close(ddp, whole if global_stats else (halves[0] + halves[1]) / 2)
    assert abs(float(whole) - float(halves[0] + halves[1]) / 2) > 1e-3 * float(whole)


def _eval_worker(rank: int, init_file: str, cfg: RunConfig, means: torch.Tensor, out: dict) -> None:
    ctx = context(cfg, Path(init_file).parent, join_gloo(rank, init_file))
    out[rank] = ctx.evaluator(NearestMean(means))()
    dist.destroy_process_group()


class NearestMean(torch.nn.Module):
    """Predicts the class whose mean image is nearest: right on (almost) every fake test image."""

    def __init__(self, means: torch.Tensor) -> None:
        super().__init__()
        self.means = means

    def forward(self, images: torch.Tensor):
        distances = torch.cdist(images.flatten(1), self.means.flatten(1))
        return -distances, {}


def test_evaluation_counts_every_test_image_once_over_the_ranks(compose_toy, tmp_path: Path):
    cfg = load_config(compose_toy("loss=ce"))
    ctx = context(cfg, tmp_path)
    batches = list(ctx.loader(train=False, stage="eval"))
    images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    means = torch.stack([images[labels == c].mean(dim=0) for c in range(100)])
    one = ctx.evaluator(NearestMean(means))()
    assert one.per_class == [100.0] * 100  # not at chance: every test image is classified right
    ranks = spawn(_eval_worker, str(tmp_path / "init"), cfg, means)
    assert ranks[0] == ranks[1] == one


def test_slurm_launcher_config_composes(tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                          "experiment=table_cifar100_lt"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.max_num_timeout > 0
    assert launcher.additional_parameters.requeue is True


@pytest.mark.slow
def test_sweep_runs_through_submitits_local_executor(fake_cifar_root: Path, tmp_path: Path):
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
            *toy_overrides(fake_cifar_root, tmp_path / "cache", "loss=kd,ltkd", f"hydra.sweep.dir={sweep}")]
    proc = run_cli(*args, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    losses = sorted(json.loads(p.read_text())["loss"] for p in sweep.rglob("metrics.json"))
    assert losses == ["kd", "ltkd"]
