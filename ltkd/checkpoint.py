"""Checksummed, atomically written checkpoint files.

A file holds `{"format", "sha256", "payload"}` where `payload` is the `torch.save` bytes of the real
content. It is written to a temporary file in the same directory, fsynced and renamed over the
target, so a kill or a full disk at any instant leaves either the old or the new file, never a mix;
a truncated or altered file fails its checksum and is reported, never used.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ltkd.errors import CheckpointError, OutputError, first_line

FORMAT = "ltkd-checkpoint-v1"


def save_checkpoint(path: str | Path, content: dict[str, Any]) -> None:
    """Write `content` to `path` atomically with a checksum."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(content, buffer)
    payload = buffer.getvalue()
    envelope = io.BytesIO()
    torch.save({"format": FORMAT, "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload}, envelope)
    atomic_write_bytes(path, envelope.getvalue())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes via temp file + fsync + rename, with the mode the umask gives a new file; on any error
    the old file stays, the temp goes, and OutputError names the file."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError.from_os_error(exc, path) from exc
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would keep a shared cache from other users
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError.from_os_error(exc, path) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_checkpoint(path: str | Path, *, trusted: bool = True) -> dict[str, Any]:
    """Read and verify a checkpoint; raises CheckpointError naming the file on any defect.

    `trusted=False` (a file the user points at) refuses pickled objects beyond tensors and containers.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint '{path}' cannot be read: {exc.strerror or exc}") from None
    try:
        envelope = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint '{path}' is truncated or not an ltkd checkpoint ({first_line(exc)})"
        ) from None
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint '{path}' is not an ltkd checkpoint (format {FORMAT} expected)")
    payload, digest = envelope.get("payload"), envelope.get("sha256")
    if not isinstance(payload, bytes) or not isinstance(digest, str) or hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"checkpoint '{path}' is corrupt: its checksum does not match its content")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=not trusted)
    except Exception as exc:
        raise CheckpointError(f"checkpoint '{path}' could not be read ({first_line(exc)})") from None
