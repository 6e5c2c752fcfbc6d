"""The CIFAR MobileNetV2 of the distillation zoo (RepDistiller's `mobile_half`: expansion 6, width 0.5).

Unlike torchvision's, every inverted residual has its 1x1 expansion conv (also at expansion 1) and the
activations are ReLU. The stages end after the 2nd, 3rd, 5th and 7th block groups (the reference's feature
points); the last one also holds the 1x1 conv to 1280 channels, so `feats[-1]` is the map that gets pooled.
"""

from __future__ import annotations

from torch import Tensor, nn

from ltkd.models.base import FeatureNet, conv_bn, init_weights
from ltkd.models.registry import register_model


class InvertedResidual(nn.Module):
    """1x1 expand-BN-ReLU, 3x3 depthwise-BN-ReLU, 1x1 project-BN (linear); residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.conv = nn.Sequential(
            conv_bn(in_channels, hidden, 1),
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            conv_bn(hidden, out_channels, 1, relu=False),
        )
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.residual else out


# (output channels at width 1, blocks, first stride) per block group; stages end after groups 2, 3, 5
# and (with the final 1x1 conv) 7.
_GROUPS = ((16, 1, 1), (24, 2, 1), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1))
_STAGE_ENDS = (2, 3, 5)


class MobileNetV2(FeatureNet):
    """Stride-2 3x3 stem, then the inverted-residual groups (the first at expansion 1) and a 1x1 conv."""

    def __init__(self, expansion: int, width_mult: float, num_classes: int) -> None:
        channels = int(32 * width_mult)
        stages: list[nn.Module] = [conv_bn(3, channels, 3, stride=2)]
        blocks: list[nn.Module] = []
        for g, (width, n, first_stride) in enumerate(_GROUPS, start=1):
            out_channels = int(width * width_mult)
            for i in range(n):
                stride = first_stride if i == 0 else 1
                blocks.append(InvertedResidual(channels, out_channels, stride, 1 if g == 1 else expansion))
                channels = out_channels
            if g in _STAGE_ENDS:
                stages.append(nn.Sequential(*blocks))
                blocks = []
        last_channels = max(1280, int(1280 * width_mult))
        stages.append(nn.Sequential(*blocks, conv_bn(channels, last_channels, 1)))
        super().__init__(stages, nn.Linear(last_channels, num_classes))
        init_weights(self, linear_std=0.01)


@register_model
def mobilenetv2(num_classes: int) -> MobileNetV2:
    return MobileNetV2(expansion=6, width_mult=0.5, num_classes=num_classes)
