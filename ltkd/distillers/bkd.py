"""Balanced Knowledge Distillation (Zhang et al., 2021): instance-balanced CE plus a class-balanced KD term
whose class weights switch on after a deferral epoch, as in DRW (Cao et al., 2019)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ltkd.checks import check_non_negative, require
from ltkd.distillers.base import CrossEntropyTerm, Distiller, DistillerInputs, Features, Method
from ltkd.distillers.kd import KDConfig
from ltkd.losses import bkd_loss, class_balanced_weights


@dataclass(frozen=True)
class BKDConfig(KDConfig):
    """KD's keys (alpha: the weight of the class-balanced KL term) and BKD's class weighting."""

    beta_cb: float  # the effective number's β: class weight ∝ (1 − β) / (1 − β^{n_c}); 0 = plain KD
    defer_epoch: int  # the first `defer_epoch` epochs are plain KD; the class weights apply after them

    def check(self, num_classes: int) -> None:
        super().check(num_classes)
        require(0 <= self.beta_cb < 1, f"loss.beta_cb: {self.beta_cb:g}; must be in [0, 1)")
        check_non_negative("loss", self, "defer_epoch")


class BKD(Distiller):
    """loss_kd = warm-up · α · bkd_loss(w, T), w the class-balanced weights from epoch `defer_epoch` + 1 on,
    all ones (plain KD) before."""

    teacher_logits_only = True

    def __init__(self, student: nn.Module, teacher: nn.Module, ce: CrossEntropyTerm | None = None, *,
                 class_weights: Tensor, alpha: float, temperature: float, defer_epoch: int,
                 warmup_epochs: int = 0) -> None:
        super().__init__(student, teacher, ce, warmup_epochs=warmup_epochs)
        self.alpha = alpha
        self.temperature = temperature
        self.defer_epoch = defer_epoch
        self.register_buffer("class_weights", class_weights, persistent=False)

    def distill_loss(self, logits_s: Tensor, features_s: Features, logits_t: Tensor, features_t: Features,
                     target: Tensor, epoch: int) -> Tensor:
        weights = self.class_weights if epoch > self.defer_epoch else None
        return self.alpha * bkd_loss(logits_s, logits_t, weights, self.temperature)


def build(cfg: BKDConfig, student: nn.Module, teacher: nn.Module, ce: CrossEntropyTerm,
          inputs: DistillerInputs) -> BKD:
    weights = class_balanced_weights(inputs.train_counts, cfg.beta_cb).to(inputs.class_to_group.device)
    return BKD(student, teacher, ce, class_weights=weights, alpha=cfg.alpha, temperature=cfg.temperature,
               defer_epoch=cfg.defer_epoch, warmup_epochs=cfg.warmup_epochs)


METHOD = Method("bkd", BKDConfig, build)
