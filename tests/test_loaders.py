"""DeviceLoader and DataLoaderAdapter: augmentation distribution, normalisation, order, sharding, caps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, TensorDataset
from torchvision import transforms as T

from ltkd.data import ImageSet, ImageSetDataset, build_transforms
from ltkd.data.loaders import DataLoaderAdapter, DeviceLoader, _sample_crop_flip, random_crop_flip
from tests.helpers import DEVICES, no_host_sync

MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
KINDS = ["device", "adapter"]


def chi2_bound(df: int, z: float = 5.0) -> float:
    """Wilson-Hilferty upper quantile of chi-square(df) at a normal z-score (z = 5: p ~ 3e-7)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi2_uniform(counts: torch.Tensor) -> float:
    expected = counts.sum() / counts.numel()
    return float(((counts - expected) ** 2 / expected).sum())


def images_and_labels(n: int, size: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images and labels equal to the sample index (so batches reveal the indices)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g), torch.arange(n)


def make_loader(kind: str, n: int, **kw):
    images, labels = images_and_labels(n)
    kw.setdefault("device", "cpu")
    if kind == "device":
        return DeviceLoader(images, labels, mean=MEAN, std=STD, pad=2, **kw)
    return DataLoaderAdapter(TensorDataset(images.float(), labels), num_workers=0, **kw)


def epoch_labels(loader, epoch: int) -> list[torch.Tensor]:
    loader.set_epoch(epoch)
    return [y for _, y in loader]


def crop_flip_candidates(image: torch.Tensor, pad: int) -> torch.Tensor:
    """All (2 pad + 1)^2 * 2 torchvision-style results for one (C, H, W) image, indexed
    (dy * (2 pad + 1) + dx) * 2 + flip: zero pad, slice, then mirror."""
    _, h, w = image.shape
    padded = F.pad(image, (pad,) * 4)
    out = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            out += [crop, crop.flip(-1)]
    return torch.stack(out)


def identify(outputs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The candidate index each output equals exactly (fails if one matches none or several)."""
    # integer weights < 2^20 keep every float64 partial sum an exact integer: keys are order-independent
    weights = torch.randint(1, 2**20, (candidates[0].numel(),), generator=torch.Generator().manual_seed(1))
    keys = candidates.flatten(1).double() @ weights.double()
    matches = (outputs.flatten(1).double() @ weights.double())[:, None] == keys[None]
    assert torch.all(matches.sum(1) == 1)
    index = matches.int().argmax(1)
    assert torch.equal(outputs, candidates[index])
    return index


@pytest.mark.parametrize("device", DEVICES)
def test_crop_offsets_uniform_flip_half_and_independent(device):
    n, pad = 20_000, 4
    params = _sample_crop_flip(n, pad, torch.Generator(device).manual_seed(0), device)
    assert all(p.device.type == device for p in params)
    dy, dx, flip = (p.cpu() for p in params)
    assert dy.dtype == dx.dtype == torch.int64 and flip.dtype == torch.bool
    for offsets in (dy, dx):
        assert offsets.min() == 0 and offsets.max() == 2 * pad
        assert chi2_uniform(torch.bincount(offsets, minlength=9).double()) < chi2_bound(8)
    assert abs(int(flip.sum()) - n / 2) < 5 * math.sqrt(n / 4)
    joint = torch.bincount((dy * 9 + dx) * 2 + flip.long(), minlength=162).double()
    assert chi2_uniform(joint) < chi2_bound(161)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pad", [0, 3])
def test_random_crop_flip_equals_pad_and_slice(device, pad):
    batch = torch.randint(0, 256, (64, 3, 7, 9), dtype=torch.uint8, device=device)
    dy, dx, flip = _sample_crop_flip(64, pad, torch.Generator(device).manual_seed(5), device)
    out = random_crop_flip(batch, pad, torch.Generator(device).manual_seed(5))
    assert out.dtype == torch.uint8 and out.shape == batch.shape and out.is_contiguous()
    padded = F.pad(batch, (pad,) * 4)
    for i in range(64):
        crop = padded[i, :, dy[i]:dy[i] + 7, dx[i]:dx[i] + 9]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)


@pytest.mark.parametrize("device", DEVICES)
def test_random_crop_flip_matches_torchvision_distribution(device):
    k, pad = 2430, 4
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    candidates = crop_flip_candidates(image, pad)
    ours = random_crop_flip(image.expand(k, -1, -1, -1).to(device), pad, torch.Generator(device).manual_seed(0))
    ours = ours.cpu()
    reference = T.Compose([T.RandomCrop(32, padding=pad), T.RandomHorizontalFlip(), T.PILToTensor()])
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    with torch.random.fork_rng(devices=()):
        torch.manual_seed(0)
        theirs = torch.stack([reference(pil) for _ in range(k)])
    freq_ours = torch.bincount(identify(ours, candidates), minlength=162).double()
    freq_theirs = torch.bincount(identify(theirs, candidates), minlength=162).double()
    assert chi2_uniform(freq_ours) < chi2_bound(161) and chi2_uniform(freq_theirs) < chi2_bound(161)
    homogeneity = float(((freq_ours - freq_theirs) ** 2 / (freq_ours + freq_theirs).clamp(min=1)).sum())
    assert homogeneity < chi2_bound(161)  # two-sample chi-square: same distribution


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_test_batches_are_to_tensor_and_normalize(device, channels_last):
    images, labels = images_and_labels(10, size=5)
    loader = DeviceLoader(images, labels, batch_size=4, train=False, mean=MEAN, std=STD, pad=4,
                          device=device, channels_last=channels_last)
    x, y = next(iter(loader))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.device.type == y.device.type == device
    assert x.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(x.cpu(), (images[:4].float() / 255 - mean) / std, atol=1e-6, rtol=0)
    reference = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    expected = torch.stack([reference(Image.fromarray(im.permute(1, 2, 0).numpy())) for im in images[:4]])
    # The same three correctly rounded float32 operations as torchvision's (/255, -mean, /std): bit for bit on
    # the CPU; another device's arithmetic may differ in the last bit (stated tolerance: 1 ulp).
    tolerance = 0.0 if device == "cpu" else 2.0**-23
    torch.testing.assert_close(x.cpu(), expected, rtol=tolerance, atol=tolerance)
    assert torch.equal(y.cpu(), labels[:4])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_train_batches_are_crop_flips_of_their_images(device, channels_last):
    images, labels = images_and_labels(13)
    loader = DeviceLoader(images, labels, batch_size=5, train=True, mean=MEAN, std=STD, pad=2,
                          device=device, channels_last=channels_last)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    for x, y in loader:
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.device.type == device
        assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
        pixels = ((x.cpu() * std + mean) * 255).round().to(torch.uint8)
        for image, label in zip(pixels, y.cpu(), strict=True):
            identify(image[None], crop_flip_candidates(images[label], 2))


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_and_epoch_same_batches(kind):
    def loader(seed: int = 7):
        return make_loader(kind, 103, batch_size=10, train=True, seed=seed)

    a, b = loader(), loader()
    a.set_epoch(3)
    b.set_epoch(3)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    order = torch.cat(epoch_labels(a, 3))
    assert torch.equal(order, torch.cat(epoch_labels(a, 3)))  # iterating again replays the epoch
    assert not torch.equal(order, torch.cat(epoch_labels(a, 4)))
    assert not torch.equal(order, torch.cat(epoch_labels(loader(seed=8), 3)))
    assert torch.equal(torch.cat(epoch_labels(a, 0)), torch.cat([y for _, y in loader()]))  # default epoch 0


@pytest.mark.parametrize("kind", KINDS)
def test_every_index_once_per_epoch_and_partial_last_batch(kind):
    loader = make_loader(kind, 103, batch_size=10, train=True)
    assert len(loader) == 11
    for epoch in range(3):
        batches = epoch_labels(loader, epoch)
        assert [len(y) for y in batches] == [10] * 10 + [3]
        assert torch.equal(torch.cat(batches).sort().values, torch.arange(103))
    test = make_loader(kind, 103, batch_size=10, train=False)
    assert len(test) == 11 and torch.equal(torch.cat(epoch_labels(test, 0)), torch.arange(103))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("n", "world_size"), [(103, 2), (104, 2), (103, 3)])
def test_ddp_sharding(kind, n, world_size):
    ranks = [make_loader(kind, n, batch_size=8, train=True, rank=r, world_size=world_size)
             for r in range(world_size)]
    assert len({len(loader) for loader in ranks}) == 1
    for epoch in (0, 1):
        shards = [torch.cat(epoch_labels(loader, epoch)) for loader in ranks]
        assert {len(s) for s in shards} == {n // world_size}
        union = torch.cat(shards)
        assert len(union.unique()) == len(union) == world_size * (n // world_size)  # disjoint, n mod W left
    tests = [make_loader(kind, n, batch_size=8, train=False, rank=r, world_size=world_size)
             for r in range(world_size)]
    assert torch.equal(torch.cat([torch.cat(epoch_labels(t, 0)) for t in tests]), torch.arange(n))
    assert sum(len(t) for t in tests) >= math.ceil(n / 8)


@pytest.mark.parametrize("kind", KINDS)
def test_max_steps_caps_batches(kind):
    for max_steps, expected in ((4, 4), (50, 11)):
        for train in (True, False):
            loader = make_loader(kind, 103, batch_size=10, train=train, max_steps=max_steps)
            assert len(loader) == expected == len(epoch_labels(loader, 0))


def test_adapter_batches_on_device_in_channels_last():
    images, labels = images_and_labels(9)
    loader = DataLoaderAdapter(TensorDataset(images.float(), labels), batch_size=4, train=False, device="cpu",
                               num_workers=0, channels_last=True)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 1]
    x, y = batches[0]
    assert x.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, images[:4].float())
    assert y.dtype == torch.int64 and x.device.type == y.device.type == "cpu"


class RandomSamples(Dataset):
    """Draws from torch's global RNG in __getitem__, like torchvision's random transforms."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.rand(4), index


def test_adapter_augmentation_reproducible_across_workers():
    def batches(num_workers: int, epoch: int) -> list[torch.Tensor]:
        loader = DataLoaderAdapter(RandomSamples(), batch_size=5, train=True, device="cpu", seed=1,
                                   num_workers=num_workers)
        loader.set_epoch(epoch)
        return [x for x, _ in loader]

    state = torch.get_rng_state()
    in_process = batches(0, 2)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left as it was
    assert all(torch.equal(a, b) for a, b in zip(in_process, batches(1, 2), strict=True))
    assert not torch.equal(torch.cat(in_process), torch.cat(batches(0, 3)))


def test_reference_loader_crops_reproducible_across_workers():
    images, labels = images_and_labels(10, size=32)
    transform = build_transforms("cifar100_lt", True, MEAN, STD)
    dataset = ImageSetDataset(ImageSet(labels, images=images), transform)
    runs = [list(DataLoaderAdapter(dataset, batch_size=4, train=True, device="cpu", seed=3, num_workers=w))
            for w in (0, 1)]
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    for (x0, y0), (x1, y1) in zip(*runs, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
        pixels = ((x0 * std + mean) * 255).round().to(torch.uint8)
        for image, label in zip(pixels, y0, strict=True):
            identify(image[None], crop_flip_candidates(images[label], 4))


@pytest.mark.parametrize("device", DEVICES)
def test_device_loader_iteration_never_syncs(device):
    loader = make_loader("device", 50, batch_size=8, train=True, device=device, channels_last=True)
    assert len(list(loader)) == 7  # warm-up
    with no_host_sync(device):
        assert sum(len(y) for _, y in loader) == 50


def test_device_loader_leaves_global_rng_alone():
    state = torch.get_rng_state()
    list(make_loader("device", 20, batch_size=6, train=True))
    assert torch.equal(torch.get_rng_state(), state)


def test_invalid_arguments():
    images, labels = images_and_labels(4)
    common = dict(mean=MEAN, std=STD, pad=2, device="cpu", train=True)
    with pytest.raises(ValueError, match="uint8"):
        DeviceLoader(images.float(), labels, batch_size=2, **common)
    with pytest.raises(ValueError, match="labels"):
        DeviceLoader(images, labels[:3], batch_size=2, **common)
    with pytest.raises(ValueError, match="rank"):
        DeviceLoader(images, labels, batch_size=2, rank=2, world_size=2, **common)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoaderAdapter(TensorDataset(labels), batch_size=0, train=True, device="cpu", num_workers=0)
