"""Shared test helpers: plain functions and constants (the fixtures stay in conftest.py, where pytest finds
them): the toy run's overrides, the command-line runners, the CUDA marks, a toy problem, the two-rank
gloo spawner and a long-tailed teacher for the distiller tests."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed
import torch.multiprocessing as mp
from torch import nn

from ltkd import checkpoint
from ltkd.build import RunContext, build_context
from ltkd.config import LossConfig, RunConfig
from ltkd.data import ImageSet
from ltkd.distributed import DistInfo
from ltkd.models import create_model
from ltkd.train import cli

ROOT = Path(__file__).resolve().parent.parent  # the checkout: subprocesses import its ltkd (PYTHONPATH)


# The CUDA self-check (`pytest -m cuda`): the CUDA parameter of a test that runs on every device
# (`DEVICES`), skipped where there is no CUDA device; `make test` runs the same bodies on the CPU.
CUDA_ONLY = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA_ONLY)]


@contextmanager
def no_host_sync(device: str) -> Iterator[None]:
    """On CUDA, any host synchronisation inside the block raises; elsewhere there is none to catch."""
    if device != "cuda":
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


TOY = [
    "trainer=smoke",
    "logger=none",
    "data.download=false",
    "dataset.imbalance_factor=10",
    "dataset.n_max=12",
    "teacher.arch=resnet8",
    "student.arch=resnet8",
]


def toy_overrides(data_root: Path, cache: Path, *overrides: str) -> list[str]:
    return [*TOY, f"data.root={data_root}", f"paths.teacher_cache={cache}", *overrides]


def run_cli(*args: str, cwd: Path, env_extra: dict | None = None, timeout: int = 300):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "ltkd.train", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=timeout)


# the reliability runs (tests/test_reliability.py): a longer deterministic toy run and where it is killed
LONGER = ["loss=ltkd", "deterministic=true", "trainer.epochs=4", "trainer.lr_milestones=[3]"]


def accuracies(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {who: {which: metrics[who][which] for which in ("final", "best")} for who in ("teacher", "student")}


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "ltkd.train", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"run ended before the kill point: {proc.communicate()[1][-1500:]}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.02)


KILL_POINTS = {
    # teacher stage: its training checkpoint exists, the finished teacher does not yet
    "teacher": lambda cache, run: any(cache.glob("*.ckpt")) and not any(cache.glob("*.pt")),
    # between the stages: the teacher is stored, the student has not checkpointed yet
    "between": lambda cache, run: any(cache.glob("*.pt")),
    # student stage: after its first checkpoint
    "student": lambda cache, run: (run / "checkpoints" / "student.ckpt").exists(),
}


# a toy problem (tests/test_fast_path.py): 10 classes of smooth patterns plus noise
CLASSES, MEAN, STD = 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
PLAIN_CE = LossConfig(name="ce", ce_weight=1.0, warmup_epochs=0, logit_adjust_tau=0.0)


def toy_problem(per_class: int, seed: int) -> ImageSet:
    """Smooth class patterns (so small shifts keep them recognisable) plus pixel noise."""
    gen = torch.Generator().manual_seed(1234)
    patterns = torch.nn.functional.interpolate(torch.rand(CLASSES, 3, 4, 4, generator=gen) * 255, size=32,
                                               mode="bilinear")
    labels = torch.arange(CLASSES).repeat_interleave(per_class)
    noise = torch.randn(len(labels), 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 150
    return ImageSet(labels=labels, images=(patterns[labels] + noise).clamp(0, 255).to(torch.uint8))


def spawn(worker, *args) -> dict:
    """Run `worker(rank, *args, out)` in two gloo processes; {rank: what it put in out[rank]}."""
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(worker, args=(*args, out), nprocs=2)
        return dict(out)


def join_gloo(rank: int, init_file: str) -> DistInfo:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    return DistInfo(rank=rank, world_size=2)


def context(cfg: RunConfig, tmp_path: Path, dist: DistInfo | None = None) -> RunContext:
    """What the pipeline gives stage 2 (the toy data, its groups), as one process or a rank."""
    return build_context(cfg, tmp_path, dist=dist)


def biased_teacher(cfg: RunConfig) -> nn.Module:
    """The configured teacher architecture, its classifier bias falling from head (+4) to tail (-4)."""
    torch.manual_seed(1)
    teacher = create_model(cfg.teacher.arch, cfg.dataset.num_classes)
    with torch.no_grad():
        teacher.classifier.bias.copy_(torch.linspace(4.0, -4.0, cfg.dataset.num_classes))
    return teacher


def drop_test_class(base: Path, label: int) -> None:
    """Remove every image of class `label` from the fake CIFAR test pickle under `base`."""
    with open(base / "test", "rb") as f:
        content = pickle.load(f)
    keep = [i for i, y in enumerate(content["fine_labels"]) if y != label]
    content = {**content, "data": content["data"][keep], "fine_labels": [content["fine_labels"][i] for i in keep],
               "coarse_labels": [content["coarse_labels"][i] for i in keep],
               "filenames": [content["filenames"][i] for i in keep]}
    with open(base / "test", "wb") as f:
        pickle.dump(content, f)


def cli_in_process(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`python -m ltkd.train *args` in this process (a subprocess spends seconds importing): (status, stderr)."""
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setattr(sys, "argv", ["ltkd.train", *args])
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as info:
            cli()
    finally:
        GlobalHydra.instance().clear()  # as the other in-process compositions expect
    return info.value.code, capsys.readouterr().err


def truncate(path: str | Path) -> Path:
    """Cut an image file in half, as an interrupted copy leaves it."""
    path = Path(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def plant_temps(folder: Path, *targets: str, age_s: float) -> list[Path]:
    """Temp files as a writer of `targets` killed mid-write leaves them, last modified `age_s` ago."""
    folder.mkdir(parents=True, exist_ok=True)
    planted = []
    for i, target in enumerate(targets):
        path = folder / f"{checkpoint.temp_prefix(Path(target))}k{i}x7q2z{checkpoint.TEMP_SUFFIX}"
        path.write_bytes(b"half a checkpoint")
        os.utime(path, (path.stat().st_atime - age_s, path.stat().st_mtime - age_s))
        planted.append(path)
    return planted
