"""Wall-clock budgets (`trainer.time_limit`): parsing "8m" / "1h30m" / "90s" / 480, and the launch time
they count from.

The budget counts from the launch of the command, shared by every process it starts: `python -m ltkd.train`
records its start in the environment variable LTKD_LAUNCH_TIME (seconds since the epoch) unless it is set
already, and the processes it spawns (a parallel multirun's workers) inherit it. A wrapper script may set it earlier so
that its own set-up counts too.
"""

from __future__ import annotations

import os
import re
import time

LAUNCH_TIME_ENV = "LTKD_LAUNCH_TIME"
# Stop this long before the deadline: the time to finish the current step, write one checkpoint (a
# second or two even for an ImageNet ResNet-50 with its optimizer state) and exit, with room to spare.
STOP_MARGIN_S = 15.0

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(value: str | float) -> float:
    """Seconds in a budget: a number of seconds, or h/m/s parts in that order ("8m", "1h30m", "90s")."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        match = _DURATION.fullmatch(text)
        if not text or match is None:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a duration") from None
        else:
            h, m, s = (float(part or 0) for part in match.groups())
            seconds = 3600 * h + 60 * m + s
    if not seconds > 0:
        raise ValueError(f"{value!r} is not a positive duration")
    return seconds


_first_job_start: float | None = None  # when this process started (mark_launch), until its first job takes it


def mark_launch() -> None:
    """Record now as the command's launch time, unless a wrapper (or a parent process) already did, and as
    the start of this process's first job."""
    global _first_job_start
    _first_job_start = time.time()
    os.environ.setdefault(LAUNCH_TIME_ENV, repr(_first_job_start))


def job_start() -> float:
    """When the job about to run started: this process's launch for its first job (imports and composing the
    config count as its start-up), now for each later one (the jobs of a sequential sweep)."""
    global _first_job_start
    start, _first_job_start = _first_job_start or time.time(), None
    return start


def deadline_for(time_limit: str | float | None) -> float | None:
    """The wall-clock instant (time.time()) at which a budget counted from the launch (or from now, when
    none was recorded) runs out."""
    if time_limit is None:
        return None
    return float(os.environ.get(LAUNCH_TIME_ENV, time.time())) + parse_duration(time_limit)
