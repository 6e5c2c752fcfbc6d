"""CIFAR ResNets of the distillation zoo (CRD/RepDistiller): resnet8 ... resnet110, resnet8x4, resnet32x4
and the CIFAR ResNet50, built from torchvision's BasicBlock/Bottleneck (1x1-conv projection shortcuts)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from ltkd.models.base import FeatureNet, conv_bn, init_weights
from ltkd.models.registry import register_model


def residual_stage(block: type[BasicBlock | Bottleneck], in_channels: int, width: int, depth: int,
                   stride: int) -> nn.Sequential:
    """`depth` blocks of `width` (x block.expansion output channels); the first one strides and projects."""
    out_channels = width * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                   nn.BatchNorm2d(out_channels))
    blocks = [block(in_channels, width, stride, downsample)]
    blocks += [block(out_channels, width) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class CifarResNet(FeatureNet):
    """3x3 conv-BN-ReLU stem (no max-pool), then residual stages; the first keeps the resolution, the
    others halve it."""

    def __init__(self, block: type[BasicBlock | Bottleneck], stem_width: int, widths: Sequence[int],
                 depths: Sequence[int], num_classes: int) -> None:
        stages: list[nn.Module] = [conv_bn(3, stem_width, 3)]
        channels = stem_width
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            stages.append(residual_stage(block, channels, width, depth, stride=1 if i == 0 else 2))
            channels = width * block.expansion
        super().__init__(stages, nn.Linear(channels, num_classes))
        init_weights(self)


def _basic_resnet(depth: int, widths: tuple[int, int, int, int], num_classes: int) -> CifarResNet:
    """A depth-(6n+2) BasicBlock ResNet: stem of widths[0] channels, then 3 stages of n blocks."""
    blocks_per_stage, rest = divmod(depth - 2, 6)
    assert rest == 0, f"depth {depth} is not 6n+2"
    return CifarResNet(BasicBlock, widths[0], widths[1:], (blocks_per_stage,) * 3, num_classes)


_WIDTHS = (16, 16, 32, 64)
_WIDTHS_X4 = (32, 64, 128, 256)


@register_model
def resnet8(num_classes: int) -> CifarResNet:
    return _basic_resnet(8, _WIDTHS, num_classes)


@register_model
def resnet14(num_classes: int) -> CifarResNet:
    return _basic_resnet(14, _WIDTHS, num_classes)


@register_model
def resnet20(num_classes: int) -> CifarResNet:
    return _basic_resnet(20, _WIDTHS, num_classes)


@register_model
def resnet32(num_classes: int) -> CifarResNet:
    return _basic_resnet(32, _WIDTHS, num_classes)


@register_model
def resnet44(num_classes: int) -> CifarResNet:
    return _basic_resnet(44, _WIDTHS, num_classes)


@register_model
def resnet56(num_classes: int) -> CifarResNet:
    return _basic_resnet(56, _WIDTHS, num_classes)


@register_model
def resnet110(num_classes: int) -> CifarResNet:
    return _basic_resnet(110, _WIDTHS, num_classes)


@register_model
def resnet8x4(num_classes: int) -> CifarResNet:
    return _basic_resnet(8, _WIDTHS_X4, num_classes)


@register_model
def resnet32x4(num_classes: int) -> CifarResNet:
    return _basic_resnet(32, _WIDTHS_X4, num_classes)


@register_model
def resnet50(num_classes: int) -> CifarResNet:
    """The CIFAR ResNet50 (RepDistiller's resnetv2): 3x3 stem, Bottleneck stages [3, 4, 6, 3]."""
    return CifarResNet(Bottleneck, 64, (64, 128, 256, 512), (3, 4, 6, 3), num_classes)
