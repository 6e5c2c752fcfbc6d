"""CIFAR-100-LT on a fake cifar-100-python: counts, labels, images, download and error paths."""

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ltkd.data import DATASET_NAMES, build_dataset, long_tailed_counts, select_long_tailed
from ltkd.errors import DataError
from tests.fakedata import write_fake_cifar100
from tests.helpers import drop_test_class


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar100(root, per_class_train=20, per_class_test=3)
    return root


def test_long_tailed_train_and_balanced_test(cifar_root):
    data = build_dataset("cifar100_lt", cifar_root, imbalance_factor=10, n_max=20, download=False)
    counts = long_tailed_counts(20, 100, 10)
    assert data.name == "cifar100_lt" and data.num_classes == 100 and data.image_size == 32
    assert data.train_counts == counts and data.imbalance_factor == 10.0
    assert data.class_names[:2] == ["class_00", "class_01"]
    assert data.mean == (0.5071, 0.4865, 0.4409) and data.std == (0.2673, 0.2564, 0.2762)
    train, test = data.train, data.test
    assert len(train) == sum(counts) and train.images.shape == (sum(counts), 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64 and train.paths is None
    assert torch.bincount(train.labels, minlength=100).tolist() == counts
    assert torch.bincount(test.labels, minlength=100).tolist() == [3] * 100
    assert test.images.shape == (300, 3, 32, 32)


def test_selected_images_are_the_ldam_subset(cifar_root):
    data = build_dataset("cifar100_lt", cifar_root, imbalance_factor=10, n_max=20, seed=3, download=False)
    with open(cifar_root / "cifar-100-python" / "train", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    keep = select_long_tailed(raw["fine_labels"], long_tailed_counts(20, 100, 10), seed=3)
    assert torch.equal(data.train.images, torch.from_numpy(raw["data"][keep].reshape(-1, 3, 32, 32)))
    assert data.train.labels.tolist() == np.asarray(raw["fine_labels"])[keep].tolist()
    other = build_dataset("cifar100_lt", cifar_root, imbalance_factor=10, n_max=20, seed=4, download=False)
    assert not torch.equal(other.train.images, data.train.images)


def test_too_few_images_per_class(cifar_root):
    with pytest.raises(DataError, match=r"cifar-100-python/train: class 0: has 20 images; .* needs 21"):
        build_dataset("cifar100_lt", cifar_root, imbalance_factor=10, n_max=21, download=False)


def test_missing_root_without_download(tmp_path):
    path = re.escape(str(tmp_path / "nowhere" / "cifar-100-python" / "train"))
    with pytest.raises(DataError, match=rf"{path}: not found; expected .*data.download=true"):
        build_dataset("cifar100_lt", tmp_path / "nowhere", imbalance_factor=10, download=False)


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure\nin name resolution>")

    monkeypatch.setattr("ltkd.data.base.download_and_extract_archive", offline)
    with pytest.raises(DataError, match=r"downloading https://www\.cs\.toronto\.edu/") as info:
        build_dataset("cifar100_lt", tmp_path, imbalance_factor=10, download=True)
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


def test_download_is_md5_checked_and_extracted_into_root(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, md5):
        calls.append((url, md5))
        write_fake_cifar100(download_root, per_class_train=5, per_class_test=1)

    monkeypatch.setattr("ltkd.data.base.download_and_extract_archive", fake_download)
    data = build_dataset("cifar100_lt", tmp_path / "new", imbalance_factor=5, n_max=5, download=True)
    assert calls == [("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                      "eb9058c3a382ffc7106e4002c42a8d85")]
    assert len(data.test) == 100


def test_truncated_pickle(tmp_path):
    base = write_fake_cifar100(tmp_path, per_class_train=2, per_class_test=1)
    (base / "train").write_bytes((base / "train").read_bytes()[:5000])
    with pytest.raises(DataError, match=r"cifar-100-python/train: cannot read the pickle \(") as info:
        build_dataset("cifar100_lt", tmp_path, imbalance_factor=2, n_max=2, download=False)
    assert "\n" not in str(info.value)


def test_wrong_content(tmp_path):
    base = write_fake_cifar100(tmp_path, per_class_train=2, per_class_test=1)
    with open(base / "test", "wb") as f:
        pickle.dump({"data": np.zeros((3, 100), np.uint8), "fine_labels": [0, 1, 2]}, f)
    with pytest.raises(DataError, match=r"cifar-100-python/test: data uint8 \(3, 100\)"):
        build_dataset("cifar100_lt", tmp_path, imbalance_factor=2, n_max=2, download=False)


@pytest.mark.parametrize(("labels", "match"), [
    (lambda ys: [[y] for y in ys], r"fine_labels has shape \(200, 1\); expected one class index per image"),
    (lambda ys: [[y] * (i % 2 + 1) for i, y in enumerate(ys)], "fine_labels cannot be read as integers"),
    (lambda ys: [f"class_{y}" for y in ys], "fine_labels cannot be read as integers"),
], ids=["2-D", "ragged", "names"])
def test_labels_that_are_not_one_integer_per_image(labels, match, tmp_path):
    base = write_fake_cifar100(tmp_path, per_class_train=2, per_class_test=1)
    with open(base / "train", "rb") as f:
        content = pickle.load(f)
    with open(base / "train", "wb") as f:
        pickle.dump({**content, "fine_labels": labels(content["fine_labels"])}, f)
    with pytest.raises(DataError, match=f"cifar-100-python/train: {match}") as info:  # tracebacks before
        build_dataset("cifar100_lt", tmp_path, imbalance_factor=2, n_max=2, download=False)
    assert "\n" not in str(info.value)


def test_a_class_without_test_images_is_refused(tmp_path):
    drop_test_class(write_fake_cifar100(tmp_path, per_class_train=2, per_class_test=1), 99)
    with pytest.raises(DataError) as info:
        build_dataset("cifar100_lt", tmp_path, imbalance_factor=2, n_max=2, download=False)
    assert str(info.value) == (f"cifar100_lt under {tmp_path}: the test set has no image of class 99 ('class_99'; "
                               "1 of 100 classes have none); every class needs at least one test image")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"name": "cifar10_lt"}, "expected one of cifar100_lt, tinyimagenet_lt, imagenet_lt"),
    ({"imbalance_factor": 0.5}, "imbalance_factor: 0.5"),
    ({"n_max": 0}, "n_max: 0"),
    ({"split_file": "x.txt"}, "imagenet_lt only"),
])
def test_bad_arguments(cifar_root, kwargs, match):
    args = {"name": "cifar100_lt", "root": cifar_root, "imbalance_factor": 10, "download": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_dataset(**args)
    assert "cifar100_lt" in DATASET_NAMES
