"""A shared store of pretrained teachers, keyed by everything that determines them.

A sweep over losses or alpha/beta reuses one teacher: the first job takes an exclusive file lock on
the key, trains (resumably: its stage checkpoint lives beside the entry) and stores the teacher; the
jobs that need the same teacher wait on the lock and then load it. Entries are checksummed
checkpoint files, written atomically, so a partial or corrupt one is reported, never used, and a finished
entry is read without the lock (a read-only cache works).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from ltkd.config import RunConfig, teacher_stage_identity

TEACHER_FORMAT = "ltkd-teacher-v2"  # v1 keys named a hand-picked subset of the recipe; v2 the stage's identity
LOCK_POLL_S = 0.5


def teacher_key(run: RunConfig, bf16: bool) -> dict[str, Any]:
    """What determines a pretrained teacher and the figures reported for it: the identity of the run's
    teacher stage (`config.teacher_stage_identity`: every key with role RESULT that the stage reads, nothing
    the student alone reads), and whether it trained under bf16 autocast (`trainer.precision=auto` resolved
    on this device). The dataset, γ, architecture and seed are repeated at the top to name the file."""
    return {"format": TEACHER_FORMAT, "dataset": run.dataset.name, "imbalance_factor": run.dataset.imbalance_factor,
            "arch": run.teacher.arch, "seed": run.seed, "bf16": bf16, "stage": teacher_stage_identity(run)}


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


class TeacherCache:
    """Files under `root`: `<name>.pt` (the teacher), `<name>.ckpt` (its training state), `<name>.lock`."""

    def __init__(self, root: str | Path, key: dict[str, Any]) -> None:
        self.root = Path(root)
        self.key = key
        ds = key["dataset"]
        self.name = f"{ds}-g{key['imbalance_factor']:g}-{key['arch']}-seed{key['seed']}-{key_digest(key)}"

    @property
    def path(self) -> Path:
        return self.root / f"{self.name}.pt"

    @property
    def training_checkpoint(self) -> Path:
        return self.root / f"{self.name}.ckpt"

    def locked(self, enabled: bool = True, while_waiting: Callable[[], None] = lambda: None
               ) -> AbstractContextManager[None]:
        """Exclusive lock on this key: waits while another process trains the same teacher (`file_lock`)."""
        return file_lock(self.root / f"{self.name}.lock", enabled, while_waiting)


@contextmanager
def file_lock(path: Path, enabled: bool = True, while_waiting: Callable[[], None] = lambda: None) -> Iterator[None]:
    """An exclusive flock on `path` (released by the OS if the holder dies): waits while another process
    holds it, calling `while_waiting` every LOCK_POLL_S seconds (it raises to give up, e.g. on a stop
    signal). `enabled=False` takes no lock (under torchrun, ranks other than 0)."""
    if not enabled:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                while_waiting()
                time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
