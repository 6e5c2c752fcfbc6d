"""Experiment tracking: Weights & Biases (offline without credentials) or nothing.

One W&B run per trained stage: `job_type` teacher or student, grouped by dataset, imbalance factor and
pair, tagged with the loss, so a sweep reads as one comparison in the W&B UI.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ltkd.config import LoggerConfig, RunConfig


class RunLogger(Protocol):
    def start(self, job_type: str, name: str) -> None: ...
    def log(self, metrics: dict[str, float], step: int) -> None: ...
    def summary(self, values: dict[str, Any]) -> None: ...
    def per_class(self, key: str, accuracy: Sequence[float], train_counts: Sequence[int],
                  class_to_group: Sequence[str], image: Path | None = None) -> None: ...
    def finish(self) -> None: ...


class NullLogger:
    """Logs nothing (metrics.json, the table and the plot are written regardless)."""

    def start(self, job_type: str, name: str) -> None:
        pass

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def per_class(self, key, accuracy, train_counts, class_to_group, image=None) -> None:
        pass

    def finish(self) -> None:
        pass


def has_wandb_credentials() -> bool:
    """True when an API key is in the environment or in ~/.netrc (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_mode(cfg: LoggerConfig) -> str:
    """Explicit mode, else WANDB_MODE, else online with credentials and offline without."""
    if cfg.mode != "auto":
        return cfg.mode
    return os.environ.get("WANDB_MODE") or ("online" if has_wandb_credentials() else "offline")


class WandbLogger:
    """A W&B run per stage, all sharing the config, group and tags of the job."""

    def __init__(self, run: RunConfig, run_dir: Path) -> None:
        self.cfg = run
        self.run_dir = run_dir
        self.mode = wandb_mode(run.logger)
        ds = run.dataset
        self.group = f"{ds.name}-g{ds.imbalance_factor:g}-{run.teacher.arch}-{run.student.arch}"
        self.tags = [run.loss.name, ds.name, f"g{ds.imbalance_factor:g}", *run.logger.tags]
        self._run = None

    def start(self, job_type: str, name: str) -> None:
        import wandb

        self.finish()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=self.cfg.logger.project, entity=self.cfg.logger.entity, mode=self.mode,
            dir=str(self.run_dir), group=self.group, job_type=job_type, name=name, tags=self.tags,
            config=self.cfg.to_dict(), reinit="finish_previous", settings=wandb.Settings(silent=True),
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self._run is not None:
            self._run.log({**metrics, "epoch": step})

    def summary(self, values: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.summary.update(values)

    def per_class(self, key, accuracy, train_counts, class_to_group, image=None) -> None:
        if self._run is None:
            return
        import wandb

        table = wandb.Table(columns=["class", "train_count", "group", "accuracy"],
                            data=[[c, train_counts[c], class_to_group[c], accuracy[c]] for c in range(len(accuracy))])
        charts = {f"{key}/per_class": table,
                  f"{key}/per_class_chart": wandb.plot.scatter(table, "train_count", "accuracy",
                                                               title=f"{key}: per-class accuracy")}
        if image is not None and image.exists():
            charts[f"{key}/per_class_plot"] = wandb.Image(str(image))
        self._run.log(charts)

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


def build_logger(run: RunConfig, run_dir: Path) -> RunLogger:
    return WandbLogger(run, run_dir) if run.logger.name == "wandb" else NullLogger()
