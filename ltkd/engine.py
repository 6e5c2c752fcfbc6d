"""One training stage (teacher pretraining or student distillation): the lean loop, resumable.

The step loop never waits on the device: losses, accuracy and a non-finite-loss marker accumulate as
device tensors and are read once per epoch. Every `checkpoint_every` epochs (and on SIGTERM/SIGUSR1,
mid-epoch) the full state is written atomically; a resumed stage continues bit-for-bit because all
data randomness is derived from (seed, epoch) and the global RNG states are restored.
"""

from __future__ import annotations

import functools
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ltkd.checkpoint import load_checkpoint, save_checkpoint
from ltkd.config import TrainerConfig
from ltkd.data.loaders import BatchLoader
from ltkd.deadline import STOP_MARGIN_S
from ltkd.distillers import Distiller
from ltkd.distributed import DistInfo, all_reduce_min, all_reduce_sum
from ltkd.errors import INTERRUPTED_EXIT_CODE, PREEMPTED_EXIT_CODE, CheckpointError, LTKDError, first_line
from ltkd.evaluation import Accuracy
from ltkd.runtime import Runtime, rng_state, set_rng_state

SIGNAL_POLL_STEPS = 20  # under torchrun, how often the ranks agree on whether a stop signal arrived


class Preempted(Exception):
    """A stop signal arrived or the time limit ran out; the stage saved a checkpoint (if it had begun) and
    stopped. `exit_code`: 130 for Ctrl-C, else 75 (re-run the same command to resume)."""

    def __init__(self, message: str, exit_code: int = PREEMPTED_EXIT_CODE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NonFiniteLoss(LTKDError):
    """The training loss became NaN or infinite."""


class StageLogger(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...


@dataclass
class Tracker:
    """What a stage has recorded so far (checkpointed as a dict): best and last test accuracies
    (`Accuracy.as_dict()`), the per-epoch history and the wall time spent training."""

    best: dict[str, Any] | None = None
    best_epoch: int = 0
    final: dict[str, Any] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    wall: float = 0.0


@dataclass
class EpochSums:
    """The device-side sums of an epoch so far (read once at its end; checkpointed mid-epoch as a dict):
    each loss term (`names`, in the distiller's order), the distiller's step statistics (`stat_names`),
    correct predictions, images, steps, and the first step whose loss was not finite (-1: none)."""

    correct: Tensor
    seen: Tensor
    steps: Tensor
    bad_step: Tensor
    names: list[str] = field(default_factory=list)
    loss_terms: Tensor | None = None
    stat_names: list[str] = field(default_factory=list)
    stat_terms: Tensor | None = None

    def add_losses(self, names: list[str], terms: Tensor) -> None:
        """Add this step's loss terms (`terms`: float32, stacked in the order of `names`)."""
        self.names = self.names or list(names)
        self.loss_terms = _accumulated(self.loss_terms, terms)

    def add_statistics(self, statistics: dict[str, Tensor]) -> None:
        """Add this step's step statistics (the distiller's `step_statistics()`)."""
        self.stat_names = self.stat_names or list(statistics)
        self.stat_terms = _accumulated(self.stat_terms, torch.stack([v.float() for v in statistics.values()]))

    @classmethod
    def zeros(cls, device: torch.device) -> EpochSums:
        return cls(correct=torch.zeros((), device=device), seen=torch.zeros((), device=device),
                   steps=torch.zeros((), device=device),
                   bad_step=torch.full((), -1, device=device, dtype=torch.long))

    @classmethod
    def from_dict(cls, state: dict[str, Any], device: torch.device) -> EpochSums:
        return cls(**{k: v.to(device) if isinstance(v, Tensor) else v for k, v in state.items()})


def _accumulated(total: Tensor | None, values: Tensor) -> Tensor:
    """`total` + `values` (detached), in place; a new running total when `total` is None."""
    return values.detach().clone() if total is None else total.add_(values.detach())


@dataclass
class StageResult:
    final: Accuracy
    best: Accuracy
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0


class StopSignal:
    """Records SIGTERM / SIGUSR1 (how Slurm announces preemption) and SIGINT (Ctrl-C), and carries the run's
    deadline (time.time() at which trainer.time_limit runs out), so the loop can stop cleanly before either."""

    def __init__(self, deadline: float | None = None, started: float | None = None) -> None:
        self.received: int | None = None
        self.deadline = deadline
        self.started = time.time() if started is None else started  # when the job started (its start-up)

    def reason(self) -> str | None:
        """Why the loop should stop now ("stop signal", "time limit"), or None to go on."""
        if self.received is not None:
            return "stop signal"
        if self.deadline is not None and time.time() >= self.deadline - STOP_MARGIN_S:
            return "time limit"
        return None

    @contextmanager
    def installed(self) -> Iterator[StopSignal]:
        wanted = [signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR1", None)]
        previous = {}
        try:
            for sig in filter(None, wanted):
                previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave the default handlers
            pass
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received = signum

    @property
    def exit_code(self) -> int:
        return INTERRUPTED_EXIT_CODE if self.received == signal.SIGINT else PREEMPTED_EXIT_CODE

    def check(self, where: str) -> None:
        """Outside the step loop (start-up, waiting for a teacher): raise Preempted if a signal arrived or the
        time limit ran out."""
        reason = self.reason()
        if reason:
            raise Preempted(f"{reason} {where}; re-run the same command to resume", self.exit_code)


def build_optimizer(params: list[nn.Parameter], lr: float, trainer: TrainerConfig, runtime: Runtime):
    """`trainer.optimizer` (fused kernels on CUDA) and its per-epoch `trainer.lr_schedule`: SGD with momentum
    and weight decay, or AdamW (betas (momentum, 0.999), decoupled weight decay); the multi-step schedule, or
    the linear warm-up then cosine decay of `cosine_factor`."""
    if trainer.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=lr, betas=(trainer.momentum, 0.999),
                                      weight_decay=trainer.weight_decay, fused=runtime.is_cuda)
    else:
        optimizer = torch.optim.SGD(
            params, lr=lr, momentum=trainer.momentum, weight_decay=trainer.weight_decay, fused=runtime.is_cuda
        )
    if trainer.lr_schedule == "cosine":
        factor = functools.partial(cosine_factor, warmup=trainer.warmup_epochs, epochs=trainer.epochs)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(trainer.lr_milestones), gamma=trainer.lr_decay
    )
    return optimizer, scheduler


def cosine_factor(done: int, *, warmup: int, epochs: int) -> float:
    """The lr factor of the epoch after `done` finished ones: (done + 1) / (warmup + 1) during the `warmup`
    epochs (a linear rise), then half a cosine from 1 at epoch warmup + 1 towards 0 at epoch epochs + 1."""
    if done < warmup:
        return (done + 1) / (warmup + 1)
    return 0.5 * (1.0 + math.cos(math.pi * (done - warmup) / (epochs - warmup)))


class Stage:
    """Trains a distiller (forward(images, target, epoch) -> (logits, {name: loss})) for one stage.

    Checkpoints hold the distiller's student state (student, extra modules, loss buffers), never the
    frozen teacher."""

    def __init__(
        self,
        name: str,
        module: Distiller,
        params: list[nn.Parameter],
        *,
        train_loader: BatchLoader,
        evaluate: Callable[[], Accuracy],
        trainer: TrainerConfig,
        lr: float,
        runtime: Runtime,
        checkpoint_path: Path,
        logger: StageLogger,
        stop: StopSignal,
        dist: DistInfo | None = None,
        forward: nn.Module | None = None,
    ) -> None:
        self.name = name
        self.module = module
        self.forward = forward or module  # the DistributedDataParallel wrapper under torchrun
        self.dist = dist or DistInfo()
        self.train_loader = train_loader
        self.evaluate = evaluate
        self.trainer = trainer
        self.runtime = runtime
        self.checkpoint_path = checkpoint_path
        self.logger = logger
        self.stop = stop
        self.optimizer, self.scheduler = build_optimizer(params, lr, trainer, runtime)
        self.tracker = Tracker()

    # --- state -----------------------------------------------------------------------------------
    def _state(self, next_epoch: int, skip_steps: int, partial: EpochSums | None) -> dict:
        return {
            "stage": self.name,
            "model": self.module.student_state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "next_epoch": next_epoch,
            "skip_steps": skip_steps,
            "partial": None if partial is None else asdict(partial),
            "tracker": asdict(self.tracker),
        }

    def _restore(self) -> tuple[int, int, EpochSums | None]:
        """Load the checkpoint into the module, optimizer, schedule, RNGs and tracker; returns (next epoch,
        steps of it already done, that epoch's sums so far)."""
        state = load_checkpoint(self.checkpoint_path)
        if state.get("stage") != self.name:
            raise CheckpointError(
                f"checkpoint '{self.checkpoint_path}' belongs to stage {state.get('stage')!r}, not {self.name!r}"
            )
        try:
            self.module.load_student_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(
                f"checkpoint '{self.checkpoint_path}' does not match this run's model "
                f"({first_line(exc)})"
            ) from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.tracker = Tracker(**state["tracker"])
        partial = state["partial"]
        partial = None if partial is None else EpochSums.from_dict(partial, self.runtime.device)
        return state["next_epoch"], state["skip_steps"], partial

    def _save(self, state: dict) -> None:
        if self.dist.is_main:
            save_checkpoint(self.checkpoint_path, state)

    def _stop_reason(self, step: int) -> str | None:
        """Why to stop (a signal or the time limit, on any rank: under torchrun the ranks agree every
        SIGNAL_POLL_STEPS steps), or None."""
        reason = self.stop.reason()
        if not self.dist.enabled:
            return reason
        if step % SIGNAL_POLL_STEPS:
            return None
        flag = torch.tensor([0 if reason is None else 1], device=self.runtime.device)
        return (reason or "stop signal on another rank") if all_reduce_sum(flag, self.dist).item() else None

    # --- loop ------------------------------------------------------------------------------------
    def run(self, resume: bool) -> StageResult:
        epochs = self.trainer.epochs
        start_epoch, skip, partial = 1, 0, None
        if resume and self.checkpoint_path.exists():
            start_epoch, skip, partial = self._restore()
            print(f"[{self.name}] resuming from {self.checkpoint_path} at epoch {start_epoch}"
                  + (f", step {skip}" if skip else ""))
        bar = tqdm(range(start_epoch, epochs + 1), desc=self.name, initial=start_epoch - 1, total=epochs,
                   dynamic_ncols=True, mininterval=1.0, disable=not self.dist.is_main)
        for epoch in bar:
            started = time.perf_counter()
            sums = self.train_epoch(epoch, skip, partial)
            skip, partial = 0, None
            train_stats = self._read_epoch_stats(epoch, sums)
            due = epoch % self.trainer.eval_every == 0 or epoch == epochs
            accuracy = self.evaluate() if due else None
            seconds = time.perf_counter() - started
            tracker = self.tracker
            tracker.wall += seconds
            record = {"epoch": epoch, **self._optimizer_settings(), "time_s": seconds, **train_stats}
            self.scheduler.step()
            postfix = {"loss": f"{train_stats['train/loss']:.3f}"}
            if accuracy is not None:
                record.update({f"test/{k}": v for k, v in accuracy.summary().items()})
                tracker.final = accuracy.as_dict()
                if tracker.best is None or accuracy.overall > tracker.best["overall"]:
                    tracker.best, tracker.best_epoch = accuracy.as_dict(), epoch
                postfix.update(acc=f"{accuracy.overall:.2f}", tail=f"{accuracy.tail:.2f}")
            tracker.history.append(record)
            self.logger.log({f"{self.name}/{k}": v for k, v in record.items() if k != "epoch"}, step=epoch)
            bar.set_postfix(postfix)
            if epoch % self.trainer.checkpoint_every == 0 or epoch == epochs:
                self._save(self._state(epoch + 1, 0, None))
        bar.close()
        tracker = self.tracker
        return StageResult(final=Accuracy(**tracker.final), best=Accuracy(**tracker.best),
                           best_epoch=tracker.best_epoch, history=tracker.history, wall_time_s=tracker.wall)

    def train_epoch(self, epoch: int, skip: int = 0, partial: EpochSums | None = None) -> EpochSums:
        """One pass over the training batches (the first `skip` replayed without training, continuing the
        sums `partial`); returns the device-side sums for the epoch."""
        self.module.train()
        self.train_loader.set_epoch(epoch)
        sums = partial or EpochSums.zeros(self.runtime.device)
        for step, (images, labels) in enumerate(tqdm(self.train_loader, desc=f"epoch {epoch}", leave=False,
                                                     dynamic_ncols=True, mininterval=1.0,
                                                     disable=not self.dist.is_main)):
            if step < skip:  # resuming mid-epoch: the loader replays the same random batches
                continue
            with self.runtime.autocast():
                logits, losses = self.forward(images, labels, epoch)
            terms = torch.stack([v.float() for v in losses.values()])
            loss = terms.sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            sums.add_losses(list(losses), terms)
            statistics = self.module.step_statistics()
            if statistics:
                sums.add_statistics(statistics)
            sums.correct += (logits.detach().argmax(dim=1) == labels).sum()
            sums.seen += labels.numel()
            sums.steps += 1
            finite = torch.isfinite(loss)
            sums.bad_step = torch.where(finite | (sums.bad_step >= 0), sums.bad_step, step)
            reason = self._stop_reason(step)
            if reason:
                self._save(self._state(epoch, step + 1, sums))
                raise Preempted(f"[{self.name}] {reason}: checkpoint saved at epoch {epoch}, "
                                f"step {step + 1} in {self.checkpoint_path}; re-run the same command to resume",
                                self.stop.exit_code)
        return sums

    def _optimizer_settings(self) -> dict[str, float]:
        """The optimizer settings this epoch trained with (the schedule's lr, momentum (AdamW: beta1), weight
        decay)."""
        group = self.optimizer.param_groups[0]
        momentum = group["betas"][0] if "betas" in group else group["momentum"]
        return {"lr": group["lr"], "momentum": momentum, "weight_decay": group["weight_decay"]}

    def _read_epoch_stats(self, epoch: int, sums: EpochSums) -> dict[str, float]:
        """The one host sync of the epoch: read the accumulated statistics (summed over ranks), stop on a
        non-finite loss."""
        for total in (sums.loss_terms, sums.stat_terms, sums.correct, sums.seen, sums.steps):
            if total is not None:
                all_reduce_sum(total, self.dist)
        no_bad = torch.iinfo(torch.long).max
        first_bad = torch.where(sums.bad_step >= 0, sums.bad_step, no_bad)
        bad_step = int(all_reduce_min(first_bad, self.dist).item())
        bad_step = -1 if bad_step == no_bad else bad_step
        if bad_step >= 0:
            kept = (f"the last good checkpoint is kept in {self.checkpoint_path}" if self.checkpoint_path.exists()
                    else "no checkpoint was saved yet")
            raise NonFiniteLoss(f"[{self.name}] non-finite loss at epoch {epoch}, step {bad_step}; {kept} "
                                "(lower trainer.lr or check the data)")
        steps = max(float(sums.steps.item()), 1.0)
        stats = {f"train/{n}": float(v) / steps for n, v in zip(sums.names, sums.loss_terms.tolist(), strict=True)}
        stats["train/loss"] = sum(stats.values())
        stats["train/acc"] = 100.0 * float(sums.correct.item()) / max(float(sums.seen.item()), 1.0)
        if sums.stat_terms is not None:  # the distiller's step statistics, mean over the epoch's steps
            stats.update({n: float(v) / steps for n, v in zip(sums.stat_names, sums.stat_terms.tolist(), strict=True)})
        if not math.isfinite(stats["train/loss"]):
            raise NonFiniteLoss(f"[{self.name}] non-finite loss at epoch {epoch}")
        return stats

