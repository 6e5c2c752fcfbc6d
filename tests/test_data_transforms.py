"""Reference transforms and ImageSetDataset over in-memory and file-backed sets."""

import pathlib

import pytest
import torch

from ltkd.data import DATASETS, ImageSet, ImageSetDataset, build_dataset, build_transforms
from ltkd.errors import DataError
from tests.fakedata import write_fake_imagenet, write_fake_tinyimagenet

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.mark.parametrize(("name", "size"), [("cifar100_lt", 32), ("tinyimagenet_lt", 64)])
def test_in_memory_dataset(name, size):
    images = torch.randint(0, 256, (3, 3, size, size), dtype=torch.uint8)
    split = ImageSet(torch.tensor([2, 0, 1]), images=images)
    test = ImageSetDataset(split, build_transforms(name, False, MEAN, STD))
    x, y = test[0]
    assert len(test) == 3 and y == 2 and x.shape == (3, size, size)
    assert torch.allclose(x, (images[0].float() / 255 - 0.5) / 0.25, atol=1e-6)
    x, _ = ImageSetDataset(split, build_transforms(name, True, MEAN, STD))[1]
    assert x.shape == (3, size, size)
    assert DATASETS[name].crop_padding == size // 8


def test_file_backed_dataset(tmp_path):
    write_fake_imagenet(tmp_path, per_class_train=(2, 1), per_class_val=1, size=(300, 260))
    data = build_dataset("imagenet_lt", tmp_path, imbalance_factor=2, n_max=2)
    for train, split in ((True, data.train), (False, data.test)):
        x, y = ImageSetDataset(split, build_transforms("imagenet_lt", train, data.mean, data.std))[0]
        assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and y == 0
    pathlib.Path(data.test.paths[0]).write_bytes(b"broken")
    with pytest.raises(DataError, match="cannot decode the image"):
        ImageSetDataset(data.test, build_transforms("imagenet_lt", False, data.mean, data.std))[0]


def test_dataloader_over_tinyimagenet(tmp_path):
    write_fake_tinyimagenet(tmp_path, num_classes=3, per_class_train=4, per_class_val=2)
    data = build_dataset("tinyimagenet_lt", tmp_path, imbalance_factor=2, n_max=4)
    dataset = ImageSetDataset(data.train, build_transforms(data.name, True, data.mean, data.std))
    x, y = next(iter(torch.utils.data.DataLoader(dataset, batch_size=5)))
    assert x.shape == (5, 3, 64, 64) and y.dtype == torch.int64


def test_unknown_name_and_inconsistent_imageset():
    with pytest.raises(ValueError, match="'mnist'"):
        build_transforms("mnist", True, MEAN, STD)
    with pytest.raises(ValueError, match="exactly one"):
        ImageSet(torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="2 images but 1 labels"):
        ImageSet(torch.zeros(1, dtype=torch.long), paths=["a", "b"])
