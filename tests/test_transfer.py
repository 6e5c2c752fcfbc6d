"""A teacher returned from a lent GPU node (ltkd.transfer): compacted without changing what autocast
computes, split into parts that come back, and imported only for the configuration it was trained for."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ltkd import transfer
from ltkd.checkpoint import load_checkpoint, save_checkpoint
from ltkd.errors import CheckpointError
from ltkd.models import create_model
from ltkd.teacher_cache import TeacherCache


def _key(bf16: bool, seed: int = 0) -> dict:
    return {"format": "test", "dataset": "cifar100_lt", "imbalance_factor": 100, "arch": "resnet8", "seed": seed,
            "bf16": bf16}


def _cache_with_teacher(root: Path, bf16: bool) -> TeacherCache:
    torch.manual_seed(0)
    cache = TeacherCache(root, _key(bf16))
    root.mkdir(parents=True, exist_ok=True)
    state = create_model("resnet8", num_classes=100).state_dict()
    save_checkpoint(cache.path, {"state_dict": state, "key": cache.key, "final": {"overall": 1.0},
                                 "history": [{"epoch": 1}]})
    return cache


def test_a_bf16_teacher_returns_with_the_weights_autocast_computes_with(tmp_path: Path):
    cache = _cache_with_teacher(tmp_path / "gpu", bf16=True)
    files = transfer.export_teacher(cache, tmp_path / "teacher.pt")
    entry = transfer.read_returned(tmp_path / "teacher.pt")
    original = load_checkpoint(cache.path, trusted=False)["state_dict"]
    assert files == [tmp_path / "teacher.pt"] and entry["history"] == [{"epoch": 1}]
    for name, value in entry["state_dict"].items():
        assert value.dtype == original[name].dtype, name
        expected = original[name].to(torch.bfloat16).float() if value.dim() == 4 else original[name]
        assert torch.equal(value, expected), name
    models = [create_model("resnet8", num_classes=100).eval() for _ in range(2)]
    models[0].load_state_dict(original)
    models[1].load_state_dict(entry["state_dict"])
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(models[0](images)[1]["pooled_feat"], models[1](images)[1]["pooled_feat"])


def test_an_fp32_teacher_returns_unchanged_in_parts_and_imports_once(tmp_path: Path, monkeypatch):
    cache = _cache_with_teacher(tmp_path / "gpu", bf16=False)
    monkeypatch.setattr(transfer, "PART_BYTES", 100_000)
    files = transfer.export_teacher(cache, tmp_path / "teacher.pt")
    assert len(files) > 2 and all(f.stat().st_size <= 100_000 for f in files)
    assert files[0].name == "teacher.pt.000" and not (tmp_path / "teacher.pt").exists()
    target = TeacherCache(tmp_path / "next", cache.key)
    target.root.mkdir()
    assert transfer.import_teacher(tmp_path / "teacher.pt", target)
    assert not transfer.import_teacher(tmp_path / "teacher.pt", target)  # the entry is there already
    imported, original = (load_checkpoint(p, trusted=False)["state_dict"] for p in (target.path, cache.path))
    assert imported.keys() == original.keys() and all(torch.equal(imported[k], original[k]) for k in original)


def test_a_returned_teacher_of_another_configuration_or_damaged_is_refused(tmp_path: Path, monkeypatch):
    cache = _cache_with_teacher(tmp_path / "gpu", bf16=False)
    monkeypatch.setattr(transfer, "PART_BYTES", 100_000)
    files = transfer.export_teacher(cache, tmp_path / "teacher.pt")
    other = TeacherCache(tmp_path / "other", _key(bf16=False, seed=1))
    other.root.mkdir()
    with pytest.raises(CheckpointError, match="trained for another configuration"):
        transfer.import_teacher(tmp_path / "teacher.pt", other)
    files[-1].unlink()  # a part that did not come back
    with pytest.raises(CheckpointError, match=r"teacher\.pt"):
        transfer.import_teacher(tmp_path / "teacher.pt", TeacherCache(tmp_path / "third", cache.key))
    assert not other.path.exists()
