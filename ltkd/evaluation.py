"""Top-1 accuracy overall, per class and per head / medium / tail group on the balanced test set."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Accuracy:
    """Accuracies in percent; group accuracy is the mean per-class accuracy over the group's classes."""

    overall: float
    head: float
    medium: float
    tail: float
    per_class: list[float]

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> dict[str, float]:
        return {"overall": self.overall, "head": self.head, "medium": self.medium, "tail": self.tail}


def accuracy_from_counts(correct: Tensor, total: Tensor, groups: Sequence[Sequence[int]]) -> Accuracy:
    """Build the report from per-class correct and total counts."""
    per_class = (100.0 * correct.double() / total.clamp_min(1).double()).tolist()
    head, medium, tail = (sum(per_class[c] for c in g) / len(g) for g in groups)
    overall = 100.0 * correct.sum().item() / max(total.sum().item(), 1)
    return Accuracy(overall, head, medium, tail, per_class=per_class)


def fp32_logits(model: nn.Module, images: Tensor, autocast: Callable[[], AbstractContextManager]) -> Tensor:
    """`model`'s float32 logits on `images`: the body under `autocast` (bf16 on a GPU), the head
    (`forward_head` on the pooled features) in float32. bf16 logits carry 8 bits of mantissa, so close
    classes would tie, and argmax breaks ties toward the lowest index, i.e. the head classes."""
    with autocast():
        logits, features = model(images)
    if logits.dtype == torch.float32:
        return logits
    with torch.autocast(images.device.type, enabled=False):
        return model.forward_head(features["pooled_feat"].float())


@torch.no_grad()
def class_counts(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    num_classes: int,
    autocast: Callable[[], AbstractContextManager],
) -> tuple[Tensor, Tensor]:
    """Per-class (correct, total) counts of `model` over `batches` (predictions from `fp32_logits`),
    accumulated on the device."""
    was_training = model.training
    model.eval()
    correct = total = None
    for images, labels in batches:
        hits = fp32_logits(model, images, autocast).argmax(dim=1) == labels
        batch_total = torch.bincount(labels, minlength=num_classes)
        batch_correct = torch.bincount(labels, weights=hits.to(torch.float32), minlength=num_classes)
        correct = batch_correct if correct is None else correct + batch_correct
        total = batch_total if total is None else total + batch_total
    model.train(was_training)
    if correct is None:
        raise ValueError("evaluation got no batches")
    return correct.round().long(), total
