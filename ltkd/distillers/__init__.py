"""Distillers (mdistiller's contract) and the methods there are (one table, `METHODS`), each built from its
own typed loss config."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from ltkd.distillers import bkd, ce, dkd, kd, ltkd, reviewkd
from ltkd.distillers.base import (
    CrossEntropyTerm,
    Distiller,
    DistillerInputs,
    LossConfig,
    Method,
    warmup_factor,
)
from ltkd.distillers.bkd import BKD
from ltkd.distillers.ce import CE
from ltkd.distillers.dkd import DKD
from ltkd.distillers.kd import KD
from ltkd.distillers.ltkd import LTKD
from ltkd.distillers.reviewkd import ABF, ReviewKD
from ltkd.losses import class_log_prior

__all__ = ["ABF", "BKD", "CE", "DKD", "KD", "LTKD", "METHODS", "CrossEntropyTerm", "Distiller",
           "DistillerInputs", "LossConfig", "Method", "ReviewKD", "build_distiller", "method", "warmup_factor"]

# Every method, by `loss.name`, in table order: a new method is its module's METHOD added here (README:
# adding a method).
METHODS: dict[str, Method] = {m.name: m for m in (ce.METHOD, kd.METHOD, dkd.METHOD, reviewkd.METHOD, bkd.METHOD,
                                                  ltkd.METHOD)}


def method(name: str) -> Method:
    """The method `name`; ValueError naming the methods there are."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return METHODS[name]


def build_distiller(loss_cfg: Any, student: nn.Module, teacher: nn.Module | None, *, class_to_group: Tensor,
                    train_counts: Sequence[int], input_size: int,
                    stats_reducer: Callable[[Tensor], Tensor] | None = None) -> Distiller:
    """The distiller of method `loss_cfg.name`, built from its config (its `Method.config`'s fields).

    The CE term of every method uses `ce_weight` and logit adjustment by `logit_adjust_tau` with the log
    prior of `train_counts` (one per class), which also reach the method as `DistillerInputs.train_counts` and
    `num_classes` (BKD's class weights). `class_to_group` (C,) defines the class groups (LTKD); `input_size` is
    the image side for feature-shape probes (ReviewKD); `stats_reducer` reduces batch statistics over ranks
    (LTKD).
    The teacher is passed on only to methods that use one (and must then be given).
    """
    entry = method(loss_cfg.name)
    log_prior = class_log_prior(train_counts, next(student.parameters()).device)
    ce_term = CrossEntropyTerm(loss_cfg.ce_weight, log_prior, loss_cfg.logit_adjust_tau)
    if entry.uses_teacher and teacher is None:
        raise ValueError(f"build_distiller: loss {entry.name!r} needs a teacher")
    inputs = DistillerInputs(class_to_group, train_counts=tuple(train_counts), num_classes=len(train_counts),
                             input_size=input_size, stats_reducer=stats_reducer)
    return entry.build(loss_cfg, student, teacher if entry.uses_teacher else None, ce_term, inputs)
