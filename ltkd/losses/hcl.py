"""ReviewKD's hierarchical context loss (Chen et al., CVPR 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ltkd.losses._common import as_float

POOL_LEVELS = (4, 2, 1)


def hcl_loss(student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor]) -> Tensor:
    """Σ over feature pairs of the weighted mean of MSEs at full resolution (weight 1) and after
    adaptive average pooling to 4x4, 2x2, 1x1 (only levels smaller than the map height; weights
    1/2, 1/4, 1/8 for the levels kept, in that order), divided by the sum of the weights used."""
    losses = []
    for fs, ft in zip(student_feats, teacher_feats, strict=True):
        fs, ft = as_float(fs), as_float(ft)
        loss, weight, total = F.mse_loss(fs, ft), 1.0, 1.0
        for level in POOL_LEVELS:
            if level >= fs.shape[-2]:
                continue
            weight /= 2
            total += weight
            pooled_s, pooled_t = F.adaptive_avg_pool2d(fs, level), F.adaptive_avg_pool2d(ft, level)
            loss = loss + weight * F.mse_loss(pooled_s, pooled_t)
        losses.append(loss / total)
    return torch.stack(losses).sum()
