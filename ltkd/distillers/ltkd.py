"""LTKD: cross-group KL against a rebalanced teacher plus reweighted within-group KLs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from ltkd.checks import check_fractions, require
from ltkd.data import GROUP_NAMES
from ltkd.distillers.base import CrossEntropyTerm, Distiller, DistillerInputs, Features, Method
from ltkd.distillers.dkd import DKDConfig
from ltkd.losses import ltkd_loss, rebalance_factors, teacher_group_mean

Rebalance = Literal["batch", "ema", "none"]
REBALANCE_MODES = get_args(Rebalance)


@dataclass(frozen=True)
class LTKDConfig(DKDConfig):
    """DKD's keys (alpha: the cross-group weight, beta: the within-group weight) and LTKD's switches."""

    rebalance: Rebalance  # the teacher's group distribution toward uniform with: batch statistics, an EMA, none
    ema_momentum: float  # rebalance=ema: stats <- m * stats + (1 - m) * batch mean
    reweight: bool  # within-group KLs weighted 1/K (true) or by the teacher's group mass (false, as KD)
    group_fractions: tuple[float, ...]  # LTKD's groups (any number)
    global_stats: bool  # under torchrun: the batch statistics over all ranks (false: per rank)

    def check(self, num_classes: int) -> None:
        super().check(num_classes)
        require(0 <= self.ema_momentum < 1, f"loss.ema_momentum: {self.ema_momentum:g}; must be in [0, 1)")
        check_fractions("loss.group_fractions", self.group_fractions, num_classes)


class LTKD(Distiller):
    """loss_kd = warm-up · ltkd_loss(α, β, T).

    `rebalance`: "batch" rebalances with the batch mean of the teacher's group distribution (the paper),
    "ema" with an exponential moving average of it across training steps (buffer `group_mean_ema`,
    checkpointed; the first step initialises it, then ema <- m·ema + (1-m)·batch mean, updated in training
    mode only), "none" not at all. `stats_reducer` maps the batch mean before use, e.g. a mean over DDP ranks
    (None: the local batch). `reweight`: within-group KLs weighted 1/K instead of by the teacher's group mass.
    `step_statistics()`: the last training step's batch mean of the teacher's group mass (%, at T, after
    `stats_reducer` when rebalancing) and the rebalancing factors applied (`rebalance_factors`; 1 with
    rebalance "none").
    """

    teacher_logits_only = True

    def __init__(self, student: nn.Module, teacher: nn.Module, ce: CrossEntropyTerm | None = None, *,
                 class_to_group: Tensor, alpha: float, beta: float, temperature: float, rebalance: str,
                 ema_momentum: float, reweight: bool, warmup_epochs: int = 0,
                 stats_reducer: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__(student, teacher, ce, warmup_epochs=warmup_epochs)
        if rebalance not in REBALANCE_MODES:
            raise ValueError(f"rebalance: {rebalance!r}; allowed: {', '.join(REBALANCE_MODES)}")
        self.alpha = alpha
        self.beta = beta
        self.temperature = temperature
        self.rebalance = rebalance
        self.ema_momentum = ema_momentum
        self.reweight = reweight
        self.stats_reducer = stats_reducer
        self.num_groups = int(class_to_group.max()) + 1
        self.register_buffer("class_to_group", class_to_group.long(), persistent=False)
        device = class_to_group.device
        self.register_buffer("step_teacher_mass", torch.zeros(self.num_groups, device=device), persistent=False)
        self.register_buffer("step_rebalance_factor", torch.ones(self.num_groups, device=device), persistent=False)
        self.group_names = GROUP_NAMES if self.num_groups == len(GROUP_NAMES) else [
            f"g{g + 1}" for g in range(self.num_groups)]
        if rebalance == "ema":
            self.register_buffer("group_mean_ema", torch.zeros(self.num_groups, device=device))
            self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long, device=device))

    def group_stats(self, logits_t: Tensor) -> Tensor | None:
        """The (K,) group statistics the teacher is rebalanced with; None when not rebalancing."""
        stats = teacher_group_mean(logits_t, self.class_to_group, self.temperature,
                                   num_groups=self.num_groups)
        if self.rebalance == "none":  # only recorded: the epoch's all-reduce averages it over ranks
            self._record(self.step_teacher_mass, stats)
            return None
        if self.stats_reducer is not None:
            stats = self.stats_reducer(stats)
        self._record(self.step_teacher_mass, stats)
        if self.rebalance == "ema":
            stats = self._update_ema(stats)
        self._record(self.step_rebalance_factor, rebalance_factors(stats))
        return stats

    @torch.no_grad()
    def _record(self, buffer: Tensor, value: Tensor) -> None:
        if self.training:
            buffer.copy_(value)

    def step_statistics(self) -> dict[str, Tensor]:
        """The teacher's batch group mass in percent and the rebalancing factor, per group."""
        return {f"ltkd/{what}_{name}": buffer[g]
                for what, buffer in (("teacher_mass", 100 * self.step_teacher_mass),
                                     ("rebalance_factor", self.step_rebalance_factor))
                for g, name in enumerate(self.group_names)}

    @torch.no_grad()
    def _update_ema(self, batch_mean: Tensor) -> Tensor:
        if self.training:
            momentum = torch.where(self.ema_updates > 0, self.ema_momentum, 0.0)
            self.group_mean_ema.copy_(momentum * self.group_mean_ema + (1 - momentum) * batch_mean)
            self.ema_updates += 1
        return self.group_mean_ema.clone()

    def distill_loss(self, logits_s: Tensor, features_s: Features, logits_t: Tensor, features_t: Features,
                     target: Tensor, epoch: int) -> Tensor:
        return ltkd_loss(logits_s, logits_t, self.class_to_group, self.alpha, self.beta, self.temperature,
                         rebalance=self.rebalance != "none", reweight=self.reweight,
                         group_stats=self.group_stats(logits_t), num_groups=self.num_groups)


def build(cfg: LTKDConfig, student: nn.Module, teacher: nn.Module, ce: CrossEntropyTerm,
          inputs: DistillerInputs) -> LTKD:
    return LTKD(student, teacher, ce, class_to_group=inputs.class_to_group, alpha=cfg.alpha, beta=cfg.beta,
                temperature=cfg.temperature, rebalance=cfg.rebalance, ema_momentum=cfg.ema_momentum,
                reweight=cfg.reweight, warmup_epochs=cfg.warmup_epochs,
                stats_reducer=inputs.stats_reducer if cfg.global_stats else None)


METHOD = Method("ltkd", LTKDConfig, build)
