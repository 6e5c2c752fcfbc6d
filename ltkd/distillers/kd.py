"""Knowledge distillation (Hinton et al., 2015): ce_weight·CE + α·T²·KL."""

from __future__ import annotations

from torch import Tensor, nn

from ltkd.distillers.base import CrossEntropyTerm, Distiller, Features
from ltkd.losses import kd_loss


class KD(Distiller):
    """loss_kd = warm-up · α · kd_loss(T) (warm-up factor 1 with the default warmup_epochs=0)."""

    teacher_logits_only = True

    def __init__(self, student: nn.Module, teacher: nn.Module, ce: CrossEntropyTerm | None = None, *,
                 alpha: float, temperature: float, warmup_epochs: int = 0) -> None:
        super().__init__(student, teacher, ce, warmup_epochs=warmup_epochs)
        self.alpha = alpha
        self.temperature = temperature

    def distill_loss(self, logits_s: Tensor, features_s: Features, logits_t: Tensor, features_t: Features,
                     target: Tensor) -> Tensor:
        return self.alpha * kd_loss(logits_s, logits_t, self.temperature)
