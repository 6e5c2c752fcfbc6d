"""Knowledge distillation (Hinton et al., 2015): ce_weight·CE + α·T²·KL."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ltkd.checks import check_non_negative, check_positive
from ltkd.distillers.base import CrossEntropyTerm, Distiller, DistillerInputs, Features, LossConfig, Method
from ltkd.losses import kd_loss


@dataclass(frozen=True)
class KDConfig(LossConfig):
    temperature: float
    alpha: float  # weight of T²·KL(p_T || p_S)

    @property
    def distillation_temperature(self) -> float | None:
        return self.temperature

    def check(self, num_classes: int) -> None:
        super().check(num_classes)
        check_positive("loss.temperature", self.temperature)
        check_non_negative("loss", self, "alpha")


class KD(Distiller):
    """loss_kd = warm-up · α · kd_loss(T) (warm-up factor 1 with the default warmup_epochs=0)."""

    teacher_logits_only = True

    def __init__(self, student: nn.Module, teacher: nn.Module, ce: CrossEntropyTerm | None = None, *,
                 alpha: float, temperature: float, warmup_epochs: int = 0) -> None:
        super().__init__(student, teacher, ce, warmup_epochs=warmup_epochs)
        self.alpha = alpha
        self.temperature = temperature

    def distill_loss(self, logits_s: Tensor, features_s: Features, logits_t: Tensor, features_t: Features,
                     target: Tensor, epoch: int) -> Tensor:
        return self.alpha * kd_loss(logits_s, logits_t, self.temperature)


def build(cfg: KDConfig, student: nn.Module, teacher: nn.Module, ce: CrossEntropyTerm,
          inputs: DistillerInputs) -> KD:
    return KD(student, teacher, ce, alpha=cfg.alpha, temperature=cfg.temperature,
              warmup_epochs=cfg.warmup_epochs)


METHOD = Method("kd", KDConfig, build)
