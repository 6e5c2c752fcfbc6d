"""CIFAR-100-LT: the official python pickles, the LDAM-DRW long-tailed train subset, the full test set."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ltkd.data.base import ImageSet, LongTailedData, ensure_files
from ltkd.data.profile import long_tailed_counts, select_long_tailed
from ltkd.data.spec import DatasetSpec, ReadRequest
from ltkd.errors import DataError, one_line

URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
NUM_CLASSES = 100
LAYOUT = "the CIFAR-100 python pickles <root>/cifar-100-python/{train,test,meta}"


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            content = pickle.load(f, encoding="latin1")
    except Exception as exc:  # truncated or corrupt pickles raise many different types
        raise DataError(f"{path}: cannot read the pickle ({one_line(exc)}); expected {LAYOUT}") from exc
    if not isinstance(content, dict):
        raise DataError(f"{path}: holds a {type(content).__name__}; expected a dict ({LAYOUT})")
    return content


def _split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of the `train` or `test` pickle."""
    content = _unpickle(path)
    if "data" not in content or "fine_labels" not in content:
        raise DataError(f"{path}: keys {sorted(content)}; expected 'data' and 'fine_labels' ({LAYOUT})")
    data = np.asarray(content["data"])
    try:
        labels = np.asarray(content["fine_labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:  # ragged, or not integers
        raise DataError(f"{path}: fine_labels cannot be read as integers ({one_line(exc)}); "
                        "expected one class index per image") from None
    if labels.ndim != 1:
        raise DataError(f"{path}: fine_labels has shape {labels.shape}; expected one class index per image, "
                        "a list of N integers")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataError(f"{path}: data {data.dtype} {data.shape} with {len(labels)} labels; "
                        "expected uint8 N x 3072 with N labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{path}: labels span {labels.min()}..{labels.max()}; expected 0..{NUM_CLASSES - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar100_lt(request: ReadRequest) -> LongTailedData:
    """CIFAR-100-LT from `<root>/cifar-100-python/` (downloaded into `root` if missing and `download`)."""
    base = request.root / "cifar-100-python"
    ensure_files([base / "train", base / "test", base / "meta"], request.root, URL, MD5, request.download,
                 LAYOUT)
    names = _unpickle(base / "meta").get("fine_label_names")
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        found = f"{len(names)} names" if isinstance(names, list) else type(names).__name__
        raise DataError(f"{base / 'meta'}: fine_label_names is {found}; expected {NUM_CLASSES} names")
    counts = long_tailed_counts(request.n_max, NUM_CLASSES, request.imbalance_factor)
    train_images, train_labels = _split(base / "train")
    try:
        keep = select_long_tailed(train_labels, counts, request.seed)
    except DataError as exc:
        raise DataError(f"{base / 'train'}: {exc}") from exc
    test_images, test_labels = _split(base / "test")
    return LongTailedData(
        name=SPEC.name, num_classes=NUM_CLASSES, class_names=[str(n) for n in names],
        image_size=SPEC.image_size, mean=SPEC.mean, std=SPEC.std,
        train=ImageSet(torch.from_numpy(train_labels[keep]), images=torch.from_numpy(train_images[keep])),
        test=ImageSet(torch.from_numpy(test_labels), images=torch.from_numpy(test_images)),
        train_counts=counts, imbalance_factor=float(request.imbalance_factor),
    )


SPEC = DatasetSpec(name="cifar100_lt", num_classes=NUM_CLASSES, n_max=500, image_size=32,
                   mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), read=load_cifar100_lt,
                   crop_padding=4)
