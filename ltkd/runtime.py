"""Device, precision and seeding: the few decisions that differ between a CPU and a GPU."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ltkd.config import TrainerConfig
from ltkd.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed for one run."""

    device: torch.device
    bf16: bool
    channels_last: bool

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """bf16 autocast when enabled (BatchNorm and the loss math stay in float32)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            yield


def resolve_runtime(trainer: TrainerConfig) -> Runtime:
    """Pick the device and the CPU- or GPU-appropriate defaults for `auto` values."""
    if trainer.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(trainer.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"trainer.device: '{trainer.device}' but no CUDA device is available; "
                              "allowed here: auto, cpu")
    on_gpu = device.type == "cuda"
    bf16 = on_gpu if trainer.precision == "auto" else trainer.precision == "bf16"
    channels_last = on_gpu if trainer.channels_last == "auto" else bool(trainer.channels_last)
    return Runtime(device=device, bf16=bf16, channels_last=channels_last)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; optionally make kernels deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def rng_state() -> dict:
    """Every RNG state a resumed run needs to continue exactly."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
