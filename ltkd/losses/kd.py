"""Hinton et al. (2015) knowledge distillation."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ltkd.losses._common import as_float, kl_terms


def kd_loss(logits_s: Tensor, logits_t: Tensor, temperature: float) -> Tensor:
    """T² · KL(softmax(zᵀ/T) ‖ softmax(zˢ/T)), summed over classes, mean over the batch."""
    log_p_s = F.log_softmax(as_float(logits_s) / temperature, dim=1)
    log_p_t = F.log_softmax(as_float(logits_t) / temperature, dim=1)
    return temperature**2 * kl_terms(log_p_t, log_p_s).sum(dim=1).mean()
