"""The entry point: `python -m ltkd.train [overrides]` (add `-m` for a Hydra multirun sweep).

Composes configs/train.yaml, validates it, then runs the teacher and student stages in the run directory
Hydra chose. Every failure ends as one line on stderr and a documented exit status (ltkd/errors.py); in a
sweep a failed job is recorded and the sweep goes on (ltkd/sweep.py prints the summary).
"""

from __future__ import annotations

import signal
import sys

from ltkd.errors import INTERRUPTED_EXIT_CODE, PREEMPTED_EXIT_CODE


def _stop_during_start_up(signum: int, _frame: object) -> None:
    raise SystemExit(INTERRUPTED_EXIT_CODE if signum == signal.SIGINT else PREEMPTED_EXIT_CODE)


if __name__ == "__main__":  # before the slow imports: a signal during start-up exits with the stop status,
    from ltkd.deadline import mark_launch  # and trainer.time_limit counts from here

    mark_launch()
    signal.signal(signal.SIGTERM, _stop_during_start_up)
    signal.signal(signal.SIGINT, _stop_during_start_up)

import contextlib
import dataclasses
import errno
import hashlib
import os
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ltkd.config import RunConfig, load_config, unknown_key_message
from ltkd.distillers import METHODS
from ltkd.errors import (
    OUTPUT_ERROR_EXIT_CODE,
    STOPPED_EXIT_CODES,
    USER_ERROR_EXIT_CODE,
    LTKDError,
    OutputError,
    first_line,
)
from ltkd.recipes import CONFIG_DIR, experiment_loss_values
from ltkd.sweep import COMPOSITION_ERROR_KEY, composition_errors_tolerated, record_outcome

MAX_OVERRIDES_IN_NAME = 120  # longer override lists are cut and suffixed with their hash (file names <= 255)


def run_dir_name(dataset: str, imbalance: Any, teacher: str, student: str, loss: str, seed: Any,
                 overrides: str) -> str:
    """`<dataset>-g<γ>/<teacher>-<student>/<loss>/seed<seed>[,<other overrides>]`: stable per config.
    Never fails, so that a bad value is reported by the validation, not while naming the directory."""
    try:
        gamma = f"{float(imbalance):g}"
    except (TypeError, ValueError):
        gamma = str(imbalance)
    name = f"{dataset}-g{gamma}/{teacher}-{student}/{loss}/seed{seed}"
    if overrides:
        overrides = overrides.replace("/", "_")
        if len(overrides) > MAX_OVERRIDES_IN_NAME:
            digest = hashlib.sha256(overrides.encode()).hexdigest()[:12]
            overrides = f"{overrides[:MAX_OVERRIDES_IN_NAME - 14]}~{digest}"
        name += "," + overrides
    return name


OmegaConf.register_new_resolver("run_dir", run_dir_name, replace=True)


def execute(cfg: DictConfig, run_dir: Path, command: str, overrides: Sequence[str] = ()) -> tuple[int, str]:
    """Validate and run one job; returns (exit status, the one-line reason when it is not 0). A preset's
    values that skip the chosen loss (`loss_experiment_warning`) are a warning on stderr first."""
    from ltkd import pipeline
    from ltkd.deadline import job_start
    from ltkd.engine import Preempted, StopSignal

    stop = StopSignal(started=job_start())
    try:
        with stop.installed():
            run_cfg = load_config(cfg)
            warning = loss_experiment_warning(run_cfg, overrides)
            if warning:
                print(warning, file=sys.stderr)
            pipeline.run(run_cfg, run_dir, command, stop)
        return 0, ""
    except Preempted as exc:
        return exc.exit_code, str(exc)
    except (LTKDError, OSError) as exc:
        if cfg.get("debug") is True:  # not a truthy string or number: those are refused like any bad value
            raise
        error = exc if isinstance(exc, LTKDError) else OutputError.from_os_error(exc)
        return error.exit_code, f"error: {error}"


def loss_experiment_warning(cfg: RunConfig, overrides: Sequence[str]) -> str | None:
    """A warning when the command line's experiment (`overrides`: `experiment=<x>`) sets, for other losses
    (configs/loss_experiment/<x>_<loss>.yaml), a key the chosen loss has too but gets no value for from the
    experiment or the command line: e.g. `experiment=table_imagenet_lt loss=bkd` would quietly keep BKD's own
    temperature where KD gets T = 1. None when there is nothing to say."""
    pairs = [o.lstrip("+~").split("=", 1) for o in overrides if "=" in o]
    experiment = next((value for key, value in reversed(pairs) if key == "experiment"), None)
    if experiment in (None, "null"):
        return None
    name = cfg.loss.name
    values = experiment_loss_values(experiment, list(METHODS))
    given = {key.removeprefix("loss.") for key, _ in pairs if key.startswith("loss.")}
    mine = {f.name for f in dataclasses.fields(cfg.loss)} - set(values.get(name, {})) - given
    skipped = {key: sorted(loss for loss, keys in values.items() if key in keys and loss != name)
               for key in sorted(mine)}
    skipped = {key: losses for key, losses in skipped.items() if losses}
    if not skipped:
        return None
    listed = "; ".join(f"loss.{key} for {', '.join(losses)}" for key, losses in skipped.items())
    kept = ", ".join(f"loss.{key}={getattr(cfg.loss, key)}" for key in skipped)
    return (f"warning: experiment={experiment} sets {listed} (configs/loss_experiment/) but not for "
            f"loss={name}, which keeps its own {kept}; give configs/loss_experiment/{experiment}_{name}.yaml "
            "or the value on the command line")


def main(cfg: DictConfig) -> int:
    """One job. A single run exits with the job's status; a sweep's job records its outcome and returns, so
    the sweep goes on. A stop (signal, time limit) ends a sequential sweep with its status; in a parallel
    sweep every job stops and saves on its own, and `sweep.SweepSummary` sets the exit status."""
    hydra_cfg = HydraConfig.get()
    command = " ".join(["python -m ltkd.train", *hydra_cfg.overrides.task])
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        status, message = execute(cfg, run_dir, command, hydra_cfg.overrides.task)
        if status:
            print(message, file=sys.stderr)
            sys.exit(status)
        return 0
    if COMPOSITION_ERROR_KEY in cfg:  # a stand-in for a job that did not compose: its outcome is recorded
        print(cfg[COMPOSITION_ERROR_KEY], file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    try:
        status, message = execute(cfg, run_dir, command, hydra_cfg.overrides.task)
    except Exception as exc:  # a bug, or debug=true: this job failed, the others still run
        traceback.print_exc()
        status, message = 1, f"{type(exc).__name__}: {first_line(exc)}"
    if status:
        print(message, file=sys.stderr)
    record_outcome(Path(hydra_cfg.sweep.dir), hydra_cfg.job.num, list(hydra_cfg.overrides.task), run_dir,
                   status, message)
    if status in STOPPED_EXIT_CODES and not in_parallel_worker():
        sys.exit(status)  # a sequential sweep, a Slurm job (requeued)
    return status


def in_parallel_worker() -> bool:
    """Whether this job runs in a worker process of Hydra's joblib launcher (a sweep's jobs at once), where
    exiting would make joblib kill the other jobs before they save."""
    return "JoblibLauncher" in str(HydraConfig.get().launcher.get("_target_", ""))


def chosen_loss(overrides: list[str]) -> str | None:
    """`loss.name` of the config the command-line `overrides` compose, leaving out their `loss.<key>` ones
    (None when it does not compose, e.g. a sweep over losses)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    kept = [o for o in overrides if "=" in o and not o.startswith("-")
            and not o.lstrip("+~").startswith(("loss.", "hydra.", "hydra/"))]
    backup = get_gh_backup()  # a sweep still composes its other jobs after this
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return str(compose("train", overrides=kept).loss.name)
    except Exception:  # the command's own error is reported instead
        return None
    finally:
        restore_gh_from_backup(backup)


def hydra_error_line(exc: Exception, overrides: list[str] = ()) -> str:
    """One line for an error Hydra raises while composing the config (unknown option or key, bad syntax);
    an unknown `loss.<key>` is named with the keys of the loss the command-line `overrides` choose."""
    if isinstance(exc, MissingConfigException) and exc.options and exc.missing_cfg_file:
        group, _, option = exc.missing_cfg_file.rpartition("/")
        return f"{group}: unknown option '{option}'; available: {', '.join(exc.options)}"
    full_key = getattr(exc.__cause__, "full_key", None)
    if full_key and "not in struct" in str(exc.__cause__):
        loss = chosen_loss(list(overrides)) if full_key.startswith("loss.") else None
        return unknown_key_message(full_key, loss)
    lines = [first_line(e) for e in (exc, exc.__cause__) if e is not None and str(e).strip()]
    return " (".join(lines) + ")" * (len(lines) - 1)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> int:
    return main(cfg)


def cli() -> None:
    """`python -m ltkd.train`: Hydra's own errors (composition) become one line and exit status 2 too; an
    output directory Hydra cannot make (a read-only output root, a file in its place) is status 74."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let them reach us instead of Hydra's multi-line report
    debug = "debug=true" in sys.argv
    try:  # in a sweep, a job that does not compose fails alone (ltkd.sweep)
        with contextlib.nullcontext() if debug else composition_errors_tolerated(hydra_error_line):
            hydra_main()
    except (HydraException, OmegaConfBaseException, OSError) as exc:
        if debug:
            raise
        # raised before a job starts (ltkd's own writes fail inside execute); Hydra's MissingConfigException
        # is an OSError too, but a composition error
        if isinstance(exc, OSError) and not isinstance(exc, HydraException):
            line, status = output_error_line(exc), OUTPUT_ERROR_EXIT_CODE
        else:
            line, status = hydra_error_line(exc, sys.argv[1:]), USER_ERROR_EXIT_CODE
        print(f"error: {line}", file=sys.stderr)
        sys.exit(status)


def output_error_line(exc: OSError) -> str:
    """One line for a directory that could not be made: where, why, and the file in the way if there is one."""
    line = str(OutputError.from_os_error(exc))
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and exc.filename is not None:
        path = Path(os.fsdecode(exc.filename))
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            line += f" ('{blocker}' is a file, not a directory)"
    return line


if __name__ == "__main__":
    cli()
