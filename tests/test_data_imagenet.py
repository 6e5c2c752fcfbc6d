"""ImageNet-LT on a fake ImageFolder ImageNet: capped profile, split files, file-backed sets, errors."""

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from ltkd.data import build_dataset, long_tailed_counts, select_long_tailed
from ltkd.errors import DataError
from tests.fakedata import fake_wnids, write_fake_imagenet, write_split_file
from tests.helpers import truncate

PER_CLASS = (8, 6, 3, 4)


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet")
    write_fake_imagenet(root, per_class_train=PER_CLASS, per_class_val=2)
    return root


def test_profile_is_capped_by_what_a_class_has(imagenet_root):
    data = build_dataset("imagenet_lt", imagenet_root, imbalance_factor=2, n_max=8, seed=2)
    profile = long_tailed_counts(8, 4, 2)
    assert profile == [8, 6, 5, 4]
    assert data.train_counts == [8, 6, 3, 4]  # class 2 has only 3 images
    assert data.num_classes == 4 and data.class_names == fake_wnids(4) and data.image_size == 224
    assert data.mean == (0.485, 0.456, 0.406) and data.std == (0.229, 0.224, 0.225)
    assert data.train.images is None and data.test.images is None
    assert torch.bincount(data.train.labels).tolist() == data.train_counts
    assert torch.bincount(data.test.labels).tolist() == [2] * 4
    base = imagenet_root / "imagenet" / "train"
    files = [str(base / w / f) for c, w in enumerate(fake_wnids(4))
             for f in sorted(f"{w}_{i}.JPEG" for i in range(PER_CLASS[c]))]
    keep = select_long_tailed(np.repeat(np.arange(4), PER_CLASS), data.train_counts, seed=2)
    assert data.train.paths == [files[i] for i in keep]
    assert all(Path(p).is_file() for p in data.test.paths)


def test_split_files(imagenet_root, tmp_path):
    wnids = fake_wnids(4)
    train = [(f"train/{wnids[c]}/{wnids[c]}_{i}.JPEG", c)
             for c, n in enumerate((5, 3, 1, 0)) for i in range(n)]
    split = write_split_file(tmp_path / "ImageNet_LT_train.txt", train)
    test_entries = [(f"train/{wnids[0]}/{wnids[0]}_7.JPEG", 0)] + [(f"train/{w}/{w}_0.JPEG", c)
                                                                  for c, w in enumerate(wnids) if c]
    write_split_file(imagenet_root / "imagenet" / "ImageNet_LT_test.txt", test_entries)
    data = build_dataset("imagenet_lt", imagenet_root, imbalance_factor=10, split_file=str(split),
                         test_split_file="ImageNet_LT_test.txt")  # relative: looked up under imagenet/
    assert data.train_counts == [5, 3, 1, 0] and data.train.labels.tolist() == [c for _, c in train]
    assert data.train.paths[0] == str(imagenet_root / "imagenet" / train[0][0])
    assert len(data.test) == 4 and data.test.paths[0].endswith("_7.JPEG")
    write_split_file(imagenet_root / "imagenet" / "ImageNet_LT_test.txt", test_entries[:1])
    with pytest.raises(DataError, match=r"no image of class 1 \('n\d+'; 3 of 4 classes have none\)"):
        build_dataset("imagenet_lt", imagenet_root, imbalance_factor=10, split_file=str(split),
                      test_split_file="ImageNet_LT_test.txt")


@pytest.mark.parametrize(("line", "match"), [("train/x.JPEG", r"expected 'relative/path\.JPEG label'"),
                                             ("train/x.JPEG 4", r"label in 0\.\.3"),
                                             ("train/missing.JPEG 1", "1 listed images are missing")])
def test_bad_split_file(imagenet_root, tmp_path, line, match):
    split = tmp_path / "split.txt"
    split.write_text(line + "\n")
    with pytest.raises(DataError, match=match):
        build_dataset("imagenet_lt", imagenet_root, imbalance_factor=10, split_file=str(split))
    with pytest.raises(DataError, match=r"nope\.txt: split file not found"):
        build_dataset("imagenet_lt", imagenet_root, imbalance_factor=10, split_file="nope.txt")


def test_missing_imagenet_and_mismatched_val(tmp_path):
    with pytest.raises(DataError, match=r"imagenet/train: not found; .*never downloaded"):
        build_dataset("imagenet_lt", tmp_path, imbalance_factor=10, download=True)
    base = write_fake_imagenet(tmp_path, per_class_train=(2, 2, 2), per_class_val=1)
    (base / "val" / fake_wnids(3)[1] / f"ILSVRC2012_val_{1:08d}.JPEG").unlink()
    (base / "val" / fake_wnids(3)[1]).rmdir()
    with pytest.raises(DataError, match=rf"imagenet/val: class folders differ .*{fake_wnids(3)[1]}"):
        build_dataset("imagenet_lt", tmp_path, imbalance_factor=1, n_max=2)


def test_a_binary_split_file_is_named(imagenet_root, tmp_path):
    split = tmp_path / "split.txt"
    split.write_bytes(b"train/x.JPEG 1\n\xff\xfe\x00\x01")
    with pytest.raises(DataError) as info:  # a UnicodeDecodeError traceback before
        build_dataset("imagenet_lt", imagenet_root, imbalance_factor=10, split_file=str(split))
    assert str(info.value) == (f"{split}: not a text file (byte 0xff at offset 15 is not UTF-8); "
                               "expected lines 'relative/path.JPEG label'")


def test_a_corrupt_image_read_in_a_worker_is_one_line_naming_the_file(tmp_path: Path):
    from ltkd.data import ImageSetDataset, build_transforms
    from ltkd.data.loaders import DataLoaderAdapter

    write_fake_imagenet(tmp_path, per_class_train=(2, 2), per_class_val=1, size=(24, 24))
    data = build_dataset("imagenet_lt", tmp_path, imbalance_factor=1, n_max=2)
    bad = truncate(data.train.paths[-1])
    dataset = ImageSetDataset(data.train, build_transforms("imagenet_lt", False, data.mean, data.std))
    batches = DataLoaderAdapter(dataset, batch_size=2, train=False, device="cpu", num_workers=1)
    with pytest.raises(DataError) as error:  # before: "Caught DataError in DataLoader worker process 0." + traceback
        list(batches)
    assert str(error.value).startswith(f"{bad}: cannot decode the image (OSError: image file is truncated")
    assert "\n" not in str(error.value) and "Traceback" not in str(error.value)
    del batches, error  # the worker exits now (before: only at a garbage collection, and then after 5 s)
    assert not multiprocessing.active_children()


@pytest.mark.slow  # about 6 s: the pipeline up to the teacher's first batch
def test_a_run_reading_a_corrupt_image_in_a_worker_stops_with_one_line_and_status_2(tmp_path: Path):
    from hydra import compose, initialize_config_dir

    from ltkd.recipes import CONFIG_DIR
    from ltkd.train import execute
    from tests.helpers import toy_overrides

    write_fake_imagenet(tmp_path / "data", per_class_train=(2, 2, 2), per_class_val=1, size=(24, 24))
    wnid = fake_wnids(3)[1]
    bad = truncate(tmp_path / "data" / "imagenet" / "train" / wnid / f"{wnid}_0.JPEG")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=toy_overrides(
            tmp_path / "data", tmp_path / "cache", "dataset=imagenet_lt", "dataset.n_max=2",
            "dataset.imbalance_factor=1", "trainer.batch_size=2", "trainer.num_workers=1"))
    status, message = execute(cfg, tmp_path / "run", "")
    assert status == 2
    assert message.startswith(f"error: {bad}: cannot decode the image (") and "\n" not in message
