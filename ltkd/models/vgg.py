"""VGG with BatchNorm of the CIFAR distillation zoo (no hidden FC layers): five conv stages, a 2x max-pool
opening each of stages 1-4."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ltkd.models.base import FeatureNet, conv_bn, init_weights
from ltkd.models.registry import register_model


class MaxPoolAbove(nn.Module):
    """2x max-pool of maps larger than `size` x `size`, identity otherwise: the reference pools before the
    last stage only for 64x64 inputs, so that stage sees 4x4 maps at both 32x32 and 64x64."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, 2) if x.shape[-1] > self.size else x


class VGG(FeatureNet):
    """Stage i: (a max-pool, for i > 0, then) one conv3x3-BN-ReLU per entry of `widths[i]`."""

    def __init__(self, widths: Sequence[Sequence[int]], num_classes: int) -> None:
        stages: list[nn.Module] = []
        channels = 3
        for i, stage_widths in enumerate(widths):
            layers: list[nn.Module] = []
            if i > 0:
                layers.append(MaxPoolAbove(4) if i == len(widths) - 1 else nn.MaxPool2d(2))
            for width in stage_widths:
                layers.append(conv_bn(channels, width, 3, bias=True))
                channels = width
            stages.append(nn.Sequential(*layers))
        super().__init__(stages, nn.Linear(channels, num_classes))
        init_weights(self, linear_std=0.01)


@register_model
def vgg8(num_classes: int) -> VGG:
    return VGG(((64,), (128,), (256,), (512,), (512,)), num_classes)


@register_model
def vgg11(num_classes: int) -> VGG:
    return VGG(((64,), (128,), (256, 256), (512, 512), (512, 512)), num_classes)


@register_model
def vgg13(num_classes: int) -> VGG:
    return VGG(((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)), num_classes)
