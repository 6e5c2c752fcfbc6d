"""The distiller contract (after mdistiller): a student, an optional frozen teacher, named weighted losses;
and what a method is to the rest of the code (`Method`: its typed loss config and how it is built).

`Distiller.forward(images, target, epoch)` returns the student's logits and a dict of already-weighted
scalar losses ("loss_ce", and "loss_kd" when there is a teacher) that the trainer sums. Models return
`(logits, features)` with features {"feats", "preact_feats", "pooled_feat"} (`ltkd.models.Features`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ltkd.checks import check_non_negative
from ltkd.losses import logit_adjusted_ce
from ltkd.models import Features


def warmup_factor(epoch: int, warmup_epochs: int) -> float:
    """The linear ramp of the distillation term: min(epoch / warmup_epochs, 1), epoch 1-based; 1 when 0."""
    return 1.0 if warmup_epochs <= 0 else min(epoch / warmup_epochs, 1.0)


class CrossEntropyTerm(nn.Module):
    """weight · CE(logits + τ·log_prior, target): the student's cross-entropy term of every distiller."""

    def __init__(self, weight: float = 1.0, log_prior: Tensor | None = None, tau: float = 0.0) -> None:
        super().__init__()
        if tau and log_prior is None:
            raise ValueError(f"CrossEntropyTerm: tau={tau:g} needs a log_prior")
        self.weight = weight
        self.tau = tau
        self.register_buffer("log_prior", log_prior, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.weight * logit_adjusted_ce(logits, target, self.log_prior, self.tau)


class Distiller(nn.Module):
    """A student trained with its CE term plus, when there is a teacher, `warm-up · distill_loss(...)`.

    The teacher is frozen (no gradients, always in eval mode, even after `train()`) and runs under
    `torch.no_grad()`. Subclasses with a teacher implement `distill_loss` (weighted by its own α, β).
    `teacher_logits_only`: distill_loss reads the teacher's logits alone, so the teacher's stored outputs
    can stand in for it (`ltkd.teacher_outputs`).
    """

    teacher_logits_only = False

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None,
                 ce: CrossEntropyTerm | None = None, *, warmup_epochs: int = 0) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.requires_grad_(False)
            teacher.eval()
        self.ce = ce if ce is not None else CrossEntropyTerm()
        self.warmup_epochs = warmup_epochs

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def forward(self, images: Tensor, target: Tensor, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        logits, features = self.student(images)
        losses = {"loss_ce": self.ce(logits, target)}
        if self.teacher is not None:
            logits_t, features_t = self.teacher_forward(images)
            losses["loss_kd"] = warmup_factor(epoch, self.warmup_epochs) * self.distill_loss(
                logits, features, logits_t, features_t, target, epoch)
        return logits, losses

    @torch.no_grad()
    def teacher_forward(self, images: Tensor) -> tuple[Tensor, Features]:
        """The frozen teacher's (logits, features), without autograd."""
        return self.teacher(images)

    def distill_loss(self, logits_s: Tensor, features_s: Features, logits_t: Tensor, features_t: Features,
                     target: Tensor, epoch: int) -> Tensor:
        """The weighted distillation term, before the warm-up factor, at `epoch` (1-based: a method with an
        epoch schedule of its own, e.g. BKD's deferred class weights, reads it)."""
        raise NotImplementedError(f"{type(self).__name__} has a teacher but no distill_loss")

    def step_statistics(self) -> dict[str, Tensor]:
        """Named scalars of the last training step that the stage averages per epoch into its history
        (e.g. LTKD's group statistics); none by default."""
        return {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The student's parameters and the distiller's own (e.g. ReviewKD's ABF), never the teacher's."""
        frozen = {id(p) for p in self.teacher.parameters()} if self.teacher is not None else set()
        return [p for p in self.parameters() if id(p) not in frozen]

    def student_state_dict(self) -> dict[str, Tensor]:
        """`state_dict()` without the teacher's entries: the student, extra modules, buffers (e.g. an EMA)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("teacher.")}

    def load_student_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load a `student_state_dict()`; RuntimeError (like `load_state_dict`) on missing/unexpected keys."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("teacher.")]
        if missing or unexpected:
            raise RuntimeError(f"Error(s) in loading the student state of {type(self).__name__}: "
                               f"missing keys {missing}, unexpected keys {unexpected}")


@dataclass(frozen=True)
class LossConfig:
    """The `loss:` keys every method has (values in configs/loss/base.yaml). A method with more keys
    subclasses it; `check` raises ConfigError naming the first bad value (`num_classes`: the dataset's)."""

    name: str
    ce_weight: float  # weight of the student's cross-entropy term
    warmup_epochs: int  # the distillation term ramps up as min(epoch / warmup_epochs, 1)
    logit_adjust_tau: float  # logit-adjusted CE (Menon et al. 2021); 0 = plain CE

    @property
    def distillation_temperature(self) -> float | None:
        """The temperature the method softens logits at (None: it has none); group masses are measured at
        T = 1 and at this one."""
        return None

    def check(self, num_classes: int) -> None:
        check_non_negative("loss", self, "ce_weight", "logit_adjust_tau", "warmup_epochs")


@dataclass(frozen=True)
class DistillerInputs:
    """What a method may take from the run besides its config: the class groups (C,), the per-class training
    counts and the number of classes (long-tailed methods: class priors, class weights), the image side
    (feature-shape probes) and the reduction of batch statistics over ranks (None: one process)."""

    class_to_group: Tensor
    train_counts: tuple[int, ...]
    num_classes: int
    input_size: int
    stats_reducer: Callable[[Tensor], Tensor] | None = None


@dataclass(frozen=True)
class Method:
    """One entry of `ltkd.distillers.METHODS`: the method's `loss.name`, its config class, and
    `build(cfg, student, teacher, ce, inputs) -> Distiller` (teacher None when not `uses_teacher`);
    `needs_feature_pyramid`: the student must give a CNN's multi-resolution `feats`
    (`ltkd.models.has_feature_pyramid`; the config check refuses another)."""

    name: str
    config: type[LossConfig]
    build: Callable[[LossConfig, nn.Module, nn.Module | None, CrossEntropyTerm, DistillerInputs], Distiller]
    uses_teacher: bool = True
    needs_feature_pyramid: bool = False
