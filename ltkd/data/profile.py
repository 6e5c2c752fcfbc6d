"""The long-tailed training profile and subset selection of LDAM-DRW (Cao et al., 2019)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ltkd.errors import DataError


def long_tailed_counts(n_max: int, num_classes: int, imbalance_factor: float) -> list[int]:
    """Images kept per class: n_c = int(n_max * γ^(-c/(C-1))) for c = 0..C-1, γ = `imbalance_factor`.

    Computed as LDAM-DRW does, n_max * (1/γ)^(c/(C-1)), so the counts are bit-identical to theirs.
    """
    if not (math.isfinite(imbalance_factor) and imbalance_factor >= 1):
        raise ValueError(f"imbalance_factor: {imbalance_factor}; must be a finite number >= 1")
    if n_max < 1:
        raise ValueError(f"n_max: {n_max}; must be >= 1")
    if num_classes < 2:
        raise ValueError(f"num_classes: {num_classes}; a long-tailed profile needs >= 2 classes")
    ratio = 1.0 / imbalance_factor
    return [int(n_max * ratio ** (c / (num_classes - 1.0))) for c in range(num_classes)]


def select_long_tailed(labels: Sequence[int] | np.ndarray, counts: Sequence[int], seed: int) -> np.ndarray:
    """Indices into `labels` of the long-tailed subset, class by class (class 0 first).

    Exactly LDAM-DRW's IMBALANCECIFAR selection: seed numpy's legacy generator once, then for each class c
    shuffle the indices of its images and keep the first counts[c]. A private `RandomState(seed)` draws
    the same stream as `np.random.seed(seed)` without touching the global numpy state.
    Raises DataError when a class has fewer images than asked or a label is outside 0..len(counts)-1.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(counts)):
        bad = labels[(labels < 0) | (labels >= len(counts))][0]
        raise DataError(f"labels: found label {bad}; expected labels in 0..{len(counts) - 1}")
    rng = np.random.RandomState(seed)
    selected = []
    for c, n_c in enumerate(counts):
        idx = np.where(labels == c)[0]
        if len(idx) < n_c:
            raise DataError(f"class {c}: has {len(idx)} images; the long-tailed profile needs {n_c}")
        rng.shuffle(idx)
        selected.append(idx[:n_c])
    return np.concatenate(selected) if selected else np.zeros(0, dtype=np.int64)
