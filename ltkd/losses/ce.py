"""Cross-entropy with logit adjustment (Menon et al., ICLR 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ltkd.losses._common import as_float


def class_log_prior(train_counts: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """log(n_c / Σ n) per class, float32 (-inf for a class without training images)."""
    counts = torch.as_tensor(list(train_counts), dtype=torch.float64, device=device)
    return (counts / counts.sum()).log().float()


def logit_adjusted_ce(logits: Tensor, target: Tensor, log_prior: Tensor | None, tau: float) -> Tensor:
    """Mean cross-entropy of `logits + τ·log_prior`; τ = 0 is plain cross-entropy (log_prior may be None)."""
    logits = as_float(logits)
    if tau:
        if log_prior is None:
            raise ValueError(f"logit_adjusted_ce: tau={tau:g} needs a log_prior")
        logits = logits + tau * log_prior.to(logits.dtype)
    return F.cross_entropy(logits, target)
