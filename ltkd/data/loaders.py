"""Batch loaders for the training loop: a device-resident fast path and a torch DataLoader path.

Both implement `BatchLoader` and share one sharding rule per epoch (N samples, W = world_size, r = rank):

* train: a permutation of range(N) seeded from (seed, epoch), truncated to its first W * (N // W) entries,
  then rank r takes `perm[r::W]`. Ranks get disjoint index sets of N // W samples each (so equal batch
  counts); the N mod W < W samples dropped change every epoch. The last partial batch is kept.
* test: rank r takes the contiguous range [r * N // W, (r + 1) * N // W), in order: every sample is seen
  exactly once across ranks (batch counts may differ by one between ranks).

The randomness of an epoch depends only on (seed, epoch) (the seed must be the same on every rank), so a
resumed run replays the same batches and there is no loader state to checkpoint.
"""

from __future__ import annotations

import hashlib
import math
import traceback
from collections.abc import Iterator, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler


class BatchLoader(Protocol):
    """What a training stage iterates: (images, labels) batches on the device, an epoch's order set first."""

    def set_epoch(self, epoch: int) -> None: ...
    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]: ...
    def __len__(self) -> int: ...


def _epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for (seed, epoch), stable across runs, platforms and Python versions."""
    digest = hashlib.blake2b(f"ltkd-loader:{seed}:{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _check_common(batch_size: int, max_steps: int | None, rank: int, world_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size: {batch_size}; expected >= 1")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps: {max_steps}; expected None or >= 1")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} with world_size {world_size}; expected 0 <= rank < world_size")


def _train_order(n: int, generator: torch.Generator, world_size: int) -> Tensor:
    """The epoch's permutation, truncated to a multiple of the world size (see the module docstring)."""
    perm = torch.randperm(n, generator=generator, device=generator.device)
    return perm[: (n // world_size) * world_size]


def _train_shard(n: int, generator: torch.Generator, rank: int, world_size: int) -> Tensor:
    """This rank's training indices for the epoch the generator is seeded for."""
    return _train_order(n, generator, world_size)[rank::world_size]


def _test_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """This rank's contiguous [start, stop) range of test indices."""
    return n * rank // world_size, n * (rank + 1) // world_size


def _shard_size(n: int, train: bool, rank: int, world_size: int) -> int:
    """How many samples this rank sees per epoch."""
    if train:
        return n // world_size
    start, stop = _test_range(n, rank, world_size)
    return stop - start


def _num_batches(samples: int, batch_size: int, max_steps: int | None) -> int:
    batches = math.ceil(samples / batch_size)
    return batches if max_steps is None else min(batches, max_steps)


def _sample_crop_flip(n: int, pad: int, generator: torch.Generator,
                      device: torch.device | str) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image crop offsets dy, dx uniform in {0..2 * pad} (int64) and flip flags with p = 1/2 (bool)."""
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    flip = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    return dy, dx, flip


def _gather_crop_flip(padded: Tensor, index: Tensor, size: tuple[int, int],
                      params: tuple[Tensor, Tensor, Tensor], channels_last: bool) -> Tensor:
    """(size) crops of the zero-padded images `padded[index]` at offsets (dy, dx), mirrored where `flip`, in
    one gather: output[i, c, y, x] = padded[index[i], c, dy[i] + y, dx[i] + (W - 1 - x if flip[i] else x)].
    The result is channels_last-strided (a permuted NHWC gather) when asked, contiguous NCHW otherwise."""
    device, (h, w) = padded.device, size
    dy, dx, flip = params
    rows = dy[:, None] + torch.arange(h, device=device)
    cols = dx[:, None] + torch.arange(w, device=device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    channels = torch.arange(padded.shape[1], device=device)
    if channels_last:
        nhwc = padded[index[:, None, None, None], channels[None, None, None, :],
                      rows[:, :, None, None], cols[:, None, :, None]]
        return nhwc.permute(0, 3, 1, 2)
    return padded[index[:, None, None, None], channels[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def random_crop_flip(batch_uint8: Tensor, pad: int, generator: torch.Generator) -> Tensor:
    """torchvision RandomCrop((H, W), padding=pad) (zero fill) + RandomHorizontalFlip() on a (N, C, H, W)
    batch, independently per image, drawing from `generator` (on the batch's device)."""
    n, _, h, w = batch_uint8.shape
    padded = F.pad(batch_uint8, (pad, pad, pad, pad))
    index = torch.arange(n, device=batch_uint8.device)
    params = _sample_crop_flip(n, pad, generator, batch_uint8.device)
    return _gather_crop_flip(padded, index, (h, w), params, channels_last=False)


class DeviceLoader:
    """Batches of an in-memory uint8 image set kept on `device`, augmented and normalised there.

    Train: shuffled per epoch (generator on `device` seeded from (seed, epoch)), random crop with zero
    padding `pad` + horizontal flip, then /255 and (x - mean) / std, i.e. the torchvision pipeline
    RandomCrop + RandomHorizontalFlip + ToTensor + Normalize. Test: in order, ToTensor + Normalize only.
    Yields float32 images (channels_last if asked) and int64 labels, with no host synchronisation.
    """

    def __init__(self, images: Tensor, labels: Tensor, *, batch_size: int, train: bool,
                 mean: Sequence[float], std: Sequence[float], pad: int, device: torch.device | str,
                 seed: int = 0, max_steps: int | None = None, channels_last: bool = False,
                 rank: int = 0, world_size: int = 1) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images: {images.dtype} {tuple(images.shape)}; expected uint8 (N, C, H, W)")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(f"mean/std of length {len(mean)}/{len(std)} for {images.shape[1]} channels")
        if pad < 0:
            raise ValueError(f"pad: {pad}; expected >= 0")
        _check_common(batch_size, max_steps, rank, world_size)
        self.device = torch.device(device)
        self.batch_size, self.train, self.pad, self.seed = batch_size, train, pad, seed
        self.max_steps, self.channels_last = max_steps, channels_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.size = (images.shape[2], images.shape[3])
        self.num_samples = len(images)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        images = images.to(self.device)
        # train keeps only the zero-padded copy (crops are gathered from it); test keeps channels_last
        # storage when asked so that its batches are plain slices already in that format.
        self.images = F.pad(images, (pad,) * 4) if train else images.contiguous(memory_format=memory_format)
        self.labels = labels.to(self.device, torch.int64)
        self.scale = torch.tensor(255.0, device=self.device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        samples = _shard_size(self.num_samples, self.train, self.rank, self.world_size)
        return _num_batches(samples, self.batch_size, self.max_steps)

    def _normalize(self, batch: Tensor) -> Tensor:
        # by a device tensor, not the number 255: CUDA divides by a host scalar as a multiply by its
        # reciprocal, which differs from torchvision's ToTensor division in the last bit
        return batch.float().div_(self.scale).sub_(self.mean).div_(self.std)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        steps, size = len(self), self.batch_size
        if not self.train:
            start, stop = _test_range(self.num_samples, self.rank, self.world_size)
            for i in range(steps):
                lo, hi = start + i * size, min(start + (i + 1) * size, stop)
                yield self._normalize(self.images[lo:hi]), self.labels[lo:hi]
            return
        generator = torch.Generator(device=self.device)
        generator.manual_seed(_epoch_seed(self.seed, self.epoch))
        # Every rank draws the whole global batch (its indices and their crops and flips) and keeps its
        # strided share, so the union over ranks is exactly the single-process batch.
        order, world = _train_order(self.num_samples, generator, self.world_size), self.world_size
        mine = slice(self.rank, None, world)
        for i in range(steps):
            global_index = order[i * size * world:(i + 1) * size * world]
            params = _sample_crop_flip(global_index.numel(), self.pad, generator, self.device)
            index = global_index[mine]
            batch = _gather_crop_flip(self.images, index, self.size, tuple(p[mine] for p in params),
                                      self.channels_last)
            yield self._normalize(batch), self.labels[index]


class _EpochSampler(Sampler[tuple[int, int]]):
    """This rank's (sample seed, index) keys for the epoch; the sample seed depends on (seed, epoch, index)
    only, so augmentation does not depend on the worker count, the rank or the order."""

    def __init__(self, num_samples: int, *, shuffle: bool, seed: int, limit: int | None, rank: int,
                 world_size: int) -> None:
        self.num_samples, self.shuffle, self.seed, self.limit = num_samples, shuffle, seed, limit
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def __len__(self) -> int:
        samples = _shard_size(self.num_samples, self.shuffle, self.rank, self.world_size)
        return samples if self.limit is None else min(samples, self.limit)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
        if self.shuffle:
            order = _train_shard(self.num_samples, generator, self.rank, self.world_size)
        else:
            order = torch.arange(*_test_range(self.num_samples, self.rank, self.world_size))
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=generator)
        order = order[: len(self)]
        yield from zip(seeds[order].tolist(), order.tolist(), strict=True)


class _SeededDataset(Dataset):
    """dataset[index] with torch's global CPU RNG seeded by the key's sample seed (and restored after),
    so the random transforms that draw from it are reproducible."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        sample_seed, index = key
        rng = torch.default_generator  # not torch.manual_seed: it also queues CUDA seeding, ~1 ms per call
        state = rng.get_state()
        rng.manual_seed(sample_seed)
        try:
            return self.dataset[index]
        finally:
            rng.set_state(state)


class DataLoaderAdapter:
    """A torch DataLoader over `dataset` (transforms run in workers) with the `BatchLoader` interface.

    Order and sharding follow the module rule, from a CPU generator seeded with (seed, epoch); each sample
    is loaded with torch's RNG seeded from (seed, epoch, index), so the augmentation is reproducible too.
    Batches are moved to `device` (non-blocking from pinned memory), channels_last if asked.
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, train: bool, device: torch.device | str,
                 num_workers: int, seed: int = 0, max_steps: int | None = None, channels_last: bool = False,
                 rank: int = 0, world_size: int = 1, pin_memory: bool | None = None) -> None:
        _check_common(batch_size, max_steps, rank, world_size)
        self.device = torch.device(device)
        self.channels_last = channels_last
        limit = None if max_steps is None else max_steps * batch_size
        self.sampler = _EpochSampler(len(dataset), shuffle=train, seed=seed, limit=limit, rank=rank,
                                     world_size=world_size)
        self.loader = DataLoader(
            _SeededDataset(dataset), batch_size=batch_size, sampler=self.sampler, num_workers=num_workers,
            pin_memory=self.device.type == "cuda" if pin_memory is None else pin_memory,
            persistent_workers=num_workers > 0,
            generator=torch.Generator().manual_seed(seed),  # its per-iteration seed draw spares global RNG
        )

    def set_epoch(self, epoch: int) -> None:
        self.sampler.epoch = epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        try:
            for images, labels in self.loader:
                yield (images.to(self.device, non_blocking=True, memory_format=memory_format),
                       labels.to(self.device, torch.int64, non_blocking=True))
        except Exception as exc:
            # A worker's error (a corrupt image): its traceback holds the loader's iterator in a cycle, which
            # only the garbage collector would free, after the iterator's queues, so that its workers never
            # get the signal to exit and their shutdown waits 5 s. Freed by reference count, they exit at once.
            traceback.clear_frames(exc.__traceback__)
            raise
