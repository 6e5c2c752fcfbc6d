"""Pure loss functions: KD, DKD, ReviewKD's HCL, BKD, LTKD and logit-adjusted cross-entropy."""

from ltkd.losses.bkd import bkd_loss, class_balanced_weights
from ltkd.losses.ce import class_log_prior, logit_adjusted_ce
from ltkd.losses.dkd import dkd_loss
from ltkd.losses.hcl import hcl_loss
from ltkd.losses.kd import kd_loss
from ltkd.losses.ltkd import (
    KLDecomposition,
    kl_decomposition,
    ltkd_loss,
    rebalance_factors,
    teacher_group_mean,
)

__all__ = [
    "KLDecomposition",
    "bkd_loss",
    "class_balanced_weights",
    "class_log_prior",
    "dkd_loss",
    "hcl_loss",
    "kd_loss",
    "kl_decomposition",
    "logit_adjusted_ce",
    "ltkd_loss",
    "rebalance_factors",
    "teacher_group_mean",
]
