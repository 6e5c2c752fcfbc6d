"""LTKD ("Distilling Balanced Knowledge from a Biased Teacher"): KL split into cross- and within-group parts.

With p = softmax(z/T) and groups G of classes (head / medium / tail, or any partition), b_G = Σ_{i∈G} p_i
is the group-level distribution and p̃_i = p_i / b_{G(i)} the distribution inside a group; then
KL(pᵀ‖pˢ) = KL(bᵀ‖bˢ) + Σ_G bᵀ_G · KL(p̃ᵀ_G‖p̃ˢ_G). Everything is computed from log-probabilities, so a
group whose mass underflows (or an empty group) never yields NaN.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ltkd.losses._common import as_float, kl_terms


class KLDecomposition(NamedTuple):
    """Per-sample parts of KL(pᵀ‖pˢ) = cross + Σ_G teacher_group_probs_G · within_G."""

    cross: Tensor  # (N,) KL(bᵀ‖bˢ) between the group-level distributions
    within: Tensor  # (N, K) KL(p̃ᵀ_G‖p̃ˢ_G) inside each group
    teacher_group_probs: Tensor  # (N, K) bᵀ_G


def _num_groups(class_to_group: Tensor, num_groups: int | None) -> int:
    """K: given, or read from the mapping (a host sync; callers in a training loop pass it)."""
    return num_groups if num_groups is not None else int(class_to_group.max()) + 1


def _grouped_log_probs(logits: Tensor, class_to_group: Tensor, temperature: float,
                       num_groups: int) -> tuple[Tensor, Tensor]:
    """log b (N, K), the group log-masses (-inf for an empty group), and log p̃ (N, C), each class's
    log-probability inside its group."""
    log_p = F.log_softmax(as_float(logits) / temperature, dim=1)
    members = class_to_group == torch.arange(num_groups, device=class_to_group.device)[:, None]  # (K, C)
    log_b = torch.logsumexp(log_p[:, None, :].masked_fill(~members, float("-inf")), dim=2)
    return log_b, log_p - log_b[:, class_to_group]


def _within_kl(log_pt_t: Tensor, log_pt_s: Tensor, class_to_group: Tensor, num_groups: int) -> Tensor:
    """(N, K): KL(p̃ᵀ_G‖p̃ˢ_G), the per-class terms summed into their groups."""
    terms = kl_terms(log_pt_t, log_pt_s)
    return terms.new_zeros(terms.shape[0], num_groups).index_add(1, class_to_group, terms)


def kl_decomposition(logits_s: Tensor, logits_t: Tensor, class_to_group: Tensor, temperature: float,
                     *, num_groups: int | None = None) -> KLDecomposition:
    """The exact split of KL(softmax(zᵀ/T)‖softmax(zˢ/T)) over the class groups `class_to_group` (C,)."""
    k = _num_groups(class_to_group, num_groups)
    log_b_s, log_pt_s = _grouped_log_probs(logits_s, class_to_group, temperature, k)
    log_b_t, log_pt_t = _grouped_log_probs(logits_t, class_to_group, temperature, k)
    return KLDecomposition(cross=kl_terms(log_b_t, log_b_s).sum(dim=1),
                           within=_within_kl(log_pt_t, log_pt_s, class_to_group, k),
                           teacher_group_probs=log_b_t.exp())


def teacher_group_mean(logits_t: Tensor, class_to_group: Tensor, temperature: float,
                       *, num_groups: int | None = None) -> Tensor:
    """(K,): the batch mean of the teacher's group distribution bᵀ (the statistic LTKD rebalances with)."""
    k = _num_groups(class_to_group, num_groups)
    log_b_t, _ = _grouped_log_probs(logits_t, class_to_group, temperature, k)
    return log_b_t.exp().mean(dim=0)


def _rebalanced(log_b_t: Tensor, group_stats: Tensor | None) -> Tensor:
    """log b̂ᵀ: each sample's group distribution scaled by s_G ∝ 1 / mean bᵀ_G and renormalised.

    The mean is over the batch, or `group_stats` (K,) when given; it carries no gradient. The factor
    1/K of s_G = (1/K) / mean_G cancels in the renormalisation. A group with zero mean mass (empty, or
    underflowed) is left unscaled: its members have zero mass anyway.
    """
    if group_stats is None:
        log_mean = torch.logsumexp(log_b_t, dim=0) - math.log(log_b_t.shape[0])
    else:
        log_mean = group_stats.to(log_b_t.dtype).log()
    shifted = log_b_t + _log_rebalance_shift(log_mean.detach())
    return shifted - torch.logsumexp(shifted, dim=1, keepdim=True)


def _log_rebalance_shift(log_mean: Tensor) -> Tensor:
    """log s_G = -log mean_G, the log-factor group G is scaled by (0, unscaled, where the mean mass is 0)."""
    return torch.where(torch.isfinite(log_mean), -log_mean, 0.0)


def rebalance_factors(group_stats: Tensor) -> Tensor:
    """(K,): the factors rebalancing scales the teacher's groups by, s_G = (1/K) / mean_G for the group
    statistics `group_stats` (K,), so that a teacher already uniform over the groups gets 1 everywhere (a
    group with zero mean mass is left unscaled: 1/K)."""
    return _log_rebalance_shift(group_stats.float().log()).exp() / group_stats.numel()


def ltkd_loss(logits_s: Tensor, logits_t: Tensor, class_to_group: Tensor, alpha: float, beta: float,
              temperature: float, rebalance: bool = True, reweight: bool = True,
              group_stats: Tensor | None = None, *, num_groups: int | None = None) -> Tensor:
    """α·T²·KL(b̂ᵀ‖bˢ) + β·T²·Σ_G w_G·KL(p̃ᵀ_G‖p̃ˢ_G), mean over the batch.

    b̂ᵀ is the teacher's group distribution rebalanced toward uniform (`rebalance`; statistics from the
    batch or from `group_stats`, see `_rebalanced`), else bᵀ itself. w_G = 1/K when `reweight`, else the
    teacher's group mass bᵀ_G (detached). With rebalance=False, reweight=False and α = β = 1 this is
    `kd_loss`. `num_groups` (K) avoids a host sync to read it from `class_to_group`.
    """
    k = _num_groups(class_to_group, num_groups)
    log_b_s, log_pt_s = _grouped_log_probs(logits_s, class_to_group, temperature, k)
    log_b_t, log_pt_t = _grouped_log_probs(logits_t, class_to_group, temperature, k)
    target_groups = _rebalanced(log_b_t, group_stats) if rebalance else log_b_t
    cross = kl_terms(target_groups, log_b_s).sum(dim=1)
    within = _within_kl(log_pt_t, log_pt_s, class_to_group, k)
    within = within.mean(dim=1) if reweight else (log_b_t.detach().exp() * within).sum(dim=1)
    return temperature**2 * (alpha * cross + beta * within).mean()
