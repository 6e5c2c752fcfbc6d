"""Wide ResNets WRN-d-k of the CIFAR distillation zoo (pre-activation blocks).

The BN-ReLU that opens the first block of stages 2 and 3 (whose input only ever goes through it, since
those blocks project their shortcut) closes the stage before instead, like the final BN-ReLU closes the
last stage; every stage therefore ends in BN-ReLU, and its pre-activation map is that BN's output (the
reference's "preact" features). The computation and the parameters are the reference's.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ltkd.models.base import FeatureNet, init_weights
from ltkd.models.registry import register_model


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the input, or a 1x1 projection of the activated input when the
    shape changes; `activated` means the input already went through the opening BN-ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, activated: bool = False) -> None:
        super().__init__()
        self.project = stride != 1 or in_channels != out_channels
        assert self.project or not activated, "an identity shortcut needs the raw input"
        self.act = nn.Identity() if activated else _bn_relu(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False) if self.project else None

    def forward(self, x: Tensor) -> Tensor:
        act = self.act(x)
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return out + (self.shortcut(act) if self.shortcut is not None else x)


class WideResNet(FeatureNet):
    """3x3 conv stem, then 3 stages of (depth - 4) / 6 wide blocks of 16k, 32k, 64k channels."""

    def __init__(self, depth: int, widen: int, num_classes: int) -> None:
        blocks_per_stage, rest = divmod(depth - 4, 6)
        assert rest == 0, f"depth {depth} is not 6n+4"
        widths = (16 * widen, 32 * widen, 64 * widen)
        stages: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False)]
        channels = 16
        for i, width in enumerate(widths):
            blocks: list[nn.Module] = [WideBlock(channels, width, stride=1 if i == 0 else 2, activated=i > 0)]
            blocks += [WideBlock(width, width, 1) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks, _bn_relu(width)))
            channels = width
        super().__init__(stages, nn.Linear(channels, num_classes))
        init_weights(self)
        nn.init.zeros_(self.classifier.bias)


@register_model
def wrn_16_1(num_classes: int) -> WideResNet:
    return WideResNet(16, 1, num_classes)


@register_model
def wrn_16_2(num_classes: int) -> WideResNet:
    return WideResNet(16, 2, num_classes)


@register_model
def wrn_40_1(num_classes: int) -> WideResNet:
    return WideResNet(40, 1, num_classes)


@register_model
def wrn_40_2(num_classes: int) -> WideResNet:
    return WideResNet(40, 2, num_classes)
