"""The datasets there are (one table, `DATASETS`) and `build_dataset`, the one entry point to read one."""

from __future__ import annotations

from pathlib import Path

import torch

from ltkd.data import cifar, imagenet, tinyimagenet
from ltkd.data.base import ImageSet, LongTailedData
from ltkd.data.spec import DatasetSpec, ReadRequest
from ltkd.errors import DataError

__all__ = ["DATASETS", "DATASET_NAMES", "DatasetSpec", "ImageSet", "LongTailedData", "build_dataset"]

# Every dataset, by `dataset.name`: a new dataset is its module's SPEC added here (README: adding a dataset).
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (cifar.SPEC, tinyimagenet.SPEC, imagenet.SPEC)}
DATASET_NAMES = tuple(DATASETS)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of dataset `name`; ValueError naming the datasets there are."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def build_dataset(name: str, root: str | Path, *, imbalance_factor: float, seed: int = 0,
                  download: bool = True, n_max: int | None = None, split_file: str | None = None,
                  test_split_file: str | None = None) -> LongTailedData:
    """The long-tailed train set and balanced test set of dataset `name` under the data root `root`.

    The layout under `root` and whether it is downloaded are the dataset's reader's; `n_max` (images of the
    largest class) defaults to the spec's; `seed` picks the subset; split files only where the spec
    supports them. ValueError for bad arguments (the run config checks them up front), DataError for bad
    or unreadable data and for a class without a test image.
    """
    spec = dataset_spec(name)
    n_max = spec.n_max if n_max is None else n_max
    if not spec.split_files and (split_file is not None or test_split_file is not None):
        given = split_file if split_file is not None else test_split_file
        supported = [s.name for s in DATASETS.values() if s.split_files]
        raise ValueError(f"split_file: {given}; split files are for {', '.join(supported)} only, use null")
    try:
        data = spec.read(ReadRequest(Path(root).expanduser(), imbalance_factor, seed, download, n_max, split_file,
                                     test_split_file))
    except OSError as exc:  # a reader's listing or open that it does not report itself: reading, not writing
        raise DataError.from_os_error(exc, root) from None
    _check_test_classes(data, root)
    return data


def _check_test_classes(data: LongTailedData, root: str | Path) -> None:
    """DataError naming the first class without a test image (its accuracy would count as 0 % in its group)."""
    counts = torch.bincount(data.test.labels, minlength=data.num_classes)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        first = empty[0]
        raise DataError(f"{data.name} under {root}: the test set has no image of class {first} "
                        f"('{data.class_names[first]}'; {len(empty)} of {data.num_classes} classes have none); "
                        "every class needs at least one test image")
