"""Accuracy from hand-counted predictions: per class, per group, overall; counts accumulate over batches."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from torch import Tensor, nn

from ltkd.evaluation import accuracy_from_counts, class_counts

# 7 test images of 4 classes over two batches; what the model predicts for each
LABELS = [torch.tensor([0, 0, 1, 2]), torch.tensor([3, 3, 3])]
PREDICTED = [torch.tensor([0, 1, 1, 2]), torch.tensor([0, 3, 3])]
GROUPS = [[0, 1], [2], [3]]  # head, medium, tail


class Replay(nn.Module):
    """Predicts, batch after batch, the classes in PREDICTED (one-hot logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, images: Tensor) -> tuple[Tensor, dict]:
        predicted = PREDICTED[self.calls]
        self.calls += 1
        return nn.functional.one_hot(predicted, 4).float(), {}


def test_class_counts_by_hand():
    model = Replay().train()
    batches = [(torch.zeros(len(labels), 3, 2, 2), labels) for labels in LABELS]
    correct, total = class_counts(model, batches, 4, nullcontext)
    assert correct.tolist() == [1, 1, 1, 2] and total.tolist() == [2, 1, 1, 3]
    assert model.training  # restored after evaluating in eval mode


def test_accuracy_from_counts_by_hand():
    acc = accuracy_from_counts(torch.tensor([1, 1, 1, 2]), torch.tensor([2, 1, 1, 3]), GROUPS)
    assert acc.per_class == pytest.approx([50.0, 100.0, 100.0, 200 / 3])
    assert (acc.head, acc.medium, acc.tail) == pytest.approx((75.0, 100.0, 200 / 3))  # mean over the group's classes
    assert acc.overall == pytest.approx(500 / 7)  # over images, not classes


def test_predictions_come_from_float32_logits_under_bf16_autocast():
    """Two classes whose logits differ by less than bf16 resolves near 1 (2^-7): bf16 logits tie and argmax
    would pick class 0, the lower index (a head class); the float32 head tells them apart."""
    from ltkd.models.base import FeatureNet
    from ltkd.runtime import Runtime

    classifier = nn.Linear(1, 2)
    with torch.no_grad():
        classifier.weight.fill_(0.0)
        classifier.bias.copy_(torch.tensor([1.0, 1.001]))
    model = FeatureNet([nn.Identity()], classifier)
    images, labels = torch.ones(4, 1, 1, 1), torch.ones(4, dtype=torch.long)  # every image is class 1
    runtime = Runtime(torch.device("cpu"), bf16=True, channels_last=False)
    with runtime.autocast():
        tied, _ = model(images)
    assert tied.dtype == torch.bfloat16 and bool((tied[:, 0] == tied[:, 1]).all())  # the tie is real
    correct, total = class_counts(model, [(images, labels)], 2, runtime.autocast)
    assert correct.tolist() == [0, 4] and total.tolist() == [0, 4]
