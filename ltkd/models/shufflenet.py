"""ShuffleNetV1 (g=3) and ShuffleNetV2 (1x) of the CIFAR distillation zoo: 1x1-conv stem at full
resolution, three stages that each halve it. Both keep PyTorch's default init, like the reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltkd.models.base import FeatureNet, ReLUBlock, conv_bn
from ltkd.models.registry import register_model


class ShuffleV1Block(ReLUBlock):
    """Grouped 1x1-BN-ReLU, channel shuffle, 3x3 depthwise-BN-ReLU, grouped 1x1-BN, plus the input; a
    stride-2 block concatenates its 3x3 average-pooled input instead (its branch makes out - in channels)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int) -> None:
        super().__init__()
        branch = out_channels - in_channels if stride == 2 else out_channels
        mid = branch // 4
        # The reference leaves the first 1x1 ungrouped on the 24-channel stem output.
        self.groups1 = 1 if in_channels == 24 else groups
        self.conv1 = conv_bn(in_channels, mid, 1, groups=self.groups1)
        self.conv2 = conv_bn(mid, mid, 3, stride, groups=mid)
        self.conv3 = conv_bn(mid, branch, 1, groups=groups, relu=False)
        self.pool = nn.AvgPool2d(3, 2, 1) if stride == 2 else None

    def pre_relu(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        if self.groups1 > 1:
            out = F.channel_shuffle(out, self.groups1)
        out = self.conv3(self.conv2(out))
        return out + x if self.pool is None else torch.cat([out, self.pool(x)], 1)


class ShuffleV2Block(ReLUBlock):
    """Split the channels in halves; 1x1-BN-ReLU, 3x3 depthwise-BN, 1x1-BN on one; concatenate; shuffle.

    The reference applies the final ReLU to the branch only; the untouched half is a block output, already
    non-negative, so the ReLU after the shuffle computes the same map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            conv_bn(half, half, 1),
            conv_bn(half, half, 3, groups=half, relu=False),
            conv_bn(half, half, 1, relu=False),
        )

    def pre_relu(self, x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return F.channel_shuffle(torch.cat([x1, self.branch(x2)], 1), 2)


class ShuffleV2Down(nn.Module):
    """Stride-2 unit: [3x3 depthwise-BN, 1x1-BN-ReLU] and [1x1-BN-ReLU, 3x3 depthwise-BN, 1x1-BN-ReLU] on the
    input, concatenated and shuffled."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.left = nn.Sequential(
            conv_bn(in_channels, in_channels, 3, 2, groups=in_channels, relu=False),
            conv_bn(in_channels, mid, 1),
        )
        self.right = nn.Sequential(
            conv_bn(in_channels, mid, 1),
            conv_bn(mid, mid, 3, 2, groups=mid, relu=False),
            conv_bn(mid, mid, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.channel_shuffle(torch.cat([self.left(x), self.right(x)], 1), 2)


class ShuffleNetV1(FeatureNet):
    """Stages of 4, 8, 4 blocks with 240, 480, 960 channels and 3 groups."""

    def __init__(self, num_classes: int) -> None:
        stages: list[nn.Module] = [conv_bn(3, 24, 1)]
        channels = 24
        for width, depth in ((240, 4), (480, 8), (960, 4)):
            blocks = [ShuffleV1Block(channels, width, 2, groups=3)]
            blocks += [ShuffleV1Block(width, width, 1, groups=3) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = width
        super().__init__(stages, nn.Linear(channels, num_classes))


class ShuffleNetV2(FeatureNet):
    """Stages of a stride-2 unit plus 3, 7, 3 blocks with 116, 232, 464 channels; the last stage ends with a
    1x1 conv-BN-ReLU to 1024 channels."""

    def __init__(self, num_classes: int) -> None:
        stages: list[nn.Module] = [conv_bn(3, 24, 1)]
        channels = 24
        for i, (width, depth) in enumerate(((116, 3), (232, 7), (464, 3))):
            blocks: list[nn.Module] = [ShuffleV2Down(channels, width)]
            blocks += [ShuffleV2Block(width) for _ in range(depth)]
            if i == 2:
                blocks.append(conv_bn(width, 1024, 1))
            stages.append(nn.Sequential(*blocks))
            channels = width
        super().__init__(stages, nn.Linear(1024, num_classes))


@register_model
def shufflev1(num_classes: int) -> ShuffleNetV1:
    return ShuffleNetV1(num_classes)


@register_model
def shufflev2(num_classes: int) -> ShuffleNetV2:
    return ShuffleNetV2(num_classes)
