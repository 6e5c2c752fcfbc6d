"""Long-tailed datasets (CIFAR-100-LT, TinyImageNet-LT, ImageNet-LT), class groups and transforms."""

from ltkd.data.base import ImageSet, LongTailedData
from ltkd.data.datasets import DATASET_NAMES, DATASETS, build_dataset, dataset_spec
from ltkd.data.groups import GROUP_NAMES, class_to_group, split_groups
from ltkd.data.profile import long_tailed_counts, select_long_tailed
from ltkd.data.spec import DatasetSpec, ReadRequest
from ltkd.data.transforms import ImageSetDataset, build_transforms

__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "GROUP_NAMES",
    "DatasetSpec",
    "ImageSet",
    "ImageSetDataset",
    "LongTailedData",
    "ReadRequest",
    "build_dataset",
    "build_transforms",
    "class_to_group",
    "dataset_spec",
    "long_tailed_counts",
    "select_long_tailed",
    "split_groups",
]
