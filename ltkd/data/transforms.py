"""Reference (torchvision, PIL-based) transforms and a Dataset over an ImageSet."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torchvision import transforms as T

from ltkd.data.base import ImageSet, open_rgb
from ltkd.data.datasets import dataset_spec


def build_transforms(name: str, train: bool, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """The dataset's geometry (its spec's: random crop + flip for training, its test-time crop) followed by
    ToTensor + Normalize(mean, std). ValueError for an unknown dataset."""
    spec = dataset_spec(name)
    return T.Compose([*spec.geometry(spec, train), T.ToTensor(), T.Normalize(tuple(mean), tuple(std))])


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
