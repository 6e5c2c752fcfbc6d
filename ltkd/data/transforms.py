"""Reference (torchvision, PIL-based) transforms and a Dataset over an ImageSet."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torchvision import transforms as T

from ltkd.data.base import ImageSet, open_rgb
from ltkd.errors import ConfigError

CROP_PADDING = {"cifar100_lt": 4, "tinyimagenet_lt": 8}


def build_transforms(name: str, train: bool, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """Train: random (padded or resized) crop + horizontal flip; test: identity (CIFAR, Tiny) or resize 256 +
    center crop 224 (ImageNet); both end with ToTensor + Normalize(mean, std)."""
    if name in CROP_PADDING:
        size = 32 if name == "cifar100_lt" else 64
        geometry = [T.RandomCrop(size, padding=CROP_PADDING[name]), T.RandomHorizontalFlip()] if train else []
    elif name == "imagenet_lt":
        geometry = ([T.RandomResizedCrop(224), T.RandomHorizontalFlip()] if train
                    else [T.Resize(256), T.CenterCrop(224)])
    else:
        raise ConfigError(f"dataset name: '{name}'; expected cifar100_lt, tinyimagenet_lt or imagenet_lt")
    return T.Compose([*geometry, T.ToTensor(), T.Normalize(tuple(mean), tuple(std))])


class ImageSetDataset(torch.utils.data.Dataset):
    """(transform(PIL image), label) pairs of an ImageSet, in memory (uint8 CHW) or file-backed."""

    def __init__(self, split: ImageSet, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.split.images is not None:
            image = Image.fromarray(self.split.images[index].permute(1, 2, 0).numpy())
        else:
            image = open_rgb(self.split.paths[index])
        return self.transform(image), int(self.split.labels[index])
