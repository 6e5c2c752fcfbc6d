"""Checkpoint files: round trip, atomic replacement, corruption and truncation detected."""

import errno
import hashlib
import io
import os
from pathlib import Path

import pytest
import torch

from ltkd import checkpoint
from ltkd.checkpoint import load_checkpoint, save_checkpoint
from ltkd.errors import CheckpointError, OutputError
from tests.helpers import plant_temps


def test_round_trip_preserves_tensors_and_python_state(tmp_path: Path):
    content = {"w": torch.arange(6.0).reshape(2, 3), "epoch": 3, "rng": (1, [2, 3]), "name": "student"}
    save_checkpoint(tmp_path / "a.ckpt", content)
    loaded = load_checkpoint(tmp_path / "a.ckpt")
    assert torch.equal(loaded["w"], content["w"])
    assert loaded["epoch"] == 3 and loaded["rng"] == (1, [2, 3]) and loaded["name"] == "student"


def test_truncated_file_is_reported(tmp_path: Path):
    path = tmp_path / "a.ckpt"
    save_checkpoint(path, {"w": torch.randn(100)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated|corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("where", ["tensor", "number"])
def test_altered_content_fails_the_checksum(where: str, tmp_path: Path):
    path = tmp_path / "a.ckpt"
    save_checkpoint(path, {"w": torch.zeros(1000), "epoch": 3})
    envelope = torch.load(path, weights_only=True)
    if where == "tensor":
        envelope["content"]["w"][500] = 1.0
    else:
        envelope["content"]["epoch"] = 4
    torch.save(envelope, path)
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_the_content_is_stored_once_and_loads_weights_only(tmp_path: Path):
    weights = {"w": torch.randn(1 << 20), "b": torch.randn(1 << 18, dtype=torch.bfloat16)}  # 4.5 MiB of tensors
    path = tmp_path / "a.ckpt"
    save_checkpoint(path, {"state_dict": weights, "history": [{"epoch": 1, "acc": 0.5}]})
    tensor_bytes = sum(t.numel() * t.element_size() for t in weights.values())
    assert path.stat().st_size < tensor_bytes + 64 * 1024  # not pickled twice
    raw = torch.load(path, weights_only=True)  # a plain torch file, loadable without ltkd
    assert torch.equal(raw["content"]["state_dict"]["b"], weights["b"])
    loaded = load_checkpoint(path, trusted=False)
    assert loaded["history"] == [{"epoch": 1, "acc": 0.5}] and torch.equal(loaded["state_dict"]["w"], weights["w"])


def _legacy_file(path: Path, content: dict, payload_edit=lambda b: b) -> None:
    """A checkpoint in the first format (content's torch.save bytes, pickled again with their SHA-256)."""
    buffer = io.BytesIO()
    torch.save(content, buffer)
    payload = buffer.getvalue()
    torch.save({"format": "ltkd-checkpoint-v1", "sha256": hashlib.sha256(payload).hexdigest(),
                "payload": payload_edit(payload)}, path)


def test_first_format_files_are_still_read_and_checked(tmp_path: Path):
    _legacy_file(tmp_path / "old.ckpt", {"w": torch.arange(4.0), "epoch": 7})
    loaded = load_checkpoint(tmp_path / "old.ckpt", trusted=False)
    assert loaded["epoch"] == 7 and torch.equal(loaded["w"], torch.arange(4.0))

    def flip(payload: bytes) -> bytes:
        changed = bytearray(payload)
        changed[len(changed) // 2] ^= 0xFF
        return bytes(changed)

    _legacy_file(tmp_path / "bad.ckpt", {"w": torch.zeros(1000)}, flip)
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(tmp_path / "bad.ckpt")


def test_foreign_file_is_not_a_checkpoint(tmp_path: Path):
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not an ltkd checkpoint"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_disk_full_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch):
    path = tmp_path / "a.ckpt"
    save_checkpoint(path, {"epoch": 1})

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", full_disk)
    with pytest.raises(OutputError, match=r"cannot write '.*a\.ckpt': No space left on device"):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]  # no temporary file left behind


def test_untrusted_load_refuses_arbitrary_objects(tmp_path: Path):
    path = tmp_path / "a.ckpt"
    save_checkpoint(path, {"obj": Path("x")})
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(path, trusted=False)
    assert load_checkpoint(path, trusted=True)["obj"] == Path("x")


def test_flipped_bit_in_the_header_is_reported_as_corrupt(tmp_path: Path):
    path = tmp_path / "a.ckpt"
    save_checkpoint(path, {"w": torch.zeros(10)})
    data = bytearray(path.read_bytes())
    data[data.index(b"sha256") + 5] ^= 0x01  # the envelope's key becomes "sha257"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_get_the_mode_the_umask_gives(umask: int, tmp_path: Path):
    previous = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "a.ckpt", {"epoch": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "a.ckpt").stat().st_mode & 0o777 == 0o666 & ~umask  # readable by the group sharing a cache


def test_unreadable_file_is_reported_as_unreadable_not_truncated(tmp_path: Path, monkeypatch):
    path = tmp_path / "a.ckpt"
    save_checkpoint(path, {"epoch": 1})

    def denied(self: Path) -> bytes:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # as another user without read access would see it
    with pytest.raises(CheckpointError, match="cannot be read: Permission denied") as info:
        load_checkpoint(path)
    assert "truncated" not in str(info.value)


def test_old_temps_are_swept_fresh_ones_and_real_files_stay(tmp_path: Path):
    old = plant_temps(tmp_path, "student.ckpt", "cifar100_lt-g100-resnet8-seed0-0123abcd.pt", "config.yaml",
                      age_s=checkpoint.STALE_TEMP_AGE_S + 60)
    fresh = plant_temps(tmp_path, "teacher.pt", age_s=10)  # a live writer's (another job sharing the cache)
    real = [tmp_path / "student.ckpt", tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / ".x.tmp"]
    for path in real:
        path.write_bytes(b"keep")
        os.utime(path, (0, 0))
    nested = plant_temps(tmp_path / "sub", "a.pt", age_s=checkpoint.STALE_TEMP_AGE_S + 60)
    assert sorted(checkpoint.sweep_stale_temps(tmp_path)) == sorted(old)
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in fresh + real + nested)
    assert checkpoint.sweep_stale_temps(tmp_path / "missing") == []


def test_the_temp_name_convention_is_what_atomic_write_makes(tmp_path: Path):
    target, seen = tmp_path / "student.ckpt", []
    checkpoint.atomic_write(target, lambda f: seen.extend(tmp_path.glob(checkpoint.temp_pattern(target))))
    assert len(seen) == 1 and list(tmp_path.glob(checkpoint.temp_pattern())) == []
    assert seen[0].name.startswith(".student.ckpt.") and seen[0].name.endswith(checkpoint.TEMP_SUFFIX)
    assert seen[0].match(checkpoint.temp_pattern())
