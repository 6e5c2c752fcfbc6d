"""The public builder: a run's parts from its config (data, loaders, models, distillers, training stages),
used alike by the pipeline, scripts/bench.py and the tests.

`build_context(cfg, run_dir)` gives the `RunContext`; from it `new_model`, `loader`, `evaluator`,
`teacher_distiller` / `student_distiller` and `build_stage` make each part.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ltkd.config import RunConfig
from ltkd.data import DATASETS, LongTailedData, build_dataset, class_to_group, split_groups
from ltkd.data.loaders import BatchLoader, DataLoaderAdapter, DeviceLoader
from ltkd.data.transforms import ImageSetDataset, build_transforms
from ltkd.distillers import CE, CrossEntropyTerm, Distiller, build_distiller
from ltkd.distributed import (
    DistInfo,
    all_reduce_sum,
    convert_sync_batchnorm,
    mean_over_ranks,
)
from ltkd.engine import Stage, StageResult, StopSignal
from ltkd.errors import LTKDError, MethodError, one_line
from ltkd.evaluation import Accuracy, accuracy_from_counts, class_counts
from ltkd.group_mass import SPLITS, measure
from ltkd.loggers import NullLogger, RunLogger
from ltkd.losses import class_log_prior
from ltkd.models import create_model
from ltkd.runtime import Runtime, resolve_runtime


@dataclasses.dataclass
class RunContext:
    """What both stages share."""

    cfg: RunConfig
    run_dir: Path
    data: LongTailedData
    groups: list[list[int]]
    runtime: Runtime
    logger: RunLogger
    stop: StopSignal
    dist: DistInfo = dataclasses.field(default_factory=DistInfo)

    def stage_seed(self, stage: str) -> int:
        """Each stage's own seed (weights and data order), so a stage never depends on what ran before."""
        return self.cfg.seed * 1009 + (1 if stage == "student" else 0)

    def loader(self, train: bool, stage: str, split_name: str | None = None) -> BatchLoader:
        """The train or test batches of the run, device-resident where the dataset fits in memory.
        `split_name` ("train" / "test") reads that split instead, augmented only when `train`."""
        tr, data, rt = self.cfg.trainer, self.data, self.runtime
        split = getattr(data, split_name or ("train" if train else "test"))
        seed = self.stage_seed(stage)
        batch_size = (tr.batch_size if train else tr.eval_batch_size) // self.dist.world_size  # per rank
        common = dict(batch_size=max(batch_size, 1), train=train, device=rt.device, seed=seed,
                      max_steps=tr.max_steps_per_epoch if train else None, channels_last=rt.channels_last,
                      rank=self.dist.rank, world_size=self.dist.world_size)
        kind = tr.loader if tr.loader != "auto" else ("device" if split.images is not None else "dataloader")
        if kind == "device" and split.images is not None:
            return DeviceLoader(split.images, split.labels, mean=data.mean, std=data.std,
                                pad=DATASETS[data.name].crop_padding or 0, **common)
        dataset = ImageSetDataset(split, build_transforms(data.name, train, data.mean, data.std))
        return DataLoaderAdapter(dataset, num_workers=tr.num_workers, **common)

    def evaluator(self, model: nn.Module):
        test_batches = self.loader(train=False, stage="eval")

        def evaluate() -> Accuracy:
            correct, total = class_counts(model, test_batches, self.data.num_classes, self.runtime.autocast)
            correct, total = all_reduce_sum(correct, self.dist), all_reduce_sum(total, self.dist)
            return accuracy_from_counts(correct, total, self.groups)

        return evaluate

    def group_mass(self, models: dict[str, nn.Module]) -> dict[str, Any]:
        """`models`' mean group masses on the unaugmented training set and the test set (ltkd.group_mass), at
        T = 1 and, for a method that has one (not CE, ReviewKD), at its distillation temperature."""
        loaders = {split: self.loader(False, "eval", split) for split in SPLITS}
        soft = self.cfg.loss.distillation_temperature
        temperatures = (1.0, *([] if soft is None else [soft]))
        return measure(models, loaders, self.groups, temperatures, self.runtime.autocast,
                       functools.partial(all_reduce_sum, info=self.dist))

    def new_model(self, arch: str, stage: str) -> nn.Module:
        """A freshly initialised model, seeded per stage so it never depends on what ran before."""
        torch.manual_seed(self.stage_seed(stage))
        model = create_model(arch, self.data.num_classes)
        return self.prepare(model)

    def prepare(self, module: nn.Module) -> nn.Module:
        module.to(self.runtime.device)
        if self.runtime.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def stage(self, name: str, module: Distiller, evaluated: nn.Module, arch: str, lr: float | None,
              checkpoint_path: Path, resume: bool) -> StageResult:
        """Train `module` for one stage; returns the StageResult."""
        return self.build_stage(name, module, evaluated, arch, lr, checkpoint_path).run(resume=resume)

    def build_stage(self, name: str, module: Distiller, evaluated: nn.Module, arch: str, lr: float | None,
                    checkpoint_path: Path) -> Stage:
        """The training stage of `module` on this run's data, device and recipe (DDP / compile applied)."""
        cfg = self.cfg
        forward = module
        if self.dist.enabled:
            if cfg.trainer.sync_bn:
                convert_sync_batchnorm(module.student, self.runtime.device.type)
            ids = [self.runtime.device.index] if self.runtime.is_cuda else None
            forward = DistributedDataParallel(module, device_ids=ids)
        if cfg.trainer.compile:
            forward.compile()
        trainer = cfg.stage_trainer(name)
        return Stage(name, module, module.trainable_parameters(), train_loader=self.loader(True, name),
                     evaluate=self.evaluator(evaluated), trainer=trainer, lr=cfg.stage_lr(arch, lr, trainer),
                     runtime=self.runtime, checkpoint_path=checkpoint_path, logger=self.logger, stop=self.stop,
                     dist=self.dist, forward=forward)


def load_data(cfg: RunConfig) -> LongTailedData:
    """The run's long-tailed training set and (optionally capped) balanced test set."""
    ds = cfg.dataset
    data = build_dataset(ds.name, cfg.data.root, imbalance_factor=ds.imbalance_factor, seed=ds.seed,
                         download=cfg.data.download, n_max=ds.n_max, split_file=ds.split_file,
                         test_split_file=ds.test_split_file)
    if ds.max_test_per_class is not None:
        data = dataclasses.replace(data, test=data.test.first_per_class(ds.max_test_per_class))
    return data


def teacher_distiller(ctx: RunContext, teacher: nn.Module) -> Distiller:
    """The teacher's own training objective on the long-tailed set (`teacher.objective`, whatever the loss
    config says): cross-entropy on `logits + τ·log prior` of the training counts, τ = 0 for plain CE
    (`TeacherConfig.logit_adjust_tau`). The adjustment is in the loss only: the teacher predicts with its
    plain logits."""
    tau = ctx.cfg.teacher.logit_adjust_tau
    log_prior = class_log_prior(ctx.data.train_counts, ctx.runtime.device) if tau else None
    return CE(teacher, CrossEntropyTerm(1.0, log_prior, tau))


def loss_groups(ctx: RunContext) -> torch.Tensor:
    """(C,) each class's group for the loss: by the method's own `group_fractions` (LTKD's
    `loss.group_fractions`) where it has them, else by the dataset's."""
    fractions = getattr(ctx.cfg.loss, "group_fractions", ctx.cfg.dataset.group_fractions)
    return class_to_group(split_groups(ctx.data.train_counts, fractions), ctx.data.num_classes).to(ctx.runtime.device)


def student_distiller(ctx: RunContext, teacher: nn.Module) -> Distiller:
    """Stage 2's module: a fresh student with the configured loss against the frozen teacher (under torchrun
    batch statistics may be reduced over the ranks: LTKD's `loss.global_stats`)."""
    cfg = ctx.cfg
    student = ctx.new_model(cfg.student.arch, "student")
    distiller = build_distiller(cfg.loss, student, teacher, class_to_group=loss_groups(ctx),
                                train_counts=ctx.data.train_counts, input_size=ctx.data.image_size,
                                stats_reducer=mean_over_ranks if ctx.dist.enabled else None)
    ctx.prepare(distiller)
    return distiller


CHECK_BATCH = 2  # images of the dummy batch `check_method` runs through a throwaway distiller


def check_method(ctx: RunContext) -> None:
    """Build the configured method's distiller against a throwaway teacher (a fresh model of the teacher's
    architecture) and run one training step's forward and backward on a dummy batch at the first and at the last
    epoch, before any work: a plug-in's mistake (its build or forward raises, logits of the wrong shape, a
    loss that is not a scalar) is a `MethodError` in one line instead of a failure after the teacher has
    trained. The global random state is left as it was."""
    cfg, rt = ctx.cfg, ctx.runtime
    name = cfg.loss.name
    devices = [rt.device.index or 0] if rt.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        try:
            distiller = student_distiller(ctx, ctx.new_model(cfg.teacher.arch, "teacher")).train()
            side, classes = ctx.data.image_size, ctx.data.num_classes
            images = torch.randn(CHECK_BATCH, 3, side, side, device=rt.device)
            if rt.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            target = torch.tensor([0, classes - 1], device=rt.device)  # a head and a tail class
            for epoch in sorted({1, cfg.trainer.epochs}):
                with rt.autocast():
                    logits, losses = distiller(images, target, epoch)
                _check_step(name, distiller, logits, losses, classes)
                torch.stack([v.float() for v in losses.values()]).sum().backward()
        except LTKDError:
            raise
        except Exception as exc:  # a bug in the method's code: one line, the traceback with debug=true
            raise MethodError(f"loss={name}: the method failed its check step on a dummy batch, before any "
                              f"training ({one_line(exc)})") from exc


def _check_step(name: str, distiller: Distiller, logits: Any, losses: Any, classes: int) -> None:
    """MethodError unless one step's output keeps the `Distiller` contract."""
    where = f"loss={name}: {type(distiller).__name__}.forward returned"
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (CHECK_BATCH, classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise MethodError(f"{where} logits of shape {shape}; expected ({CHECK_BATCH}, {classes}) (batch, classes)")
    expected = {"loss_ce", *(["loss_kd"] if distiller.teacher is not None else [])}
    if not isinstance(losses, Mapping) or not expected <= set(losses):
        keys = sorted(losses) if isinstance(losses, Mapping) else type(losses).__name__
        raise MethodError(f"{where} losses {keys}; expected a dict with {', '.join(sorted(expected))}")
    for key, value in [*losses.items(), *distiller.step_statistics().items()]:
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise MethodError(f"{where} {key!r} of shape {shape}; expected a scalar tensor")


def build_context(cfg: RunConfig, run_dir: Path, *, data: LongTailedData | None = None,
                  runtime: Runtime | None = None, logger: RunLogger | None = None, stop: StopSignal | None = None,
                  dist: DistInfo | None = None) -> RunContext:
    """A run's shared parts: its data (read now unless given), groups, device (`trainer.device` unless given),
    logger (none unless given), stop signal and process group (one process unless given)."""
    data = data if data is not None else load_data(cfg)
    return RunContext(cfg, run_dir, data, split_groups(data.train_counts, cfg.dataset.group_fractions),
                      runtime or resolve_runtime(cfg.trainer), logger or NullLogger(), stop or StopSignal(),
                      dist or DistInfo())
