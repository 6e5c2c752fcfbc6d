"""User-facing errors and the exit statuses of `python -m ltkd.train` (one place for each)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

USER_ERROR_EXIT_CODE = 2  # a bad config value, dataset, checkpoint or run directory
OUTPUT_ERROR_EXIT_CODE = 74  # EX_IOERR: an output could not be written (full disk, read-only directory)
PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: SIGTERM/SIGUSR1 or trainer.time_limit, a checkpoint was saved; re-run to resume
INTERRUPTED_EXIT_CODE = 130  # Ctrl-C (SIGINT), a checkpoint was saved as for a preemption
STOPPED_EXIT_CODES = (PREEMPTED_EXIT_CODE, INTERRUPTED_EXIT_CODE)  # stopped, not failed: re-running continues
SWEEP_FAILED_EXIT_CODE = 1  # a sweep finished, but some of its jobs failed (its summary lists them)


class LTKDError(Exception):
    """An error caused by the user's input (config, data, checkpoint), reported as one line.

    Raised in a DataLoader worker (a corrupt image file), it reaches the main process as the same type,
    made by torch from one string: "Caught DataError in DataLoader worker process 0.", the worker's whole
    traceback, then "ltkd.errors.DataError: <message>". The error keeps only that message, so it is still
    one line naming the file."""

    exit_code = USER_ERROR_EXIT_CODE

    def __init__(self, message: object = "") -> None:
        super().__init__(_unwrapped(type(self), message))


_WORKER_WRAPPED = re.compile(r"\ACaught \w+ in [^\n]*\.\nOriginal Traceback")  # torch's ExceptionWrapper.reraise


def _unwrapped(error_type: type, message: object) -> object:
    """The original message of `error_type` in a message torch re-raised from a worker; else `message`."""
    if not isinstance(message, str) or not _WORKER_WRAPPED.match(message):
        return message
    _, found, original = message.rpartition(f"\n{error_type.__module__}.{error_type.__qualname__}: ")
    return original.strip() if found else message


class ConfigError(LTKDError):
    """A config value is invalid: the message names the field, the value and what is allowed."""


def _os_error_line(verb: str, exc: OSError, path: object) -> str:
    """'cannot <verb> '<where>': <why>' for an OSError (`path` when the error does not name it)."""
    where = exc.filename if exc.filename is not None else path
    return f"cannot {verb} '{where}': {exc.strerror or exc}"


class DataError(LTKDError):
    """A dataset is missing, incomplete or corrupt: the message names the path and the expected layout."""

    @classmethod
    def from_os_error(cls, exc: OSError, path: object = None) -> DataError:
        """One line from an OSError while reading input (a directory where a file belongs, no permission):
        the input's fault, status 2, unlike `OutputError`'s writes."""
        return cls(_os_error_line("read", exc, path))


class CheckpointError(LTKDError):
    """A checkpoint is missing, truncated, corrupt or does not match the run."""


class MethodError(LTKDError):
    """A method's code (e.g. a plug-in's distiller) fails the check step run before any training."""


class OutputError(LTKDError):
    """A file could not be written (no space left, read-only directory); what was written before is intact."""

    exit_code = OUTPUT_ERROR_EXIT_CODE

    @classmethod
    def from_os_error(cls, exc: OSError, path: object = None) -> OutputError:
        """One line from an OSError: what failed and where (`path` when the error does not name it)."""
        return cls(_os_error_line("write", exc, path))


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """`exc` as 'Type: message' on one line, for embedding in an error message."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}".rstrip(": ")


def hydra_quoted(value: object) -> str:
    """`value` as a quoted Hydra override value that Hydra reads back as exactly that string (`=`, `,`,
    quotes, brackets, backslashes, `${`: no interpolation)."""
    text = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', str(value))  # Hydra: \" and \\ before "
    text = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text).replace("${", "\\${")
    return f'"{text}"'


def run_dir_override(run_dir: str | Path) -> str:
    """`hydra.run.dir=<run_dir>` as a user can paste it into a shell command line: the value in Hydra's
    double quotes (a run directory's name holds `=` and `,`, which Hydra would otherwise parse), the whole
    in the shell's quotes. Every message that tells the user to re-run with a run directory uses it."""
    return shlex.quote(f"hydra.run.dir={hydra_quoted(run_dir)}")
