"""The feature contract every model satisfies, and the building blocks the architectures share.

A model is a stem plus stages run in order; `forward` returns `(logits, features)` with

- `features["feats"][i]`: the output of stage i (stage 0 is the stem), what the next stage receives;
- `features["preact_feats"][i]`: the same map before the stage's final ReLU (the very same tensor when the
  stage does not end in one);
- `features["pooled_feat"]`: the global average of `feats[-1]`, the (N, C) vector the classifier reads.

A transformer (`ltkd.models.vit`) reads this its own way: `feats` are its token maps, all of one resolution,
and `pooled_feat` is its normed class token; it is registered with `feature_pyramid=False`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck


class Features(TypedDict):
    """The second element of every model's output."""

    feats: list[Tensor]
    preact_feats: list[Tensor]
    pooled_feat: Tensor


class ReLUBlock(nn.Module):
    """A block whose last op is a ReLU; subclasses compute the map before it in `pre_relu`."""

    def pre_relu(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.pre_relu(x))


def forward_preact(module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run `module` on `x`; return (its output before its final ReLU, its output).

    Looks through nested `nn.Sequential`s to the last op: a ReLU/ReLU6, a `ReLUBlock` or a torchvision
    residual block is split at its final activation; any other op ends without one, so both are its output.
    """
    if isinstance(module, nn.ReLU):
        return x, F.relu(x)
    if isinstance(module, nn.ReLU6):
        return x, F.relu6(x)
    if isinstance(module, nn.Sequential) and len(module) > 0:
        *body, last = module
        for layer in body:
            x = layer(x)
        return forward_preact(last, x)
    if isinstance(module, ReLUBlock):
        pre = module.pre_relu(x)
        return pre, F.relu(pre)
    if isinstance(module, (BasicBlock, Bottleneck)):
        pre = _residual_pre_relu(module, x)
        return pre, F.relu(pre)
    out = module(x)
    return out, out


def _residual_pre_relu(block: BasicBlock | Bottleneck, x: Tensor) -> Tensor:
    """torchvision's BasicBlock/Bottleneck forward without the final ReLU."""
    out = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    if isinstance(block, Bottleneck):
        out = block.bn3(block.conv3(block.relu(out)))
    return out + (x if block.downsample is None else block.downsample(x))


class FeatureNet(nn.Module):
    """A classifier over `stages` (the stem first) whose forward returns `(logits, Features)`."""

    def __init__(self, stages: Sequence[nn.Module], classifier: nn.Linear, dropout: float = 0.0) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = classifier
        self.num_classes = classifier.out_features

    def forward(self, x: Tensor) -> tuple[Tensor, Features]:
        feats: list[Tensor] = []
        preact_feats: list[Tensor] = []
        for stage in self.stages:
            pre, x = forward_preact(stage, x)
            preact_feats.append(pre)
            feats.append(x)
        pooled = x.mean(dim=(2, 3))
        return self.forward_head(pooled), {"feats": feats, "preact_feats": preact_feats, "pooled_feat": pooled}

    def forward_head(self, pooled: Tensor) -> Tensor:
        """The logits from `features["pooled_feat"]` (dropout, then the classifier)."""
        return self.classifier(self.dropout(pooled))


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
            bias: bool = False, relu: bool = True) -> nn.Sequential:
    """Conv2d ("same" padding) + BatchNorm2d, then a ReLU unless `relu` is False."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=bias),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


@torch.no_grad()
def init_weights(model: nn.Module, linear_std: float | None = None) -> None:
    """The CIFAR zoo's init: Kaiming-normal (fan_out) convs with zero bias, BatchNorm weight 1 and bias 0;
    Linear layers N(0, linear_std) with zero bias when `linear_std` is given, else PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.fill_(1.0)
            m.bias.zero_()
        elif isinstance(m, nn.Linear) and linear_std is not None:
            m.weight.normal_(0.0, linear_std)
            m.bias.zero_()
