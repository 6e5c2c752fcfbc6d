"""Tiny fake datasets in the real on-disk layouts, for tests: CIFAR-100 pickles, tiny-imagenet-200, ImageNet.

Every image is a fixed random pattern of its class plus a little noise, so a model can learn the classes.
Everything is deterministic given `seed`. Each writer returns the dataset folder it created under `root`;
the data root that `ltkd.data.build_dataset` takes is `root` itself.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = 100


def _patterns(rng: np.random.Generator, num_classes: int, shape: tuple[int, ...]) -> np.ndarray:
    """One random uint8-valued pattern (int16) of `shape` per class."""
    return rng.integers(0, 256, size=(num_classes, *shape), dtype=np.int16)


def _class_images(rng: np.random.Generator, patterns: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """uint8 images for `labels`: the class's pattern plus uniform noise in -24..24."""
    jitter = rng.integers(-24, 25, size=(len(labels), *patterns.shape[1:]), dtype=np.int16)
    return np.clip(patterns[labels] + jitter, 0, 255).astype(np.uint8)


def _save_jpeg(path: Path, chw: np.ndarray, mode: str = "RGB") -> None:
    Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0))).convert(mode).save(path, quality=95)


def fake_wnids(num_classes: int) -> list[str]:
    """The fake WordNet ids of `num_classes` classes, in sorted (= label) order."""
    return [f"n{1000 + 7 * c:08d}" for c in range(num_classes)]


def write_fake_cifar100(root: str | Path, per_class_train: int = 6, per_class_test: int = 2,
                        seed: int = 0) -> Path:
    """Write `<root>/cifar-100-python/{train,test,meta}` as the official pickles, with 100 classes.

    `per_class_train` / `per_class_test` images per class, rows shuffled across classes as in the official
    files; keys data (N x 3072 uint8, channel-first), fine_labels, coarse_labels, filenames, batch_label;
    meta has fine_label_names 'class_00'..'class_99' and coarse_label_names. Build the long-tailed set with
    `n_max <= per_class_train`. Returns the cifar-100-python folder.
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    patterns = _patterns(rng, CIFAR_CLASSES, (3072,))
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        labels = rng.permutation(np.repeat(np.arange(CIFAR_CLASSES), per_class))
        content = {"batch_label": f"{split} fake", "fine_labels": labels.tolist(),
                   "coarse_labels": (labels // 5).tolist(),
                   "filenames": [f"fake_{i}.png" for i in range(len(labels))],
                   "data": _class_images(rng, patterns, labels)}
        with open(base / split, "wb") as f:
            pickle.dump(content, f, protocol=pickle.HIGHEST_PROTOCOL)
    meta = {"fine_label_names": [f"class_{c:02d}" for c in range(CIFAR_CLASSES)],
            "coarse_label_names": [f"superclass_{c:02d}" for c in range(CIFAR_CLASSES // 5)]}
    with open(base / "meta", "wb") as f:
        pickle.dump(meta, f)
    return base


def write_fake_tinyimagenet(root: str | Path, num_classes: int = 4, per_class_train: int = 6,
                            per_class_val: int = 2, words: bool = True, seed: int = 0) -> Path:
    """Write `<root>/tiny-imagenet-200/` as distributed, with `num_classes` classes of 64x64 JPEGs.

    wnids.txt (in reverse order: the real file is unsorted), train/<wnid>/images/<wnid>_<i>.JPEG plus
    <wnid>_boxes.txt, val/images/val_<k>.JPEG with val/val_annotations.txt (filename, wnid, bbox; classes
    interleaved), and words.txt ('<wnid><TAB>name<c>, other') when `words`. val_0.JPEG is greyscale,
    as a few real images are. Returns the tiny-imagenet-200 folder.
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "tiny-imagenet-200"
    wnids = fake_wnids(num_classes)
    (base / "val" / "images").mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in reversed(wnids)))
    if words:
        (base / "words.txt").write_text("".join(f"{w}\tname{c}, other\n" for c, w in enumerate(wnids)))
    patterns = _patterns(rng, num_classes, (3, 64, 64))
    for c, wnid in enumerate(wnids):
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i, chw in enumerate(_class_images(rng, patterns, np.full(per_class_train, c))):
            _save_jpeg(folder / f"{wnid}_{i}.JPEG", chw)
    val_labels = np.tile(np.arange(num_classes), per_class_val)
    for k, chw in enumerate(_class_images(rng, patterns, val_labels)):
        _save_jpeg(base / "val" / "images" / f"val_{k}.JPEG", chw, mode="L" if k == 0 else "RGB")
    (base / "val" / "val_annotations.txt").write_text(
        "".join(f"val_{k}.JPEG\t{wnids[c]}\t0\t0\t63\t63\n" for k, c in enumerate(val_labels)))
    return base


def write_fake_imagenet(root: str | Path, per_class_train: Sequence[int] = (8, 6, 5, 4),
                        per_class_val: int = 2, size: tuple[int, int] = (40, 32), seed: int = 0) -> Path:
    """Write `<root>/imagenet/{train,val}/<wnid>/*.JPEG` (ImageFolder layout); class c has per_class_train[c].

    Train files are <wnid>_<i>.JPEG, val files ILSVRC2012_val_<k>.JPEG, all `size` (width, height), not
    square, as real ImageNet. Returns the imagenet folder (split-file paths are relative to it).
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "imagenet"
    wnids = fake_wnids(len(per_class_train))
    patterns = _patterns(rng, len(wnids), (3, size[1], size[0]))
    k = 0
    for c, wnid in enumerate(wnids):
        (base / "train" / wnid).mkdir(parents=True)
        for i, chw in enumerate(_class_images(rng, patterns, np.full(per_class_train[c], c))):
            _save_jpeg(base / "train" / wnid / f"{wnid}_{i}.JPEG", chw)
        (base / "val" / wnid).mkdir(parents=True)
        for chw in _class_images(rng, patterns, np.full(per_class_val, c)):
            _save_jpeg(base / "val" / wnid / f"ILSVRC2012_val_{k:08d}.JPEG", chw)
            k += 1
    return base


def write_split_file(path: str | Path, entries: Iterable[tuple[str, int]]) -> Path:
    """Write an ImageNet-LT style split file, one 'relative/path.JPEG label' line per entry."""
    path = Path(path)
    path.write_text("".join(f"{p} {label}\n" for p, label in entries))
    return path
