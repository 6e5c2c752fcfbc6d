"""A run's outputs: metrics.json's content, the console tables, the per-class plot, and whether a finished
run's outputs are all present and whole."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import torch

from ltkd.build import RunContext
from ltkd.checkpoint import load_checkpoint
from ltkd.data import GROUP_NAMES
from ltkd.errors import LTKDError
from ltkd.group_mass import table_rows
from ltkd.reporting import format_table, plot_per_class
from ltkd.runtime import Runtime

OUTPUTS = ("metrics.json", "per_class_accuracy.png", "student.pt")
PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def outputs_problem(run_dir: Path) -> str | None:
    """Why the run's outputs are not all present and whole (None when they are)."""
    missing = [name for name in OUTPUTS if not (run_dir / name).is_file()]
    if missing:
        return f"{missing[0]} missing"
    try:
        json.loads((run_dir / "metrics.json").read_bytes())
    except ValueError as exc:
        return f"metrics.json is unreadable: {exc}"
    plot = (run_dir / "per_class_accuracy.png").read_bytes()
    if not (plot.startswith(PNG_START) and plot.endswith(PNG_END)):
        return "per_class_accuracy.png is not a whole PNG"
    try:
        load_checkpoint(run_dir / "student.pt", trusted=False)
    except LTKDError as exc:
        return str(exc)
    return None


COMMIT_ENV = "LTKD_COMMIT"  # the commit of a copy of the checkout without git (a lent GPU node)


def _git_commit() -> str | None:
    """HEAD's short hash, with "+dirty" when tracked files differ from it; where git or the repository is
    missing, the environment variable LTKD_COMMIT (None when unset)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=here).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = dirty = ""
    return (head + ("+dirty" if dirty else "")) if head else os.environ.get(COMMIT_ENV) or None


def assemble_metrics(ctx: RunContext, teacher: dict, student: dict, wall_time_s: float) -> dict[str, Any]:
    cfg, data = ctx.cfg, ctx.data
    return {
        "dataset": data.name,
        "imbalance_factor": data.imbalance_factor,
        "teacher_arch": cfg.teacher.arch,
        "student_arch": cfg.student.arch,
        "loss": cfg.loss.name,
        "seed": cfg.seed,
        "train_counts": list(data.train_counts),
        "groups": dict(zip(GROUP_NAMES, ctx.groups, strict=True)),
        "teacher": teacher,
        "student": student,
        "epochs": cfg.trainer.epochs,
        "max_steps_per_epoch": cfg.trainer.max_steps_per_epoch,
        "wall_time_s": wall_time_s,
        "device": _device_name(ctx.runtime),
        "commit": _git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.to_dict(),
    }


def _device_name(runtime: Runtime) -> str:
    if runtime.is_cuda:
        return torch.cuda.get_device_name(runtime.device)
    return f"cpu ({os.cpu_count()} cores)"


def finalize_outputs(ctx: RunContext, metrics: dict[str, Any]) -> None:
    """Print the head/medium/tail/overall table and save the per-class plot."""
    cfg = ctx.cfg
    objective = "" if cfg.teacher.objective == "ce" else f" ({cfg.teacher.objective})"
    rows = {f"teacher {cfg.teacher.arch}{objective}": metrics["teacher"]["final"],
            f"student {cfg.student.arch} ({cfg.loss.name})": metrics["student"]["final"]}
    print(format_table(rows, title=f"{ctx.data.name} imbalance {ctx.data.imbalance_factor:g}: final-epoch "
                                   "test accuracy (%)"))
    print(format_table(table_rows(metrics["group_mass"]), columns=GROUP_NAMES,
                       title="mean group mass (%) (definition: README, metrics.json)"))
    plot_path = ctx.run_dir / "per_class_accuracy.png"
    plot_per_class(plot_path, ctx.data.train_counts, metrics["groups"],
                   {f"teacher ({cfg.teacher.arch})": metrics["teacher"]["final"]["per_class"],
                    f"student ({cfg.student.arch}, {cfg.loss.name})": metrics["student"]["final"]["per_class"]},
                   title=f"{ctx.data.name} γ={ctx.data.imbalance_factor:g}")
    for who in ("teacher", "student"):
        ctx.logger.per_class(who, metrics[who]["final"]["per_class"], ctx.data.train_counts,
                             _group_of_class(metrics["groups"], ctx.data.num_classes),
                             image=plot_path if who == "student" else None)
    print(f"metrics: {ctx.run_dir / 'metrics.json'}\nplot: {plot_path}")


def _group_of_class(groups: dict[str, list[int]], num_classes: int) -> list[str]:
    names = [""] * num_classes
    for name, members in groups.items():
        for c in members:
            names[c] = name
    return names
