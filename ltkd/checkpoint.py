"""Checksummed, atomically written checkpoint files.

A file is one `torch.save` of `{"format", "sha256", "content"}`: the content pickled once, beside the SHA-256
of its canonical form (`content_digest`: every tensor's dtype, shape and bytes, every other value's type
and repr, in order), so the file is no bigger than its tensors and loads with `weights_only=True` where
the content allows. It is written to a temporary file in the same directory, fsynced and renamed over
the target, so a kill or a full disk at any instant leaves either the old or the new file, never a mix;
a truncated or altered file fails to load or fails its checksum and is reported, never used. A temp file
left by a writer killed outright (SIGKILL, OOM) is removed by `sweep_stale_temps` when the next run opens
that directory. Files of the first format (`{"format", "sha256", "payload"}`, the content's `torch.save`
bytes pickled again) are still read.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ltkd.errors import CheckpointError, OutputError, first_line

FORMAT = "ltkd-checkpoint-v2"
LEGACY_FORMAT = "ltkd-checkpoint-v1"  # {"format", "sha256", "payload": torch.save bytes of the content}
TEMP_SUFFIX = ".tmp"  # atomic_write's temp for `<dir>/<name>` is `<dir>/.<name>.<random>.tmp`
STALE_TEMP_AGE_S = 3600.0  # a temp untouched this long has no live writer (see sweep_stale_temps)


def save_checkpoint(path: str | Path, content: dict[str, Any]) -> None:
    """Write `content` to `path` atomically with a checksum."""
    atomic_write(Path(path), lambda f: write_checkpoint(f, content))


def write_checkpoint(file: BinaryIO, content: dict[str, Any]) -> None:
    """`content` with its checksum into an open binary file (a checkpoint file's bytes)."""
    torch.save({"format": FORMAT, "sha256": content_digest(content), "content": content}, file)


def content_digest(content: Any) -> str:
    """SHA-256 of `content`'s canonical form: containers in order with their types and lengths, tensors and
    numpy arrays by dtype, shape and bytes, any other value by its type and repr."""
    digest = hashlib.sha256()
    _digest_into(digest, content)
    return digest.hexdigest()


def _digest_into(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor:{flat.dtype}:{tuple(value.shape)}:".encode())
        digest.update(memoryview(flat.view(torch.uint8).numpy()))
    elif isinstance(value, np.ndarray):
        digest.update(f"ndarray:{value.dtype}:{value.shape}:".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict):
        digest.update(f"{type(value).__name__}:{len(value)}:".encode())
        for key, item in value.items():
            _digest_into(digest, key)
            _digest_into(digest, item)
    elif isinstance(value, list | tuple):
        digest.update(f"{type(value).__name__}:{len(value)}:".encode())
        for item in value:
            _digest_into(digest, item)
    elif isinstance(value, bytes):
        digest.update(f"bytes:{len(value)}:".encode() + value)
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically (`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def temp_prefix(target: Path) -> str:
    """The start of the names of `target`'s temp files (they end with TEMP_SUFFIX)."""
    return f".{target.name}."


def temp_pattern(target: Path | None = None) -> str:
    """A glob of the temp files of `target` in its directory; without `target`, of any file's temps."""
    prefix = ".?*." if target is None else glob.escape(temp_prefix(target))
    return f"{prefix}*{TEMP_SUFFIX}"


def sweep_stale_temps(directory: Path, max_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Remove the temp files `atomic_write` left in `directory` (not below it) that were not modified for
    `max_age_s`; returns the removed paths. Nothing else is touched, and a missing or read-only directory is
    left alone.

    Why by age: a writer writes its temp in one go (write, flush, fsync, rename, within seconds even for
    the largest checkpoint), so its modification time is always recent while it is alive; a temp an hour
    old is one whose writer died (SIGKILL) before the rename. Another process writing into a shared
    teacher cache, or another rank of the same run, is never hurt, and no lock is needed (which a
    read-only or NFS cache could not take)."""
    removed = []
    now = time.time()
    try:
        candidates = list(Path(directory).glob(temp_pattern()))
    except OSError:
        return removed
    for path in candidates:
        try:
            if path.is_file() and now - path.stat().st_mtime > max_age_s:
                path.unlink()
                removed.append(path)
        except OSError:  # gone meanwhile, or no permission: not ours to remove
            continue
    return removed


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(file)` into a temp file beside `path`, then fsync + rename, with the mode the umask gives a new
    file; on any error the old file stays, the temp goes, and OutputError names the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise OutputError.from_os_error(exc, path) from exc
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would keep a shared cache from other users
        with os.fdopen(fd, "wb") as f:
            write(f)
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
    return read_checkpoint(raw, path, trusted=trusted)


def read_checkpoint(raw: bytes, path: str | Path, *, trusted: bool = True) -> dict[str, Any]:
    """The verified content of a checkpoint file's bytes `raw` (`path`: what messages name it)."""
    try:
        envelope = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=not trusted)
    except Exception as exc:
        if not trusted and "Weights only load failed" in str(exc):
            raise CheckpointError(f"checkpoint '{path}' could not be read ({first_line(exc)})") from None
        raise CheckpointError(
            f"checkpoint '{path}' is truncated or not an ltkd checkpoint ({first_line(exc)})"
        ) from None
    if not isinstance(envelope, dict) or envelope.get("format") not in (FORMAT, LEGACY_FORMAT):
        raise CheckpointError(f"checkpoint '{path}' is not an ltkd checkpoint (format {FORMAT} expected)")
    if envelope["format"] == LEGACY_FORMAT:
        return _load_legacy(path, envelope, trusted)
    content, digest = envelope.get("content"), envelope.get("sha256")
    if not isinstance(digest, str) or content_digest(content) != digest:
        raise CheckpointError(f"checkpoint '{path}' is corrupt: its checksum does not match its content")
    return content


def _load_legacy(path: Path, envelope: dict[str, Any], trusted: bool) -> dict[str, Any]:
    """The content of a first-format file (its payload: the content's torch.save bytes)."""
    payload, digest = envelope.get("payload"), envelope.get("sha256")
    if not isinstance(payload, bytes) or not isinstance(digest, str) or hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"checkpoint '{path}' is corrupt: its checksum does not match its content")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=not trusted)
    except Exception as exc:
        raise CheckpointError(f"checkpoint '{path}' could not be read ({first_line(exc)})") from None
