"""Head / medium / tail class groups, by training count."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from ltkd.checks import fractions_problem

GROUP_NAMES = ("head", "medium", "tail")


def split_groups(train_counts: Sequence[int],
                 fractions: Sequence[float] = (0.33, 0.34, 0.33)) -> list[list[int]]:
    """Classes sorted by training count (descending, ties by label), cut into len(fractions) groups.

    Every group but the last gets round(f * C) classes, the last the rest (33/34/33 for C = 100).
    Each group lists its classes in that sorted order. ValueError when `fractions_problem` finds one (the
    run config checks the same rule up front).
    """
    fractions = tuple(float(f) for f in fractions)
    num_classes = len(train_counts)
    problem = fractions_problem(fractions, num_classes)
    if problem is not None:
        raise ValueError(f"group fractions: {problem}")
    sizes = [round(f * num_classes) for f in fractions[:-1]]
    sizes.append(num_classes - sum(sizes))
    order = sorted(range(num_classes), key=lambda c: (-train_counts[c], c))
    bounds = [0, *itertools.accumulate(sizes)]
    return [order[a:b] for a, b in itertools.pairwise(bounds)]


def class_to_group(groups: list[list[int]], num_classes: int) -> torch.Tensor:
    """LongTensor (num_classes,): each class's group index; ValueError unless the groups partition 0..C-1."""
    mapping = torch.full((num_classes,), -1, dtype=torch.long)
    for g, members in enumerate(groups):
        for c in members:
            if not 0 <= c < num_classes or mapping[c] != -1:
                raise ValueError(f"groups: class {c} is out of range or in two groups; "
                                 f"expected a partition of 0..{num_classes - 1}")
            mapping[c] = g
    missing = (mapping == -1).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"groups: classes {missing[:10]} are in no group; "
                         f"expected a partition of 0..{num_classes - 1}")
    return mapping
