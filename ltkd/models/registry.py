"""Name -> constructor registry. Constructors are thin functions `fn(num_classes) -> FeatureNet`,
registered under their function name by `@register_model` (`@register_model(feature_pyramid=False)` for a
model whose levels are not a multi-resolution feature pyramid, e.g. a ViT's tokens)."""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import TypeVar, overload

from ltkd.models.base import FeatureNet

Constructor = TypeVar("Constructor", bound=Callable[[int], FeatureNet])

_MODELS: dict[str, Callable[[int], FeatureNet]] = {}
_WITHOUT_PYRAMID: set[str] = set()


@overload
def register_model(fn: Constructor) -> Constructor: ...
@overload
def register_model(*, feature_pyramid: bool) -> Callable[[Constructor], Constructor]: ...
def register_model(fn=None, *, feature_pyramid: bool = True):
    """Register `fn` under `fn.__name__`; a name can be registered once. `feature_pyramid=False` marks a
    model whose `feats` are no multi-resolution pyramid (what ReviewKD fuses): see `has_feature_pyramid`."""
    if fn is None:
        return lambda constructor: register_model(constructor, feature_pyramid=feature_pyramid)
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model '{name}' is already registered")
    _MODELS[name] = fn
    if not feature_pyramid:
        _WITHOUT_PYRAMID.add(name)
    return fn


def has_feature_pyramid(name: str) -> bool:
    """Whether model `name` (any spelling `model_name` maps) gives a CNN's multi-resolution `feats`."""
    return model_name(name) not in _WITHOUT_PYRAMID


def model_name(name: str) -> str:
    """The registry name of `name`, also when spelled as other CIFAR distillation codebases (CRD, mdistiller)
    do: MobileNetV2, ShuffleV1, ShuffleV2, ResNet50, ResNet32x4, ... (the registry name in any letter case).
    A name that matches nothing is returned as it is (and reported where it is used)."""
    if name in _MODELS:
        return name
    by_lower = {registered.lower(): registered for registered in _MODELS}
    return by_lower.get(name.lower(), name)


def available_models(pattern: str | None = None) -> list[str]:
    """The registered names, sorted; only those matching the fnmatch `pattern` when one is given."""
    names = sorted(_MODELS)
    return names if pattern is None else [n for n in names if fnmatchcase(n, pattern)]


def create_model(name: str, num_classes: int) -> FeatureNet:
    """A freshly initialised model `name` with a `num_classes`-way classifier."""
    name = model_name(name)
    if name not in _MODELS:
        raise ValueError(f"unknown model '{name}'; available: {', '.join(available_models())}")
    if num_classes < 1:
        raise ValueError(f"num_classes: {num_classes}; must be >= 1")
    return _MODELS[name](num_classes)
