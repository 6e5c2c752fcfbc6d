"""No distillation: the student's (optionally logit-adjusted) cross-entropy alone."""

from __future__ import annotations

from torch import nn

from ltkd.distillers.base import CrossEntropyTerm, Distiller, DistillerInputs, LossConfig, Method


class CE(Distiller):
    """Cross-entropy training without a teacher (also used to pretrain the teacher)."""

    def __init__(self, student: nn.Module, ce: CrossEntropyTerm | None = None) -> None:
        super().__init__(student, None, ce)


def build(cfg: LossConfig, student: nn.Module, teacher: nn.Module | None, ce: CrossEntropyTerm,
          inputs: DistillerInputs) -> CE:
    return CE(student, ce)


METHOD = Method("ce", LossConfig, build, uses_teacher=False)
