"""Teacher bias, measured: how much probability mass a model puts on each class group.

The group mass of group G at temperature T is the mean over images of Σ_{c∈G} softmax(z/T)_c, in
percent (a model's groups sum to 100), with the run's head / medium / tail groups (classes sorted by
training count, `dataset.group_fractions`). It is measured on the long-tailed training set without
augmentation and on the balanced test set, at T = 1 and at the distillation temperature
(`loss.temperature`), for the teacher and the student. A teacher biased toward the head puts more than
the head's share of classes on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltkd.data import GROUP_NAMES, class_to_group
from ltkd.evaluation import fp32_logits

DEFINITION = ("group mass = mean over images of the summed softmax(z/T) probability of the group's classes, "
              "in percent (head + medium + tail = 100); train = the long-tailed training set without "
              "augmentation, test = the balanced test set; T = 1 and T = loss.temperature (methods with one); "
              "class share = the group's share of the classes (what a uniform prediction would give)")
SPLITS = ("train", "test")

Batches = Iterable[tuple[Tensor, Tensor]]


def temperature_key(temperature: float) -> str:
    return f"T={temperature:g}"


@torch.no_grad()
def group_mass_sums(model: nn.Module, batches: Batches, class_to_group: Tensor, temperatures: Sequence[float],
                    autocast: Callable[[], AbstractContextManager]) -> tuple[Tensor, Tensor]:
    """((len(temperatures), K) summed group masses over the images, their count), on the device."""
    was_training = model.training
    model.eval()
    sums, count = None, None
    for images, _ in batches:
        logits = fp32_logits(model, images, autocast)
        per_class = torch.stack([F.softmax(logits / t, dim=1).sum(dim=0) for t in temperatures])  # (T, C)
        sums = per_class if sums is None else sums + per_class
        count = (0 if count is None else count) + logits.new_full((), len(images), dtype=torch.float32)
    model.train(was_training)
    if sums is None:
        raise ValueError("group mass: no batches")
    num_groups = int(class_to_group.max()) + 1
    return sums.new_zeros(len(temperatures), num_groups).index_add(1, class_to_group, sums), count


def measure(models: Mapping[str, nn.Module], loaders: Mapping[str, Batches], groups: Sequence[Sequence[int]],
            temperatures: Sequence[float], autocast: Callable[[], AbstractContextManager],
            reduce: Callable[[Tensor], Tensor] = lambda t: t) -> dict:
    """The group masses of each model on each split (see DEFINITION), as stored in metrics.json:
    {"definition", "class_share": {group: %}, model: {split: {"T=t": {group: %}}}}. `reduce` sums a tensor
    over DDP ranks."""
    temperatures = list(dict.fromkeys(float(t) for t in temperatures))
    num_classes = sum(len(g) for g in groups)
    mapping = class_to_group([list(g) for g in groups], num_classes)
    names = GROUP_NAMES[:len(groups)]
    result: dict = {"definition": DEFINITION,
                    "class_share": {n: 100.0 * len(g) / num_classes for n, g in zip(names, groups, strict=True)}}
    for who, model in models.items():
        mapping = mapping.to(next(model.parameters()).device)
        result[who] = {}
        for split, batches in loaders.items():
            sums, count = group_mass_sums(model, batches, mapping, temperatures, autocast)
            means = (100.0 * reduce(sums) / reduce(count)).tolist()
            result[who][split] = {temperature_key(t): dict(zip(names, row, strict=True))
                                  for t, row in zip(temperatures, means, strict=True)}
    return result


def flatten(group_mass: Mapping, who: str) -> dict[str, float]:
    """`who`'s group masses as {"<split> T=<t> <group>": %} ({} when not measured)."""
    return {f"{split} {t} {group}": value for split, by_t in group_mass.get(who, {}).items()
            for t, by_group in by_t.items() for group, value in by_group.items()}


def table_rows(group_mass: Mapping) -> dict[str, dict[str, float]]:
    """{"teacher train T=1": {group: %}, ...} for the console table, plus the class shares."""
    rows = {f"{who} {split} {key}": masses
            for who, splits in group_mass.items() if who not in ("definition", "class_share")
            for split, by_t in splits.items() for key, masses in by_t.items()}
    return rows | {"class share": group_mass["class_share"]}
