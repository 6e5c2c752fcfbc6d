"""Log-space helpers shared by the losses: float32-or-wider inputs and 0·∞-free KL terms."""

from __future__ import annotations

import torch
from torch import Tensor


def as_float(x: Tensor) -> Tensor:
    """`x` in float32 at least (half/bfloat16 are upcast, float64 is kept), for the KL/MSE arithmetic."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def kl_terms(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Elementwise p·(log p − log q) from log-probabilities; exactly 0 where p = 0, in value and gradient.

    Unlike `F.kl_div(log_q, log_p, log_target=True)`, a -inf `log_p` (a masked-out entry) gives 0, not NaN.
    """
    p = log_p.exp()
    return p * torch.where(p > 0, log_p - log_q, 0.0)
