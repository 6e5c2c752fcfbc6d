"""A sweep goes on past a failed job and says which jobs failed.

Each job records its outcome (`record_outcome`) as a file in the sweep directory, so the summary works
with any launcher (in-process, parallel processes, Slurm); the `SweepSummary` Hydra callback, in the
launching process, clears old outcomes when the sweep starts, prints the summary when it ends, and exits
with SWEEP_FAILED_EXIT_CODE when a job failed. A job whose overrides do not compose (`loss=foo` in
`loss=foo,kd`) is one of those failed jobs too (`composition_errors_tolerated`), not the end of the sweep.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from ltkd.checkpoint import atomic_write_bytes
from ltkd.errors import STOPPED_EXIT_CODES, SWEEP_FAILED_EXIT_CODE, USER_ERROR_EXIT_CODE, hydra_quoted

OUTCOMES_DIR = ".job_outcomes"
COMPOSITION_ERROR_KEY = "composition_error"  # a stand-in job's config: its job's one-line composition error


def record_outcome(sweep_dir: Path, job_num: int, overrides: list[str], run_dir: Path, status: int,
                   message: str) -> None:
    folder = sweep_dir / OUTCOMES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    outcome = {"job": job_num, "overrides": overrides, "run_dir": str(run_dir), "status": status,
               "message": message}
    atomic_write_bytes(folder / f"{job_num}.json", json.dumps(outcome).encode())


def read_outcomes(sweep_dir: Path) -> list[dict[str, Any]]:
    outcomes = []
    for path in (sweep_dir / OUTCOMES_DIR).glob("*.json"):
        try:
            outcomes.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            outcomes.append({"job": path.stem, "overrides": [], "status": -1, "message": f"unreadable: {exc}"})
    return sorted(outcomes, key=lambda o: int(o["job"]))


class SweepSummary(Callback):
    """Prints which jobs of a sweep failed or stopped, and sets the exit status: SWEEP_FAILED_EXIT_CODE when a
    job failed, else the stop status (75, or 130 for Ctrl-C) when a job stopped before finishing (a parallel
    sweep's jobs each checkpoint and return on a time limit or signal; re-running the sweep continues)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        shutil.rmtree(Path(config.hydra.sweep.dir) / OUTCOMES_DIR, ignore_errors=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        outcomes = read_outcomes(Path(config.hydra.sweep.dir))
        stopped = [o for o in outcomes if o["status"] in STOPPED_EXIT_CODES]
        failed = [o for o in outcomes if o["status"] != 0 and o not in stopped]
        done = len(outcomes) - len(failed) - len(stopped)
        print(f"sweep: {len(outcomes)} jobs, {done} succeeded, {len(failed)} failed, {len(stopped)} stopped "
              "before finishing", file=sys.stderr if failed or stopped else sys.stdout)
        for o in failed + stopped:
            print(f"  job {o['job']} [{' '.join(o['overrides'])}] exit {o['status']}: {o['message']}",
                  file=sys.stderr)
        if failed:
            sys.exit(SWEEP_FAILED_EXIT_CODE)
        if stopped:
            print("re-run the same command to continue the stopped jobs", file=sys.stderr)
            sys.exit(max(o["status"] for o in stopped))


@contextmanager
def composition_errors_tolerated(error_line: Callable[[Exception, list[str]], str]) -> Iterator[None]:
    """Within the block, Hydra's sweeper (the basic one, with every launcher of ltkd's: in-process, joblib,
    Slurm) goes on past a job whose overrides do not compose, instead of refusing the whole sweep.

    The sweeper composes each batch's jobs before launching any (`validate_batch_is_legal`); here a job
    that does not compose gets its outcome recorded (status 2, `error: <error_line(exc, overrides)>`) and is
    replaced in the batch by a stand-in that composes (the default config plus COMPOSITION_ERROR_KEY, in a
    directory under the outcomes), so the other jobs keep their numbers; `ltkd.train.main` prints the
    stand-in's line and returns without running anything, and the summary lists the job as failed. The
    method is replaced on the base class (Hydra loads its plugin modules afresh, so the BasicSweeper that
    Hydra instantiates is not the importable one) and restored after the block."""

    def validate_batch_is_legal(sweeper: Sweeper, batch: list[list[str]]) -> None:
        first = getattr(sweeper, "_ltkd_jobs_validated", 0)  # the launcher numbers jobs on from here too
        sweeper._ltkd_jobs_validated = first + len(batch)
        sweep_dir = Path(sweeper.config.hydra.sweep.dir)
        for i, overrides in enumerate(batch):
            try:
                sweeper.hydra_context.config_loader.load_sweep_config(sweeper.config, list(overrides))
            except (HydraException, OmegaConfBaseException) as exc:
                job, message = first + i, f"error: {error_line(exc, list(overrides))}"
                stand_in = f"{OUTCOMES_DIR}/uncomposed-{job}"
                record_outcome(sweep_dir, job, list(overrides), sweep_dir / stand_in, USER_ERROR_EXIT_CODE, message)
                batch[i] = [f"+{COMPOSITION_ERROR_KEY}={hydra_quoted(message)}", f"hydra.sweep.subdir={stand_in}"]

    original = Sweeper.validate_batch_is_legal
    Sweeper.validate_batch_is_legal = validate_batch_is_legal
    try:
        yield
    finally:
        Sweeper.validate_batch_is_legal = original
