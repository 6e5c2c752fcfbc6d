"""TinyImageNet-LT on a fake tiny-imagenet-200: class order, selection, decoding, val set, errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ltkd.data import build_dataset, long_tailed_counts, select_long_tailed
from ltkd.errors import DataError
from tests.fakedata import fake_wnids, write_fake_tinyimagenet


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    write_fake_tinyimagenet(root, num_classes=5, per_class_train=12, per_class_val=3)
    return root


def test_long_tailed_train_and_val_test(tiny_root):
    data = build_dataset("tinyimagenet_lt", tiny_root, imbalance_factor=4, n_max=12, seed=1, download=False)
    counts = long_tailed_counts(12, 5, 4)
    assert data.num_classes == 5 and data.image_size == 64 and data.train_counts == counts
    assert data.class_names == [f"name{c}" for c in range(5)]
    assert data.mean == (0.4802, 0.4481, 0.3975) and data.std == (0.2302, 0.2265, 0.2262)
    assert data.train.images.shape == (sum(counts), 3, 64, 64) and data.train.images.dtype == torch.uint8
    assert torch.bincount(data.train.labels).tolist() == counts
    assert data.test.images.shape == (15, 3, 64, 64)
    assert torch.bincount(data.test.labels).tolist() == [3] * 5
    assert data.test.labels[:5].tolist() == [0, 1, 2, 3, 4]  # val_annotations.txt order
    grey = data.test.images[0]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_images_follow_imagefolder_order(tiny_root):
    data = build_dataset("tinyimagenet_lt", tiny_root, imbalance_factor=4, n_max=12, seed=1, download=False)
    files = [tiny_root / "tiny-imagenet-200" / "train" / w / "images" / f
             for w in fake_wnids(5) for f in sorted(f"{w}_{i}.JPEG" for i in range(12))]
    keep = select_long_tailed(np.repeat(np.arange(5), 12), long_tailed_counts(12, 5, 4), seed=1)
    expected = np.stack([np.array(Image.open(files[i]).convert("RGB")) for i in keep])
    assert torch.equal(data.train.images, torch.from_numpy(expected).permute(0, 3, 1, 2))


def test_wnids_as_names_without_words(tmp_path):
    write_fake_tinyimagenet(tmp_path, num_classes=3, per_class_train=2, per_class_val=1, words=False)
    data = build_dataset("tinyimagenet_lt", tmp_path, imbalance_factor=2, n_max=2, download=False)
    assert data.class_names == fake_wnids(3)


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"tiny-imagenet-200/wnids\.txt: not found; expected tiny-imagenet"):
        build_dataset("tinyimagenet_lt", tmp_path, imbalance_factor=2, download=False)

    def corrupt_archive(*args, **kwargs):
        raise RuntimeError("File not found or corrupted.")

    monkeypatch.setattr("ltkd.data.base.download_and_extract_archive", corrupt_archive)
    with pytest.raises(DataError, match=r"downloading http://cs231n\.stanford\.edu/tiny-imagenet-200\.zip"):
        build_dataset("tinyimagenet_lt", tmp_path, imbalance_factor=2, download=True)
    base = write_fake_tinyimagenet(tmp_path, num_classes=3, per_class_train=2, per_class_val=1)
    with pytest.raises(DataError, match="tiny-imagenet-200/train: class 0: has 2 images"):
        build_dataset("tinyimagenet_lt", tmp_path, imbalance_factor=2, n_max=3, download=False)
    bad = base / "train" / fake_wnids(3)[0] / "images" / f"{fake_wnids(3)[0]}_0.JPEG"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=f"{bad.name}: cannot decode the image"):
        build_dataset("tinyimagenet_lt", tmp_path, imbalance_factor=1, n_max=2, download=False)
    Image.new("RGB", (32, 32)).save(bad, format="JPEG")
    with pytest.raises(DataError, match="image is 32x32; expected 64x64"):
        build_dataset("tinyimagenet_lt", tmp_path, imbalance_factor=1, n_max=2, download=False)
    (base / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match=r"val_annotations.txt:1: .*wnid listed in wnids.txt"):
        build_dataset("tinyimagenet_lt", tmp_path, imbalance_factor=1, n_max=1, download=False)


def test_a_folder_that_cannot_be_listed_is_a_read_error(tmp_path, monkeypatch):
    import errno
    import pathlib

    write_fake_tinyimagenet(tmp_path, num_classes=2, per_class_train=1, per_class_val=1, words=False)
    real = pathlib.Path.iterdir

    def iterdir(self):  # as a folder without read permission (root, running the tests, may read any)
        if self.name == "images" and self.parent.parent.name == "train":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "iterdir", iterdir)
    with pytest.raises(DataError) as info:  # a PermissionError, reported as 'cannot write' (status 74), before
        build_dataset("tinyimagenet_lt", tmp_path, imbalance_factor=1, n_max=1, download=False)
    folder = tmp_path / "tiny-imagenet-200" / "train" / fake_wnids(2)[0] / "images"
    assert str(info.value) == f"cannot read '{folder}': Permission denied"


def test_a_truncated_jpeg_is_one_line_naming_the_file(tmp_path):
    from tests.helpers import truncate

    base = write_fake_tinyimagenet(tmp_path, num_classes=3, per_class_train=2, per_class_val=1)
    bad = truncate(base / "val" / "images" / "val_1.JPEG")  # decoded up front, in threads, not in workers
    with pytest.raises(DataError) as error:
        build_dataset("tinyimagenet_lt", tmp_path, imbalance_factor=1, n_max=2, download=False)
    assert str(error.value).startswith(f"{bad}: cannot decode the image (OSError: image file is truncated")
    assert "\n" not in str(error.value)
