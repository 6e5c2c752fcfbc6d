"""The frozen teacher's logits on the training batches, computed once per epoch and shared by every student
of a row (KD, DKD, LTKD, ablations, alpha/beta grids).

All students of a teacher draw the same batches (the student stage's seed: same order, crops and flips),
so the teacher's logits on them are the same for all. The first student to reach an epoch computes them
(a teacher pass over that epoch's batches, batch by batch as its steps would) under a file lock and stores
them; every other student (later in a sequential sweep, waiting on the lock in a parallel one, after a
resume) reads them instead of running the teacher. The logits keep the dtype the teacher produced (fp32,
bf16 under autocast), so a student trained from them is the student trained with a live teacher (bit for
bit on the CPU with deterministic=true; tested). An epoch that could not be stored (a stop signal or the
time limit while computing or waiting) runs the live teacher, so nothing ever waits on a missing entry.

Entries: `<paths.teacher_cache>/outputs/<name>/epoch<NNNN>.pt`, checksummed and written atomically, keyed
by everything that determines the batches and the teacher's arithmetic (`outputs_key`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ltkd.checkpoint import load_checkpoint, save_checkpoint, sweep_stale_temps
from ltkd.data import DATASETS
from ltkd.data.loaders import DeviceLoader
from ltkd.distillers import Distiller
from ltkd.engine import Stage, StopSignal
from ltkd.errors import CheckpointError, OutputError
from ltkd.runtime import Runtime
from ltkd.teacher_cache import file_lock, key_digest

STORE_FORMAT = "ltkd-teacher-outputs-v1"


class _GiveUp(Exception):
    """A stop signal or the time limit arrived while waiting for another job's epoch."""


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (names, dtypes, shapes, bytes): the teacher's identity."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def outputs_key(ctx: Any, teacher: nn.Module) -> dict[str, Any]:
    """What determines the teacher's logits on a student epoch's batches (`ctx`: the pipeline's RunContext)."""
    cfg, runtime, tr = ctx.cfg, ctx.runtime, ctx.cfg.trainer
    ds = cfg.dataset
    return {"format": STORE_FORMAT, "teacher": weights_digest(teacher), "teacher_arch": cfg.teacher.arch,
            "dataset": ds.name, "imbalance_factor": ds.imbalance_factor, "data_seed": ds.seed, "n_max": ds.n_max,
            "split_file": ds.split_file, "train_images": len(ctx.data.train),
            "stage_seed": ctx.stage_seed("student"), "batch_size": tr.batch_size,
            "max_steps_per_epoch": tr.max_steps_per_epoch, "crop_padding": DATASETS[cfg.dataset.name].crop_padding or 0,
            "bf16": runtime.bf16, "channels_last": runtime.channels_last, "device": runtime.device.type,
            "deterministic": cfg.deterministic, "torch": str(torch.__version__)}


class OutputStore:
    """One teacher's stored epochs for one batch stream: `epoch<NNNN>.pt` files and a lock, in `directory`."""

    def __init__(self, root: str | Path, key: dict[str, Any]) -> None:
        self.key = key
        name = f"{key['dataset']}-g{key['imbalance_factor']:g}-{key['teacher_arch']}-seed{key['stage_seed']}"
        self.directory = Path(root) / "outputs" / f"{name}-{key_digest(key)}"

    def path(self, epoch: int) -> Path:
        return self.directory / f"epoch{epoch:04d}.pt"

    def write(self, epoch: int, logits: list[Tensor]) -> None:
        save_checkpoint(self.path(epoch), {"key": self.key, "epoch": epoch, "sizes": [len(x) for x in logits],
                                           "logits": torch.cat(logits).cpu()})

    def read(self, epoch: int) -> list[Tensor]:
        path = self.path(epoch)
        content = load_checkpoint(path, trusted=False)
        if content.get("key") != self.key or content.get("epoch") != epoch:
            raise CheckpointError(f"teacher outputs '{path}' were stored for another configuration; delete them "
                                  "to recompute")
        return list(content["logits"].split(content["sizes"]))


class ReplayTeacher(nn.Module):
    """Stands in for the frozen teacher: the stored logits of the current batch (no features), or the live
    teacher's output when the loader has none for it."""

    def __init__(self, live: nn.Module) -> None:
        super().__init__()
        self.live = live
        self.pending: Tensor | None = None

    @torch.compiler.disable  # the stored logits change every step: a graph break, not a recompile
    def forward(self, images: Tensor) -> tuple[Tensor, dict[str, Any]]:
        logits, self.pending = self.pending, None
        if logits is None:
            return self.live(images)
        if logits.shape[0] != images.shape[0]:
            raise RuntimeError(f"stored teacher logits for {logits.shape[0]} images, batch of {images.shape[0]}")
        return logits, {}


class SharedOutputsLoader:
    """The stage's training batches; before each one, the teacher's stored logits for it go to the
    ReplayTeacher. `set_epoch` reads the epoch's entry, computing and storing it first if no job has."""

    def __init__(self, loader: DeviceLoader, replay: ReplayTeacher, store: OutputStore, stop: StopSignal,
                 runtime: Runtime) -> None:
        self.loader, self.replay, self.store, self.stop, self.runtime = loader, replay, store, stop, runtime
        self.logits: list[Tensor] | None = None
        self.unwritable = False  # the store could not be written: live teacher where no entry exists

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)
        self.logits = self.epoch_logits(epoch)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for step, batch in enumerate(self.loader):
            self.replay.pending = None if self.logits is None else self.logits[step]
            yield batch

    def epoch_logits(self, epoch: int) -> list[Tensor] | None:
        """The epoch's logits on the device, read from the store or computed and stored now; None (live
        teacher) when stopping before they exist or when the store cannot be written (a read-only cache)."""
        path = self.store.path(epoch)
        if not path.exists() and not self.unwritable:  # stored whole (atomic rename): no lock needed to read
            try:
                with file_lock(self.store.directory / "compute.lock", while_waiting=self._give_up_if_stopping):
                    if not path.exists():
                        logits = self.compute(epoch)
                        if logits is not None:
                            self.store.write(epoch, logits)
                        return logits
            except _GiveUp:
                return None
            except (OSError, OutputError) as exc:
                print(f"[student] live teacher from now on: cannot store its outputs in {self.store.directory} "
                      f"({exc})")
                self.unwritable = True
                return None
        return [x.to(self.runtime.device) for x in self.store.read(epoch)] if path.exists() else None

    @torch.no_grad()
    def compute(self, epoch: int) -> list[Tensor] | None:
        """The live teacher's logits on each of the epoch's batches; None if a stop arrives meanwhile."""
        logits = []
        for images, _ in self.loader:
            if self.stop.reason():
                return None
            with self.runtime.autocast():
                logits.append(self.replay.live(images)[0])
        return logits

    def _give_up_if_stopping(self) -> None:
        if self.stop.reason():
            raise _GiveUp


def live_teacher_reason(ctx: Any, distiller: Distiller, loader: Any) -> str | None:
    """Why this student must run its teacher live (None: its outputs can be shared)."""
    if not ctx.cfg.trainer.share_teacher:
        return "trainer.share_teacher=false"
    if not distiller.teacher_logits_only:
        return f"loss={ctx.cfg.loss.name} needs the teacher's features, not only its logits"
    if ctx.dist.enabled:
        return "under torchrun (DDP) every rank runs its teacher on its own share of the batch"
    if not isinstance(loader, DeviceLoader):
        return ("the training set is not held in memory (trainer.loader=dataloader, e.g. ImageNet-LT, whose "
                "logits would take about 0.23 GB per epoch in bf16)")
    return None


def share_teacher_outputs(ctx: Any, stage: Stage, distiller: Distiller) -> None:
    """Make the student `stage` read its teacher's logits from the shared store (computing each epoch there
    if no other student has yet), or say why it keeps a live teacher. No-op without a teacher (CE)."""
    if distiller.teacher is None:
        return
    reason = live_teacher_reason(ctx, distiller, stage.train_loader)
    if reason:
        print(f"[student] live teacher: {reason}")
        return
    store = OutputStore(ctx.cfg.paths.teacher_cache, outputs_key(ctx, distiller.teacher))
    sweep_stale_temps(store.directory)
    replay = ReplayTeacher(distiller.teacher)
    distiller.teacher = replay
    stage.train_loader = SharedOutputsLoader(stage.train_loader, replay, store, ctx.stop, ctx.runtime)
    per_epoch = (len(stage.train_loader) * ctx.cfg.trainer.batch_size * ctx.data.num_classes
                 * (2 if ctx.runtime.bf16 else 4))
    print(f"[student] teacher outputs shared in {store.directory} (computed once per epoch by the first "
          f"student to need it; {per_epoch / 2**20:.2f} MiB per epoch, "
          f"{per_epoch * ctx.cfg.trainer.epochs / 2**30:.2f} GiB for {ctx.cfg.trainer.epochs} epochs)")
