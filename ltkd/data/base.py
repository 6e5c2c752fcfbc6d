"""The dataset containers and what the per-dataset readers share: download, image decoding, messages."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets.utils import download_and_extract_archive

from ltkd.errors import DataError, one_line


@dataclass
class ImageSet:
    """One split: int64 labels (N,) and either uint8 images (N, 3, H, W) in memory or N file paths."""

    labels: torch.Tensor
    images: torch.Tensor | None = None
    paths: list[str] | None = None

    def __post_init__(self) -> None:
        if (self.images is None) == (self.paths is None):
            raise ValueError("ImageSet needs exactly one of images and paths")
        size = len(self.images) if self.images is not None else len(self.paths)
        if size != len(self.labels):
            raise ValueError(f"ImageSet: {size} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def first_per_class(self, k: int) -> ImageSet:
        """The first `k` images of every class, in order (a smaller balanced test set for smoke runs)."""
        seen: dict[int, int] = {}
        keep = []
        for i, label in enumerate(self.labels.tolist()):
            if seen.get(label, 0) < k:
                seen[label] = seen.get(label, 0) + 1
                keep.append(i)
        index = torch.tensor(keep, dtype=torch.long)
        return ImageSet(labels=self.labels[index],
                        images=None if self.images is None else self.images[index],
                        paths=None if self.paths is None else [self.paths[i] for i in keep])


@dataclass
class LongTailedData:
    """A long-tailed training set, its balanced test set and what the models and reports need."""

    name: str
    num_classes: int
    class_names: list[str]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train: ImageSet
    test: ImageSet
    train_counts: list[int]
    imbalance_factor: float


def ensure_files(required: Sequence[Path], root: Path, url: str, md5: str, download: bool,
                 layout: str) -> None:
    """Make sure every path in `required` exists, downloading and extracting `url` into `root` if allowed.

    Present files are used as they are (never checksummed); a download is md5-checked. DataError when
    something is missing and the download is off or fails; `layout` describes what is expected.
    """
    missing = [p for p in required if not p.exists()]
    if not missing:
        return
    if not download:
        raise DataError(f"{missing[0]}: not found; expected {layout} (or set data.download=true)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(url, download_root=str(root), md5=md5)
    except Exception as exc:  # network, disk, checksum or archive errors all mean the same to the user
        raise DataError(f"{missing[0]}: not found and downloading {url} into {root} failed "
                        f"({one_line(exc)}); expected {layout}") from exc
    still = [p for p in required if not p.exists()]
    if still:
        raise DataError(f"{still[0]}: not found after extracting {url}; expected {layout}")


def read_text(path: Path, expected: str) -> str:
    """The UTF-8 text of the file at `path`; DataError naming it when it cannot be read (a directory, no
    permission) or is not text (a binary or corrupt file): reading, unlike writing, is the input's fault."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file (byte 0x{exc.object[exc.start]:02x} at offset {exc.start} is "
                        f"not UTF-8); expected {expected}") from None
    except OSError as exc:
        raise DataError(f"{DataError.from_os_error(exc, path)}; expected {expected}") from None


def open_rgb(path: str) -> Image.Image:
    """The image file at `path`, decoded and converted to RGB; DataError naming the file if unreadable."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as exc:  # PIL raises many types for unreadable files
        raise DataError(f"{path}: cannot decode the image ({one_line(exc)}); expected an image file") from exc


def _decode(path: str, size: int) -> np.ndarray:
    rgb = np.asarray(open_rgb(path))
    if rgb.shape[:2] != (size, size):
        raise DataError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]}; expected {size}x{size}")
    return rgb


def decode_images(paths: Sequence[str], size: int) -> torch.Tensor:
    """Decode square `size` x `size` images (converted to RGB) into a uint8 tensor (N, 3, size, size)."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for i, rgb in enumerate(pool.map(_decode, paths, [size] * len(paths))):
            out[i] = rgb
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
