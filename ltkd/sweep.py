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
from ltkd.errors import SWEEP_FAILED_EXIT_CODE

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
    """Prints which jobs of a sweep failed and sets the exit status."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        shutil.rmtree(Path(config.hydra.sweep.dir) / OUTCOMES_DIR, ignore_errors=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        outcomes = read_outcomes(Path(config.hydra.sweep.dir))
        failed = [o for o in outcomes if o["status"] != 0]
        print(f"sweep: {len(outcomes)} jobs, {len(outcomes) - len(failed)} succeeded, {len(failed)} failed",
              file=sys.stderr if failed else sys.stdout)
        for o in failed:
            print(f"  job {o['job']} [{' '.join(o['overrides'])}] exit {o['status']}: {o['message']}",
                  file=sys.stderr)
        if failed:
            sys.exit(SWEEP_FAILED_EXIT_CODE)
