"""torchvision's ImageNet ResNet18/34/50 and MobileNetV2, built untrained (`weights=None`), with their own
modules regrouped into stages that satisfy the feature contract."""

from __future__ import annotations

from torch import nn
from torchvision import models

from ltkd.models.base import FeatureNet
from ltkd.models.registry import register_model


class TorchvisionResNet(FeatureNet):
    """Stem (stride 4) then layer1-4 (strides 4, 8, 16, 32).

    The stem max-pools before its ReLU: max-pooling commutes with ReLU, so the output is torchvision's and
    the stem gets a pre-activation map of the same shape."""

    def __init__(self, net: models.ResNet) -> None:
        stem = nn.Sequential(net.conv1, net.bn1, net.maxpool, nn.ReLU(inplace=True))
        super().__init__([stem, net.layer1, net.layer2, net.layer3, net.layer4], net.fc)


class TorchvisionMobileNetV2(FeatureNet):
    """Stem (stride 2), then stages at strides 4, 8, 16, 32 (24, 32, 96 and, with the last 1x1 conv, 1280
    channels); the pre-activation maps are taken before ReLU6, and the classifier keeps its dropout."""

    def __init__(self, net: models.MobileNetV2) -> None:
        f = net.features
        dropout, classifier = net.classifier
        assert isinstance(dropout, nn.Dropout) and isinstance(classifier, nn.Linear)
        super().__init__([f[0], f[1:4], f[4:7], f[7:14], f[14:]], classifier, dropout=dropout.p)


@register_model
def resnet18_imagenet(num_classes: int) -> TorchvisionResNet:
    return TorchvisionResNet(models.resnet18(weights=None, num_classes=num_classes))


@register_model
def resnet34_imagenet(num_classes: int) -> TorchvisionResNet:
    return TorchvisionResNet(models.resnet34(weights=None, num_classes=num_classes))


@register_model
def resnet50_imagenet(num_classes: int) -> TorchvisionResNet:
    return TorchvisionResNet(models.resnet50(weights=None, num_classes=num_classes))


@register_model
def mobilenetv2_imagenet(num_classes: int) -> TorchvisionMobileNetV2:
    return TorchvisionMobileNetV2(models.mobilenet_v2(weights=None, num_classes=num_classes))
