"""Decoupled knowledge distillation (Zhao et al., CVPR 2022)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ltkd.checks import check_non_negative
from ltkd.distillers.base import CrossEntropyTerm, Distiller, DistillerInputs, Features, Method
from ltkd.distillers.kd import KDConfig
from ltkd.losses import dkd_loss


@dataclass(frozen=True)
class DKDConfig(KDConfig):
    """KD's keys (alpha: the TCKD weight) and beta, the NCKD weight (8; a pair with another published beta
    states it in configs/loss_pair/dkd_<pair>.yaml)."""

    beta: float

    def check(self, num_classes: int) -> None:
        super().check(num_classes)
        check_non_negative("loss", self, "beta")


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
                     target: Tensor, epoch: int) -> Tensor:
        return dkd_loss(logits_s, logits_t, target, self.alpha, self.beta, self.temperature)


def build(cfg: DKDConfig, student: nn.Module, teacher: nn.Module, ce: CrossEntropyTerm,
          inputs: DistillerInputs) -> DKD:
    return DKD(student, teacher, ce, alpha=cfg.alpha, beta=cfg.beta, temperature=cfg.temperature,
               warmup_epochs=cfg.warmup_epochs)


METHOD = Method("dkd", DKDConfig, build)
