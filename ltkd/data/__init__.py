"""Long-tailed datasets (CIFAR-100-LT, TinyImageNet-LT, ImageNet-LT), class groups and transforms."""

from ltkd.data.base import ImageSet, LongTailedData
from ltkd.data.datasets import DATASET_NAMES, build_dataset
from ltkd.data.groups import GROUP_NAMES, class_to_group, split_groups
from ltkd.data.profile import long_tailed_counts, select_long_tailed
from ltkd.data.transforms import CROP_PADDING, ImageSetDataset, build_transforms

__all__ = [
    "CROP_PADDING",
    "DATASET_NAMES",
    "GROUP_NAMES",
    "ImageSet",
    "ImageSetDataset",
    "LongTailedData",
    "build_dataset",
    "build_transforms",
    "class_to_group",
    "long_tailed_counts",
    "select_long_tailed",
    "split_groups",
]
