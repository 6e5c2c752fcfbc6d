"""The model zoo: `create_model(name, num_classes)` builds any registered architecture; every model's
forward returns `(logits, features)` as described in `ltkd.models.base`."""

from ltkd.models import imagenet, mobilenetv2, resnet, shufflenet, vgg, vit, wrn
from ltkd.models.base import FeatureNet, Features
from ltkd.models.registry import available_models, create_model, has_feature_pyramid, model_name, register_model

__all__ = [
    "FeatureNet",
    "Features",
    "available_models",
    "create_model",
    "has_feature_pyramid",
    "imagenet",
    "mobilenetv2",
    "model_name",
    "register_model",
    "resnet",
    "shufflenet",
    "vgg",
    "vit",
    "wrn",
]
