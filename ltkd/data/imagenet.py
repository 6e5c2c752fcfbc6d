"""ImageNet-LT: file-backed ImageFolder ImageNet, the exponential profile or the standard split files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS

from ltkd.data.base import ImageSet, LongTailedData, read_text
from ltkd.data.profile import long_tailed_counts, select_long_tailed
from ltkd.data.spec import DatasetSpec, ReadRequest
from ltkd.errors import DataError

TEST_RESIZE = 256  # the test images are resized to this side, then center-cropped to the image size
LAYOUT = ("ImageNet in ImageFolder layout <root>/imagenet/{train,val}/<wnid>/*.JPEG "
          "(never downloaded: place it there)")


def _folder_files(split_dir: Path, wnids: list[str]) -> tuple[list[str], np.ndarray]:
    """Every image path of `split_dir/<wnid>/`, class by class in sorted file-name order, and its label."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: not found; expected {LAYOUT}")
    present = {d.name for d in split_dir.iterdir() if d.is_dir()}
    if present != set(wnids):
        odd = sorted(set(wnids) ^ present)
        raise DataError(f"{split_dir}: class folders differ from the train folders ({len(odd)} differ, e.g. "
                        f"{odd[0]}); expected the same <wnid> folders in train and val")
    paths, labels = [], []
    for c, wnid in enumerate(wnids):
        files = sorted(f for f in os.listdir(split_dir / wnid) if f.lower().endswith(IMG_EXTENSIONS))
        paths += [str(split_dir / wnid / f) for f in files]
        labels += [c] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)


def _split_file(split_file: str, base: Path, num_classes: int) -> tuple[list[str], np.ndarray]:
    """The images and labels of an ImageNet-LT split file: lines 'path label', paths relative to `base`."""
    path = Path(split_file).expanduser()
    if not path.is_absolute() and not path.exists():
        path = base / path
    if not path.is_file():
        raise DataError(f"{split_file}: split file not found (also looked under {base}); "
                        "expected lines 'train/<wnid>/<file>.JPEG <label>' relative to <root>/imagenet")
    paths, labels = [], []
    for n, line in enumerate(read_text(path, "lines 'relative/path.JPEG label'").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) >= num_classes:
            raise DataError(f"{path}:{n}: '{line[:80]}'; expected 'relative/path.JPEG label' "
                            f"with a label in 0..{num_classes - 1}")
        paths.append(str(base / fields[0]))
        labels.append(int(fields[1]))
    if not paths:
        raise DataError(f"{path}: no entries; expected lines 'relative/path.JPEG label'")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(f"{path}: {len(missing)} listed images are missing, e.g. {missing[0]}; "
                        f"expected them under {base}")
    return paths, np.asarray(labels, dtype=np.int64)


def load_imagenet_lt(request: ReadRequest) -> LongTailedData:
    """ImageNet-LT from `<root>/imagenet/{train,val}/<wnid>/` (classes numbered by sorted wnid), file-backed.

    Without `split_file` the train set is the exponential profile n_c = int(n_max * γ^(-c/(C-1))) capped by
    what the class has, n_c = min(n_c, available) (ImageNet classes hold 732..1300 images), selected with
    the LDAM-DRW rule. With `split_file` (the standard ImageNet-LT list, lines 'path label', paths relative
    to `<root>/imagenet`; looked up as given, then under `<root>/imagenet`) the train set is exactly that
    list, and `imbalance_factor`, `n_max` and `seed` select nothing. The test set is `test_split_file`
    (same format) if given, else the whole val folder.
    """
    base = request.root / "imagenet"
    train_dir = base / "train"
    if not train_dir.is_dir():
        raise DataError(f"{train_dir}: not found; expected {LAYOUT}")
    wnids = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    if len(wnids) < 2:
        raise DataError(f"{train_dir}: {len(wnids)} class folders; expected one <wnid> folder per class")
    if request.split_file is not None:
        train_paths, train_labels = _split_file(request.split_file, base, len(wnids))
        counts = np.bincount(train_labels, minlength=len(wnids)).tolist()
    else:
        all_paths, all_labels = _folder_files(train_dir, wnids)
        available = np.bincount(all_labels, minlength=len(wnids))
        profile = long_tailed_counts(request.n_max, len(wnids), request.imbalance_factor)
        counts = [min(n, int(a)) for n, a in zip(profile, available, strict=True)]
        keep = select_long_tailed(all_labels, counts, request.seed)
        train_paths, train_labels = [all_paths[i] for i in keep], all_labels[keep]
    if request.test_split_file is not None:
        test_paths, test_labels = _split_file(request.test_split_file, base, len(wnids))
    else:
        test_paths, test_labels = _folder_files(base / "val", wnids)
    return LongTailedData(
        name=SPEC.name, num_classes=len(wnids), class_names=wnids, image_size=SPEC.image_size, mean=SPEC.mean,
        std=SPEC.std,
        train=ImageSet(torch.from_numpy(train_labels), paths=train_paths),
        test=ImageSet(torch.from_numpy(test_labels), paths=test_paths),
        train_counts=counts, imbalance_factor=float(request.imbalance_factor),
    )


def resized_crop_flip(spec: DatasetSpec, train: bool) -> list:
    """Train: random-resized crop to the image size and a horizontal flip; test: resize, center crop."""
    if train:
        return [T.RandomResizedCrop(spec.image_size), T.RandomHorizontalFlip()]
    return [T.Resize(TEST_RESIZE), T.CenterCrop(spec.image_size)]


SPEC = DatasetSpec(name="imagenet_lt", num_classes=1000, n_max=1300, image_size=224,
                   mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), read=load_imagenet_lt,
                   geometry=resized_crop_flip, split_files=True)
