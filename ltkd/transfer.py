"""Progress that outlives a machine: a trained teacher out of the cache and back in, and what a row has
trained so far, as files small enough to bring back from a lent GPU node and carry to the next one.

    python -m ltkd.transfer teacher-path OVERRIDES...            # the teacher cache entry these overrides use
    python -m ltkd.transfer export-teacher OUT_FILE OVERRIDES... # that entry, compacted, as OUT_FILE[.000 ...]
    python -m ltkd.transfer import-teacher FILE OVERRIDES...     # a returned teacher back into the cache
    python -m ltkd.transfer progress RUNS_DIR CACHE OUT_JSON     # every run's per-epoch history so far

A returned teacher is the cache entry (weights, final/best accuracy, per-epoch history, the cache key) with
its convolution weights in bf16 when the teacher was trained under bf16 autocast: those are exactly the
values autocast computes with, so a student distilled from the returned teacher, and the teacher's own
evaluation (bf16 body, float32 head: `ltkd.evaluation.fp32_logits`), are the same as from the original;
everything else stays float32. It is checksummed (`ltkd.checkpoint`) and split into parts of at most
PART_BYTES. Importing checks that it was trained for the configuration the overrides give (the same
cache key), so the students' runs keep the identity they have when the teacher was trained in place.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import torch

from ltkd.checkpoint import atomic_write_bytes, load_checkpoint, read_checkpoint, save_checkpoint, write_checkpoint
from ltkd.errors import CheckpointError, LTKDError
from ltkd.teacher_cache import TeacherCache, teacher_key

RETURNED_FORMAT = "ltkd-returned-teacher-v1"
PART_BYTES = 15 * 2**20  # a lent node returns files of at most 16 MiB


def teacher_cache_for(overrides: list[str]) -> TeacherCache:
    """The teacher cache entry of the run that `overrides` compose (train.yaml + overrides)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ltkd.config import load_config
    from ltkd.recipes import CONFIG_DIR
    from ltkd.runtime import resolve_runtime

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = load_config(compose("train", overrides=overrides))
    return TeacherCache(cfg.paths.teacher_cache, teacher_key(cfg, resolve_runtime(cfg.trainer).bf16))


def compact_state(state: dict[str, torch.Tensor], bf16: bool) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(`state` with its convolution weights (4-D float tensors) in bf16 when `bf16`, their names)."""
    names = [k for k, v in state.items() if bf16 and v.dim() == 4 and v.dtype == torch.float32]
    return {k: v.to(torch.bfloat16) if k in names else v for k, v in state.items()}, names


def export_teacher(cache: TeacherCache, out: Path) -> list[Path]:
    """Write the cache entry of `cache` as a returned teacher: `out`, or `out.000`, `out.001`, ... when it is
    larger than PART_BYTES. Returns the files written."""
    entry = load_checkpoint(cache.path, trusted=False)
    state, bf16_names = compact_state(entry["state_dict"], bool(cache.key["bf16"]))
    buffer = io.BytesIO()
    write_checkpoint(buffer, {"format": RETURNED_FORMAT, "entry": {**entry, "state_dict": state},
                              "bf16": bf16_names})
    data = buffer.getvalue()
    if len(data) <= PART_BYTES:
        atomic_write_bytes(out, data)
        return [out]
    parts = [out.with_name(f"{out.name}.{i:03d}") for i in range((len(data) + PART_BYTES - 1) // PART_BYTES)]
    for i, part in enumerate(parts):
        atomic_write_bytes(part, data[i * PART_BYTES:(i + 1) * PART_BYTES])
    return parts


def read_returned(path: Path) -> dict[str, Any]:
    """A returned teacher's cache entry (float32 again), from `path` or its parts `path.000`, ... ."""
    parts = sorted(path.parent.glob(f"{path.name}.[0-9][0-9][0-9]"))
    if not path.is_file() and parts:
        content = read_checkpoint(b"".join(p.read_bytes() for p in parts), f"{path}.000...", trusted=False)
    else:
        content = load_checkpoint(path, trusted=False)
    if content.get("format") != RETURNED_FORMAT:
        raise CheckpointError(f"'{path}' is not a returned teacher (format {RETURNED_FORMAT} expected)")
    entry, names = content["entry"], set(content["bf16"])
    entry["state_dict"] = {k: v.float() if k in names else v for k, v in entry["state_dict"].items()}
    return entry


def import_teacher(path: Path, cache: TeacherCache) -> bool:
    """Put the returned teacher at `path` into `cache` (False: the cache has its entry already)."""
    if cache.path.exists():
        return False
    entry = read_returned(path)
    if entry.get("key") != cache.key:
        raise CheckpointError(f"returned teacher '{path}' was trained for another configuration than this "
                              f"run's teacher ({cache.name})")
    save_checkpoint(cache.path, entry)
    return True


def stage_progress(state: dict[str, Any]) -> dict[str, Any]:
    """What a stage checkpoint says about its progress."""
    return {"status": "partial", "next_epoch": state["next_epoch"], "skip_steps": state["skip_steps"],
            "history": state["tracker"]["history"], "wall_time_s": state["tracker"]["wall"]}


def read_progress(runs_dir: Path, cache_dir: Path) -> dict[str, Any]:
    """Every run's per-epoch history so far under `runs_dir` (finished: metrics.json; else its checkpoint),
    and every teacher's in `cache_dir` (cached entries and training checkpoints)."""
    runs: dict[str, Any] = {}
    for run_dir in sorted({p.parent for p in runs_dir.rglob("config.yaml")}):
        name = str(run_dir.relative_to(runs_dir))
        metrics, checkpoint = run_dir / "metrics.json", run_dir / "checkpoints" / "student.ckpt"
        try:
            if metrics.is_file():
                m = json.loads(metrics.read_text())
                runs[name] = {"status": "done", "history": m["student"]["history"],
                              "wall_time_s": m["student"]["wall_time_s"]}
            elif checkpoint.is_file():
                runs[name] = stage_progress(load_checkpoint(checkpoint))
            else:
                runs[name] = {"status": "not started"}
        except (LTKDError, OSError, ValueError, KeyError) as exc:
            runs[name] = {"status": f"unreadable: {exc}"}
    teachers: dict[str, Any] = {}
    for path in sorted(cache_dir.glob("*.pt")) + sorted(cache_dir.glob("*.ckpt")):
        try:
            content = load_checkpoint(path, trusted=path.suffix == ".ckpt")
            teachers[path.name] = (stage_progress(content) if path.suffix == ".ckpt" else
                                   {"status": "done", "history": content.get("history", []),
                                    "wall_time_s": content.get("wall_time_s")})
        except LTKDError as exc:
            teachers[path.name] = {"status": f"unreadable: {exc}"}
    return {"runs": runs, "teachers": teachers}


def main(argv: list[str]) -> int:
    command, *args = argv or ["help"]
    try:
        if command == "teacher-path":
            print(teacher_cache_for(args).path)
        elif command == "export-teacher":
            files = export_teacher(teacher_cache_for(args[1:]), Path(args[0]))
            print("returned teacher:", " ".join(f"{f} ({f.stat().st_size / 2**20:.1f} MiB)" for f in files))
        elif command == "import-teacher":
            cache = teacher_cache_for(args[1:])
            done = import_teacher(Path(args[0]), cache)
            print(f"teacher {'imported into' if done else 'already in'} the cache: {cache.path}")
        elif command == "progress":
            progress = read_progress(Path(args[0]), Path(args[1]))
            atomic_write_bytes(Path(args[2]), (json.dumps(progress, indent=1) + "\n").encode())
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except LTKDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
