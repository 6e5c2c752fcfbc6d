"""TinyImageNet-LT: tiny-imagenet-200, the LDAM-DRW long-tailed train subset, the labelled val set as test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ltkd.data.base import ImageSet, LongTailedData, decode_images, ensure_files, read_text
from ltkd.data.profile import long_tailed_counts, select_long_tailed
from ltkd.data.spec import DatasetSpec, ReadRequest
from ltkd.errors import DataError

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
LAYOUT = ("tiny-imagenet-200 as distributed: <root>/tiny-imagenet-200/{wnids.txt, "
          "train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt}")


def _class_names(base: Path, wnids: list[str]) -> list[str]:
    """The first name in words.txt for every wnid, or the wnid where words.txt is absent or silent."""
    words = {}
    if (base / "words.txt").exists():
        for line in read_text(base / "words.txt", "lines '<wnid><TAB><names>'").splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid] = text.split(",")[0].strip()
    return [words.get(w) or w for w in wnids]


def _train_files(base: Path, wnids: list[str]) -> tuple[list[str], np.ndarray]:
    """Every training image path, class by class in sorted file-name order (as ImageFolder), and its label."""
    paths, labels = [], []
    for c, wnid in enumerate(wnids):
        folder = base / "train" / wnid / "images"
        if not folder.is_dir():
            raise DataError(f"{folder}: not found; expected {LAYOUT}")
        files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".jpeg")
        paths += [str(folder / f) for f in files]
        labels += [c] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)


def _val_files(base: Path, wnids: list[str]) -> tuple[list[str], np.ndarray]:
    """The val images and labels, in val_annotations.txt order."""
    annotations = base / "val" / "val_annotations.txt"
    index = {w: c for c, w in enumerate(wnids)}
    paths, labels = [], []
    for n, line in enumerate(read_text(annotations, "lines 'filename<TAB>wnid<TAB>...'").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(f"{annotations}:{n}: '{line[:80]}'; expected 'filename<TAB>wnid<TAB>...' "
                            "with a wnid listed in wnids.txt")
        paths.append(str(base / "val" / "images" / fields[0]))
        labels.append(index[fields[1]])
    return paths, np.asarray(labels, dtype=np.int64)


def load_tinyimagenet_lt(request: ReadRequest) -> LongTailedData:
    """TinyImageNet-LT from `<root>/tiny-imagenet-200/` (downloaded into `root` if missing and `download`).

    Classes are numbered by sorted wnid (wnids.txt); only the selected training images are decoded.
    """
    base = request.root / "tiny-imagenet-200"
    ensure_files([base / "wnids.txt", base / "train", base / "val" / "val_annotations.txt"],
                 request.root, URL, MD5, request.download, LAYOUT)
    wnids = sorted(set(read_text(base / "wnids.txt", "one wnid per line").split()))
    if len(wnids) < 2:
        raise DataError(f"{base / 'wnids.txt'}: lists {len(wnids)} wnids; expected one per class (200)")
    counts = long_tailed_counts(request.n_max, len(wnids), request.imbalance_factor)
    train_paths, train_labels = _train_files(base, wnids)
    try:
        keep = select_long_tailed(train_labels, counts, request.seed)
    except DataError as exc:
        raise DataError(f"{base / 'train'}: {exc}") from exc
    train_images = decode_images([train_paths[i] for i in keep], SPEC.image_size)
    test_paths, test_labels = _val_files(base, wnids)
    return LongTailedData(
        name=SPEC.name, num_classes=len(wnids), class_names=_class_names(base, wnids),
        image_size=SPEC.image_size, mean=SPEC.mean, std=SPEC.std,
        train=ImageSet(torch.from_numpy(train_labels[keep]), images=train_images),
        test=ImageSet(torch.from_numpy(test_labels), images=decode_images(test_paths, SPEC.image_size)),
        train_counts=counts, imbalance_factor=float(request.imbalance_factor),
    )


SPEC = DatasetSpec(name="tinyimagenet_lt", num_classes=200, n_max=500, image_size=64,
                   mean=(0.4802, 0.4481, 0.3975), std=(0.2302, 0.2265, 0.2262), read=load_tinyimagenet_lt,
                   crop_padding=8)
