"""Tests that catch bugs an audit planted (issue 27 C): each fails with its bug in place."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from ltkd import pipeline
from ltkd.config import load_config
from ltkd.data import split_groups
from ltkd.data.loaders import DeviceLoader
from ltkd.distillers import KD, ReviewKD, build_distiller
from ltkd.distillers.kd import KDConfig
from ltkd.engine import EpochSums, Preempted, Stage, StopSignal
from ltkd.evaluation import accuracy_from_counts, class_counts
from ltkd.loggers import NullLogger
from ltkd.models import create_model
from ltkd.runtime import Runtime
from tests.helpers import CLASSES, MEAN, PLAIN_CE, STD, join_gloo, spawn, toy_problem

CPU = Runtime(torch.device("cpu"), bf16=False, channels_last=False)


def toy_stage(cfg, module, checkpoint: Path, stop: StopSignal | None = None) -> Stage:
    """A stage of `module` on a small toy problem (CPU, no logger; two steps an epoch)."""
    train, test = toy_problem(4, seed=0), toy_problem(2, seed=1)
    loader = DeviceLoader(train.images, train.labels, batch_size=20, train=True, mean=MEAN, std=STD, pad=4,
                          device="cpu", seed=0)
    test_batches = DeviceLoader(test.images, test.labels, batch_size=100, train=False, mean=MEAN, std=STD, pad=0,
                                device="cpu")
    groups = split_groups([1] * CLASSES)

    def evaluate():
        return accuracy_from_counts(*class_counts(module.student, test_batches, CLASSES, CPU.autocast), groups)

    return Stage("student", module, module.trainable_parameters(), train_loader=loader, evaluate=evaluate,
                 trainer=cfg.trainer, lr=0.05, runtime=CPU, checkpoint_path=checkpoint, logger=NullLogger(),
                 stop=stop or StopSignal())


def test_the_distiller_gets_the_1_based_epoch_and_epoch_1_has_its_warmed_up_kd_term(compose_toy, tmp_path: Path,
                                                                                     monkeypatch):
    """Planted: `self.forward(images, labels, epoch - 1)` in Stage.train_epoch (warm-up 0 at epoch 1)."""
    cfg = load_config(compose_toy("trainer.epochs=2", "trainer.lr_milestones=[2]",
                                  "trainer.max_steps_per_epoch=null"))
    seen: list[int] = []
    distill = KD.distill_loss

    def recording(self, *args):
        seen.append(args[-1])
        return distill(self, *args)

    monkeypatch.setattr(KD, "distill_loss", recording)
    torch.manual_seed(0)
    student, teacher = create_model("resnet8", CLASSES), create_model("resnet8", CLASSES)
    loss_cfg = KDConfig(name="kd", ce_weight=1.0, warmup_epochs=4, logit_adjust_tau=0.0, alpha=1.0,
                        temperature=4.0)
    module = build_distiller(loss_cfg, student, teacher.eval(), class_to_group=torch.zeros(CLASSES, dtype=torch.long),
                             train_counts=[1] * CLASSES, input_size=32)
    history = toy_stage(cfg, module, tmp_path / "kd.ckpt").run(resume=False).history
    assert sorted(set(seen)) == [1, 2]
    kd = [record["train/loss_kd"] for record in history]
    assert kd[0] > 0 and kd[1] > kd[0]  # warm-up 1/4 then 2/4 of a similar term


def test_explicit_teacher_and_student_lr_are_what_the_optimizers_use(compose_toy, tmp_path: Path):
    """Planted: the stage built with the recipe's lr (`cfg.stage_lr(arch, None)`) whatever teacher.lr says."""
    cfg = load_config(compose_toy("loss=ce", "trainer.epochs=1", "trainer.lr_milestones=[1]", "teacher.lr=0.0123",
                                  "student.lr=0.0456", f"paths.teacher_cache={tmp_path / 'cache'}"))
    assert cfg.trainer.lr not in (0.0123, 0.0456) and cfg.trainer.light_lr not in (0.0123, 0.0456)
    metrics = pipeline.run(cfg, tmp_path / "run")
    assert [r["lr"] for r in metrics["teacher"]["history"]] == [pytest.approx(0.0123)]
    assert [r["lr"] for r in metrics["student"]["history"]] == [pytest.approx(0.0456)]


class OneHotBN(nn.Module):
    """Logits = BatchNorm(images flattened): in eval mode (running stats 0 / 1) the one-hot images themselves;
    in train mode a batch of one class normalises every column to 0 (argmax: class 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4, affine=False)

    def forward(self, images: Tensor) -> tuple[Tensor, dict]:
        return self.bn(images.flatten(1)), {}


def test_evaluation_runs_the_model_in_eval_mode():
    """Planted: `model.eval()` removed from class_counts."""
    labels = torch.tensor([2, 2, 2])
    images = nn.functional.one_hot(labels, 4).float()
    model = OneHotBN().train()
    with torch.no_grad():
        assert model(images)[0].argmax(1).tolist() == [0, 0, 0]  # train mode gets them wrong
    correct, total = class_counts(model, [(images, labels)], 4, nullcontext)
    assert correct.tolist() == [0, 0, 3, 0] and total.tolist() == [0, 0, 3, 0]
    assert model.training


class Dropped(nn.Module):
    """resnet8 with dropout on its logits: training draws from the global RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.net, self.drop = create_model("resnet8", CLASSES), nn.Dropout(0.5)

    def forward(self, images: Tensor) -> tuple[Tensor, dict]:
        logits, features = self.net(images)
        return self.drop(logits), features


def _dropout_stage(cfg, checkpoint: Path, stop: StopSignal | None = None) -> Stage:
    torch.manual_seed(0)
    module = build_distiller(PLAIN_CE, Dropped(), None, class_to_group=torch.zeros(CLASSES, dtype=torch.long),
                             train_counts=[1] * CLASSES, input_size=32)
    return toy_stage(cfg, module, checkpoint, stop)


def test_resume_restores_the_rng_so_dropout_continues_exactly(compose_toy, tmp_path: Path):
    """Planted: `set_rng_state(state["rng"])` left out of Stage._restore."""
    cfg = load_config(compose_toy("trainer.epochs=2", "trainer.lr_milestones=[2]",
                                  "trainer.max_steps_per_epoch=null"))
    reference = _dropout_stage(cfg, tmp_path / "reference.ckpt").run(resume=False)
    checkpoint = tmp_path / "stopped.ckpt"
    with pytest.raises(Preempted, match="checkpoint saved at epoch 1, step 1 "):
        _dropout_stage(cfg, checkpoint, StopSignal(deadline=0.0)).run(resume=False)
    resumed = _dropout_stage(cfg, checkpoint).run(resume=True)
    losses = [[r["train/loss"] for r in result.history] for result in (resumed, reference)]
    assert losses[0] == losses[1]


def test_reviewkd_abfs_take_the_students_channels_when_the_widths_differ():
    """Planted: the ABFs' input channels taken from the teacher's levels (resnet8 vs resnet8x4: 4x wider)."""
    torch.manual_seed(0)
    student, teacher = create_model("resnet8", CLASSES), create_model("resnet8x4", CLASSES).eval()
    distiller = ReviewKD(student, teacher, alpha=1.0, input_size=32)
    images = torch.randn(2, 3, 32, 32)
    _, features_s = student(images)
    with torch.no_grad():
        _, features_t = teacher(images)
    levels_s, levels_t = distiller.student_levels(features_s), distiller.teacher_levels(features_t)
    assert [f.shape[1] for f in levels_s] != [f.shape[1] for f in levels_t]
    assert [abf.conv1[0].in_channels for abf in distiller.abfs] == [f.shape[1] for f in levels_s]
    assert [abf.conv2[0].out_channels for abf in distiller.abfs] == [f.shape[1] for f in levels_t]
    _, losses = distiller(images, torch.tensor([0, 1]), 1)
    losses["loss_kd"].backward()
    assert torch.isfinite(losses["loss_kd"]) and distiller.abfs[0].conv1[0].weight.grad is not None


def test_each_table_column_shows_its_own_spread():
    """Planted: every column formatted with the overall column's std (`c.std("overall")`)."""
    from ltkd.results import Cell, to_rows

    seeds = {"head": [70.0, 72.0], "medium": [50.0, 56.0], "tail": [20.0, 30.0], "overall": [48.0, 49.0]}
    cell = Cell("cifar100_lt", 100, "resnet32x4", "resnet8x4", "kd", values=dict(seeds), seeds=[0, 1])
    (row,) = to_rows([cell], {})
    # the sample std of two values a, b is |a - b| / sqrt(2)
    assert {col: row[col] for col in seeds} == {"head": "71.00 ± 1.41", "medium": "53.00 ± 4.24",
                                                "tail": "25.00 ± 7.07", "overall": "48.50 ± 0.71"}


def _epoch_stats_worker(rank: int, init_file: str, out: dict) -> None:
    """One step on each rank: loss_ce 1 + rank, a step statistic 10 · (1 + rank), rank + 1 of 4 images right."""
    info = join_gloo(rank, init_file)
    sums = EpochSums.zeros(torch.device("cpu"))
    sums.add_losses(["loss_ce"], torch.tensor([1.0 + rank]))
    sums.add_statistics({"ltkd/stat": torch.tensor(10.0 * (1 + rank))})
    sums.correct += rank + 1
    sums.seen += 4
    sums.steps += 1
    stage = SimpleNamespace(dist=info, name="student", checkpoint_path=Path(init_file))
    out[rank] = Stage._read_epoch_stats(stage, 1, sums)  # type: ignore[arg-type]


def test_step_statistics_are_averaged_over_the_ranks_like_the_losses(tmp_path: Path):
    """Planted: `sums.stat_terms` left out of the epoch's all-reduce in Stage._read_epoch_stats."""
    stats = spawn(_epoch_stats_worker, str(tmp_path / "init"))
    expected = {"train/loss_ce": 1.5, "train/loss": 1.5, "train/acc": 37.5, "ltkd/stat": 15.0}
    assert stats[0] == pytest.approx(expected) and stats[1] == pytest.approx(expected)
