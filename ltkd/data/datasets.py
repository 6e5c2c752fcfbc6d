"""build_dataset: one entry point for the three long-tailed datasets."""

from __future__ import annotations

import math
import numbers
from pathlib import Path

from ltkd.data.base import ImageSet, LongTailedData
from ltkd.data.cifar import load_cifar100_lt
from ltkd.data.imagenet import load_imagenet_lt
from ltkd.data.tinyimagenet import load_tinyimagenet_lt
from ltkd.errors import ConfigError

__all__ = ["DATASET_NAMES", "ImageSet", "LongTailedData", "build_dataset"]

DATASET_NAMES = ("cifar100_lt", "tinyimagenet_lt", "imagenet_lt")
DEFAULT_N_MAX = {"cifar100_lt": 500, "tinyimagenet_lt": 500, "imagenet_lt": 1300}


def build_dataset(name: str, root: str | Path, *, imbalance_factor: float, seed: int = 0,
                  download: bool = True, n_max: int | None = None, split_file: str | None = None,
                  test_split_file: str | None = None) -> LongTailedData:
    """The long-tailed train set and balanced test set of dataset `name` under the data root `root`.

    Layouts: `<root>/cifar-100-python/`, `<root>/tiny-imagenet-200/` (both downloaded into `root` when
    missing and `download`), `<root>/imagenet/{train,val}/<wnid>/` (never downloaded). `n_max` (images of
    the largest class) defaults to 500 (CIFAR-100, TinyImageNet) or 1300 (ImageNet); `seed` picks the
    subset. Split files are ImageNet-LT only. ConfigError for bad arguments, DataError for bad data.
    """
    if name not in DATASET_NAMES:
        raise ConfigError(f"dataset.name: '{name}'; expected one of {', '.join(DATASET_NAMES)}")
    if not (isinstance(imbalance_factor, numbers.Real) and math.isfinite(imbalance_factor)
            and imbalance_factor >= 1):
        raise ConfigError(f"dataset.imbalance_factor: {imbalance_factor}; must be a finite number >= 1")
    n_max = DEFAULT_N_MAX[name] if n_max is None else n_max
    if n_max < 1:
        raise ConfigError(f"dataset.n_max: {n_max}; must be >= 1 or null")
    if name != "imagenet_lt" and (split_file is not None or test_split_file is not None):
        given = split_file if split_file is not None else test_split_file
        raise ConfigError(f"dataset.split_file: {given}; split files are for imagenet_lt only, use null")
    root = Path(root).expanduser()
    if name == "cifar100_lt":
        return load_cifar100_lt(root, imbalance_factor, seed, download, n_max)
    if name == "tinyimagenet_lt":
        return load_tinyimagenet_lt(root, imbalance_factor, seed, download, n_max)
    return load_imagenet_lt(root, imbalance_factor, seed, n_max, split_file, test_split_file)
