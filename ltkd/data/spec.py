"""What a dataset is to the rest of the code: a `DatasetSpec`, exported as `SPEC` by the dataset's own module
(`cifar.py`, `tinyimagenet.py`, `imagenet.py`) and listed once in `ltkd.data.datasets.DATASETS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torchvision import transforms as T

from ltkd.data.base import LongTailedData


@dataclass(frozen=True)
class ReadRequest:
    """What a reader is asked for: the data root and the long-tailed profile (n_max already resolved)."""

    root: Path
    imbalance_factor: float
    seed: int
    download: bool
    n_max: int
    split_file: str | None = None
    test_split_file: str | None = None


def padded_crop_flip(spec: DatasetSpec, train: bool) -> list[Callable]:
    """Train: random `image_size` crop of the zero-padded image (`crop_padding`) and a horizontal flip; test:
    the image as it is. The device loader draws the same crops and flips on the device."""
    if not train:
        return []
    return [T.RandomCrop(spec.image_size, padding=spec.crop_padding), T.RandomHorizontalFlip()]


@dataclass(frozen=True)
class DatasetSpec:
    """One long-tailed dataset.

    `num_classes`: the classes of the real dataset (config checks; a reader may find fewer in fake data);
    `n_max`: the default images of the largest class (`dataset.n_max: null`); `image_size`: the side of
    the images the models see; `mean` / `std`: per-channel normalisation; `read`: the reader;
    `geometry(spec, train)`: the PIL-side crops and flips of the DataLoader path; `crop_padding`: the
    device loader's zero padding for the random crop (None: images are files, never device-resident);
    `split_files`: whether `dataset.split_file` / `test_split_file` are supported.
    """

    name: str
    num_classes: int
    n_max: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    read: Callable[[ReadRequest], LongTailedData]
    geometry: Callable[[DatasetSpec, bool], list[Callable]] = padded_crop_flip
    crop_padding: int | None = None
    split_files: bool = False
