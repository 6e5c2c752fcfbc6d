"""Shared fixtures: the real configs composed at toy size on tiny fake data in the real layouts."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ltkd.recipes import CONFIG_DIR
from tests.fakedata import write_fake_cifar100
from tests.helpers import toy_overrides
from tests.offline import build_wheelhouse, torch_image_python

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one thread each, so they
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # and the commands they start do not oversubscribe the cores
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fake_cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake cifar-100-python (100 classes, 12 train / 3 test images per class)."""
    root = tmp_path_factory.mktemp("data")
    write_fake_cifar100(root, per_class_train=12, per_class_test=3)
    return root


@pytest.fixture(scope="session")
def shared_teacher_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One teacher cache for the whole session, so toy teachers are trained once."""
    return tmp_path_factory.mktemp("teachers")


@pytest.fixture
def compose_toy(fake_cifar_root: Path, shared_teacher_cache: Path) -> Callable[..., DictConfig]:
    """Compose configs/train.yaml with the toy overrides plus any given ones."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose("train", overrides=toy_overrides(fake_cifar_root, shared_teacher_cache, *overrides))

    return _compose


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`scripts/wheelhouse.py`'s wheels for this machine (built once; skips where no package index answers)."""
    out = tmp_path_factory.mktemp("wheelhouse")
    proc = build_wheelhouse(out)
    if proc.returncode != 0:
        pytest.skip(f"could not build the wheelhouse (no package index?): {proc.stderr.strip()[-300:]}")
    return out


@pytest.fixture(scope="session")
def torch_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a stand-in for a stock PyTorch GPU image (torch, no Hydra, no ltkd)."""
    return torch_image_python(tmp_path_factory.mktemp("torch-image"))
