"""Distillers (mdistiller's contract): CE, KD, DKD, ReviewKD and LTKD, built from the loss config."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from ltkd.distillers.base import CrossEntropyTerm, Distiller, warmup_factor
from ltkd.distillers.ce import CE
from ltkd.distillers.dkd import DKD
from ltkd.distillers.kd import KD
from ltkd.distillers.ltkd import LTKD
from ltkd.distillers.reviewkd import ABF, ReviewKD
from ltkd.errors import ConfigError
from ltkd.losses import class_log_prior

__all__ = ["ABF", "CE", "DKD", "KD", "LOSS_NAMES", "LTKD", "CrossEntropyTerm", "Distiller", "ReviewKD",
           "build_distiller", "warmup_factor"]

LOSS_NAMES = ("ce", "kd", "dkd", "reviewkd", "ltkd")


def build_distiller(loss_cfg: Any, student: nn.Module, teacher: nn.Module | None, *, class_to_group: Tensor,
                    train_counts: Sequence[int], input_size: int,
                    stats_reducer: Callable[[Tensor], Tensor] | None = None) -> Distiller:
    """The distiller named by `loss_cfg.name`, with the config's weights.

    The CE term of every method uses `ce_weight` and logit adjustment by `logit_adjust_tau` with the log
    prior of `train_counts`. `class_to_group` (C,) defines LTKD's groups; `input_size` is the image side
    for ReviewKD's shape probe; `stats_reducer` is LTKD's cross-rank reduction of its group statistics.
    ConfigError for an unknown name; a method other than "ce" needs a teacher.
    """
    name = loss_cfg.name
    if name not in LOSS_NAMES:
        raise ConfigError(f"loss.name: {name!r}; allowed: {', '.join(LOSS_NAMES)}")
    device = next(student.parameters()).device
    log_prior = class_log_prior(train_counts, device)
    ce = CrossEntropyTerm(loss_cfg.ce_weight, log_prior, loss_cfg.logit_adjust_tau)
    if name == "ce":
        return CE(student, ce)
    if teacher is None:
        raise ValueError(f"build_distiller: loss {name!r} needs a teacher")
    common = dict(warmup_epochs=loss_cfg.warmup_epochs)
    if name == "kd":
        return KD(student, teacher, ce, alpha=loss_cfg.alpha, temperature=loss_cfg.temperature, **common)
    if name == "dkd":
        return DKD(student, teacher, ce, alpha=loss_cfg.alpha, beta=loss_cfg.beta,
                   temperature=loss_cfg.temperature, **common)
    if name == "reviewkd":
        return ReviewKD(student, teacher, ce, alpha=loss_cfg.alpha, input_size=input_size,
                        preact=loss_cfg.preact, **common)
    return LTKD(student, teacher, ce, class_to_group=class_to_group, alpha=loss_cfg.alpha, beta=loss_cfg.beta,
                temperature=loss_cfg.temperature, rebalance=loss_cfg.rebalance,
                ema_momentum=loss_cfg.ema_momentum, reweight=loss_cfg.reweight, stats_reducer=stats_reducer,
                **common)
