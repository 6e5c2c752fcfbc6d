"""Decoupled knowledge distillation (Zhao et al., CVPR 2022), in log space."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ltkd.losses._common import as_float, kl_terms


def _binary_and_nontarget(logits: Tensor, target: Tensor, gt_mask: Tensor,
                          temperature: float) -> tuple[Tensor, Tensor]:
    """log [p_target, 1 - p_target] (N, 2) and the log distribution over the non-target classes (N, C),
    -inf at the target."""
    log_p = F.log_softmax(as_float(logits) / temperature, dim=1)
    log_p_other = log_p.masked_fill(gt_mask, float("-inf"))
    log_mass_other = torch.logsumexp(log_p_other, dim=1, keepdim=True)
    log_binary = torch.cat([log_p.gather(1, target[:, None]), log_mass_other], dim=1)
    return log_binary, log_p_other - log_mass_other


def dkd_loss(logits_s: Tensor, logits_t: Tensor, target: Tensor, alpha: float, beta: float,
             temperature: float) -> Tensor:
    """α·TCKD + β·NCKD, each T²-scaled and batch-averaged.

    TCKD is the KL between the binary [target, non-target] distributions, NCKD the KL between the
    distributions over the non-target classes. Equals mdistiller's `dkd_loss` (which masks the target
    with -1000 instead of -inf) but stays finite for arbitrarily confident logits.
    """
    gt_mask = F.one_hot(target, logits_s.shape[1]).bool()
    binary_s, other_s = _binary_and_nontarget(logits_s, target, gt_mask, temperature)
    binary_t, other_t = _binary_and_nontarget(logits_t, target, gt_mask, temperature)
    tckd = kl_terms(binary_t, binary_s).sum(dim=1).mean()
    nckd = kl_terms(other_t, other_s).sum(dim=1).mean()
    return temperature**2 * (alpha * tckd + beta * nckd)
