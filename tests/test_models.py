"""The model zoo: registry, published parameter counts, and the (logits, features) contract of every model."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tv

from ltkd.evaluation import fp32_logits
from ltkd.models import FeatureNet, available_models, create_model, has_feature_pyramid, register_model
from ltkd.models.imagenet import TorchvisionMobileNetV2, TorchvisionResNet

IMAGENET = available_models("*_imagenet")
CIFAR = [name for name in available_models() if name not in IMAGENET]
CIFAR_CNN = [name for name in CIFAR if has_feature_pyramid(name)]  # the ViT reads the contract its own way

# Published parameter counts at 100 classes (CRD / RepDistiller, mdistiller).
PARAMS = {
    "resnet8": 83_892, "resnet8x4": 1_233_540, "resnet32x4": 7_433_860, "resnet20": 278_324,
    "resnet32": 472_756, "resnet56": 861_620, "resnet110": 1_736_564, "wrn_16_2": 703_284,
    "wrn_40_1": 569_780, "wrn_40_2": 2_255_156, "vgg8": 3_965_028, "vgg13": 9_462_180,
    "mobilenetv2": 812_836, "shufflev1": 949_258, "shufflev2": 1_355_528, "resnet50": 23_705_252,
    "vit_tiny": 2_714_980,  # ours (ltkd.models.vit: patch 4, width 192, depth 9, 3 heads, MLP ratio 2)
}

# (channels, side) of each `feats` entry at 32x32 input for the teacher/student architectures.
FEATS_32 = {
    "resnet8": [(16, 32), (16, 32), (32, 16), (64, 8)],
    "resnet32x4": [(32, 32), (64, 32), (128, 16), (256, 8)],
    "resnet8x4": [(32, 32), (64, 32), (128, 16), (256, 8)],
    "wrn_40_2": [(16, 32), (32, 32), (64, 16), (128, 8)],
    "wrn_16_2": [(16, 32), (32, 32), (64, 16), (128, 8)],
    "vgg13": [(64, 32), (128, 16), (256, 8), (512, 4), (512, 4)],
    "vgg8": [(64, 32), (128, 16), (256, 8), (512, 4), (512, 4)],
    "mobilenetv2": [(16, 16), (12, 16), (16, 8), (48, 4), (1280, 2)],
    "shufflev1": [(24, 32), (240, 16), (480, 8), (960, 4)],
    "shufflev2": [(24, 32), (116, 16), (232, 8), (1024, 4)],
    "resnet50": [(64, 32), (256, 32), (512, 16), (1024, 8), (2048, 4)],
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These forwards are tiny; one intra-op thread keeps them fast when other processes share the cores
    (busy-waiting OpenMP workers then slow them down by orders of magnitude)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def model(name: str) -> FeatureNet:
    """One eval-mode instance per name, shared by the tests (which must not modify it)."""
    torch.manual_seed(0)
    return create_model(name, 100).eval()


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run(net: FeatureNet, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Forward `x` and check the feature contract; returns (logits, features)."""
    with torch.no_grad():
        logits, features = net(x)
    assert set(features) == {"feats", "preact_feats", "pooled_feat"}
    feats, preacts, pooled = features["feats"], features["preact_feats"], features["pooled_feat"]
    assert logits.shape == (x.shape[0], net.num_classes)
    assert isinstance(net.classifier, nn.Linear) and net.classifier.out_features == net.num_classes
    assert len(feats) == len(preacts) >= 4
    for post, pre in zip(feats, preacts, strict=True):
        assert post.shape == pre.shape and post.shape[0] == x.shape[0]
        # Each stage either ends without an activation or its output is the activated pre-activation map.
        assert pre is post or torch.equal(post, F.relu(pre)) or torch.equal(post, F.relu6(pre))
    assert pooled.shape == (x.shape[0], net.classifier.in_features) == feats[-1].shape[:2]
    torch.testing.assert_close(pooled, feats[-1].mean(dim=(2, 3)))
    torch.testing.assert_close(logits, net.classifier(pooled))
    return logits, features


@pytest.mark.parametrize("name", CIFAR_CNN)
def test_cifar_contract_at_32_and_64(name: str) -> None:
    net = model(name)
    x = torch.randn(2, 3, 32, 32)
    _, at32 = run(net, x)
    _, at64 = run(net, torch.randn(2, 3, 64, 64))
    assert [f.shape[1] for f in at32["feats"]] == [f.shape[1] for f in at64["feats"]]
    # The stages compose: running them as plain modules gives the same maps.
    with torch.no_grad():
        for stage, feat in zip(net.stages, at32["feats"], strict=True):
            x = stage(x)
            torch.testing.assert_close(x, feat)


@pytest.mark.parametrize("name", sorted(FEATS_32))
def test_feature_shapes_at_32(name: str) -> None:
    _, features = run(model(name), torch.randn(1, 3, 32, 32))
    assert [(f.shape[1], f.shape[2]) for f in features["feats"]] == FEATS_32[name]
    assert all(f.shape[2] == f.shape[3] for f in features["feats"])


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_published_parameter_count(name: str) -> None:
    assert n_params(model(name)) == PARAMS[name]


@pytest.mark.parametrize("name", CIFAR + IMAGENET)
def test_channels_last(name: str) -> None:
    net = model(name)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, _ = net(x)
        logits, features = copy.deepcopy(net).to(memory_format=torch.channels_last)(
            x.to(memory_format=torch.channels_last))
    # Fresh BatchNorm statistics let deep nets' eval-mode logits grow large: compare relative to their scale.
    scale = expected.abs().max()
    torch.testing.assert_close(logits / scale, expected / scale, rtol=0, atol=1e-4)
    if has_feature_pyramid(name):  # the ViT's maps are views of its token rows
        assert features["feats"][-1].is_contiguous(memory_format=torch.channels_last)


# CPU bf16 depthwise/grouped convolutions take seconds to minutes here, so the mobile nets are left out.
@pytest.mark.parametrize("name", ["resnet8", "resnet50", "wrn_16_2", "vgg8", "resnet18_imagenet"])
def test_bf16_autocast(name: str) -> None:
    x = torch.randn(1, 3, 32, 32).to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = run(model(name), x)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


TORCHVISION = {
    "resnet18_imagenet": tv.resnet18, "resnet34_imagenet": tv.resnet34,
    "resnet50_imagenet": tv.resnet50, "mobilenetv2_imagenet": tv.mobilenet_v2,
}


def test_imagenet_names() -> None:
    assert sorted(TORCHVISION) == IMAGENET


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_contract_and_parameter_count(name: str) -> None:
    net = model(name)
    _, features = run(net, torch.randn(1, 3, 64, 64))
    # Stem, then strides 4, 8, 16, 32 (the ResNet stem already pools to stride 4).
    sides = [f.shape[-1] for f in features["feats"]]
    assert sides == ([16, 16, 8, 4, 2] if "resnet" in name else [32, 16, 8, 4, 2])
    assert n_params(net) == n_params(TORCHVISION[name](weights=None, num_classes=100))


@pytest.mark.parametrize(("factory", "wrapper"), [(tv.resnet18, TorchvisionResNet),
                                                  (tv.resnet50, TorchvisionResNet),
                                                  (tv.mobilenet_v2, TorchvisionMobileNetV2)])
def test_imagenet_wrapper_computes_torchvisions_logits(factory: Callable[..., nn.Module],
                                                       wrapper: Callable[[nn.Module], FeatureNet]) -> None:
    torch.manual_seed(0)
    net = factory(weights=None, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = net(x)
        logits, _ = wrapper(net)(x)
    torch.testing.assert_close(logits, expected)


def test_unknown_model_is_a_one_line_value_error() -> None:
    with pytest.raises(ValueError) as info:
        create_model("resnet9", 100)
    message = str(info.value)
    assert "\n" not in message
    assert message == f"unknown model 'resnet9'; available: {', '.join(available_models())}"


def test_bad_num_classes_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        create_model("resnet8", 0)


def test_available_models_pattern() -> None:
    names = available_models()
    assert names == sorted(names) and {"resnet8", "resnet50", "resnet50_imagenet", "shufflev2"} <= set(names)
    assert available_models("wrn_*") == ["wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"]
    assert available_models("vgg?") == ["vgg8"]
    assert available_models("nothing*") == []


def test_register_model_refuses_a_taken_name() -> None:
    def resnet8(num_classes: int) -> FeatureNet:
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="already registered"):
        register_model(resnet8)


def test_num_classes() -> None:
    net = create_model("resnet8", 7)
    assert net.num_classes == 7 and net.classifier.out_features == 7


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("side", [32, 64])
def test_vit_forward(train: bool, side: int) -> None:
    """vit_tiny on a batch of 2: patch-token maps of one resolution per stage, the normed class token as the
    pooled feature, the classifier on it; at 64x64 (TinyImageNet) the position embeddings are resized."""
    torch.manual_seed(0)
    net = create_model("vit_tiny", 100).train(train)
    x = torch.randn(2, 3, side, side)
    logits, features = net(x)
    assert set(features) == {"feats", "preact_feats", "pooled_feat"}
    assert logits.shape == (2, 100) and torch.isfinite(logits).all()
    assert [tuple(f.shape) for f in features["feats"]] == [(2, 192, side // 4, side // 4)] * 4
    assert all(pre is post for pre, post in zip(features["preact_feats"], features["feats"], strict=True))
    assert features["pooled_feat"].shape == (2, 192)
    torch.testing.assert_close(logits, net.forward_head(features["pooled_feat"]))
    if train:
        logits.sum().backward()
        assert all(p.grad is not None for p in net.parameters())


def test_vit_head_in_fp32_under_bf16_autocast() -> None:
    """`fp32_logits` (the evaluation path) reruns the ViT's head in float32 on its pooled class token."""
    net = model("vit_tiny")
    x = torch.randn(2, 3, 32, 32)

    def bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    with torch.no_grad():
        logits = fp32_logits(net, x, bf16)
        expected, _ = net(x)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, rtol=0.05, atol=0.05)


def test_only_the_vit_lacks_a_feature_pyramid() -> None:
    assert [name for name in available_models() if not has_feature_pyramid(name)] == ["vit_tiny"]
    assert not has_feature_pyramid("ViT_Tiny") and has_feature_pyramid("ResNet8x4")
