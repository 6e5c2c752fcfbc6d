"""A sweep goes on past a failed job and says which jobs failed.

Each job records its outcome (`record_outcome`) as a file in the sweep directory, so the summary works
with any launcher (in-process, parallel processes, Slurm); the `SweepSummary` Hydra callback, in the
launching process, clears old outcomes when the sweep starts, prints the summary when it ends, and exits
with SWEEP_FAILED_EXIT_CODE when a job failed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ltkd.checkpoint import atomic_write_bytes
from ltkd.errors import STOPPED_EXIT_CODES, SWEEP_FAILED_EXIT_CODE

OUTCOMES_DIR = ".job_outcomes"


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
