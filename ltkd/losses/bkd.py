"""Balanced Knowledge Distillation (Zhang et al., 2021, arXiv 2104.10510): a class-weighted KL term, the class
weights from the "effective number" of training images (Cui et al., 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ltkd.losses._common import as_float, kl_terms


def class_balanced_weights(train_counts: Sequence[int], beta: float) -> Tensor:
    """w_c ∝ (1 − β) / (1 − β^{n_c}), normalised to sum to C (the number of classes), float32.

    β = 0 gives all ones; equal counts give all ones. ValueError for a class without training images (its
    effective number is 0) or β outside [0, 1).
    """
    if not 0 <= beta < 1:
        raise ValueError(f"class_balanced_weights: beta={beta:g}; must be in [0, 1)")
    counts = torch.as_tensor(list(train_counts), dtype=torch.float64)
    if bool((counts < 1).any()):
        raise ValueError(f"class_balanced_weights: class {int((counts < 1).nonzero()[0])} has no training images")
    weights = (1 - beta) / (1 - beta**counts)
    return (weights * len(counts) / weights.sum()).float()


def bkd_loss(logits_s: Tensor, logits_t: Tensor, class_weights: Tensor | None, temperature: float) -> Tensor:
    """T² · Σ_c w_c · pᵀ_c · log(pᵀ_c / pˢ_c), p = softmax(z/T), summed over classes, mean over the batch.

    `class_weights` (C,): w_c; None: all ones, i.e. `kd_loss`.
    """
    log_p_s = F.log_softmax(as_float(logits_s) / temperature, dim=1)
    log_p_t = F.log_softmax(as_float(logits_t) / temperature, dim=1)
    terms = kl_terms(log_p_t, log_p_s)
    if class_weights is not None:
        terms = terms * class_weights.to(terms.dtype)
    return temperature**2 * terms.sum(dim=1).mean()
