"""Decoupled knowledge distillation (Zhao et al., CVPR 2022)."""

from __future__ import annotations

from torch import Tensor, nn

from ltkd.distillers.base import CrossEntropyTerm, Distiller, Features
from ltkd.losses import dkd_loss


class DKD(Distiller):
    """loss_kd = warm-up · (α·TCKD + β·NCKD)."""

    teacher_logits_only = True

    def __init__(self, student: nn.Module, teacher: nn.Module, ce: CrossEntropyTerm | None = None, *,
                 alpha: float, beta: float, temperature: float, warmup_epochs: int = 0) -> None:
        super().__init__(student, teacher, ce, warmup_epochs=warmup_epochs)
        self.alpha = alpha
        self.beta = beta
        self.temperature = temperature

    def distill_loss(self, logits_s: Tensor, features_s: Features, logits_t: Tensor, features_t: Features,
                     target: Tensor) -> Tensor:
        return dkd_loss(logits_s, logits_t, target, self.alpha, self.beta, self.temperature)
