"""The two stages of a run: stage 1 gives the teacher (teacher.checkpoint, the cache, or trained with CE and
cached), stage 2 distils the student from it with the configured loss."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ltkd.build import RunContext, student_distiller, teacher_distiller
from ltkd.checkpoint import load_checkpoint, save_checkpoint, sweep_stale_temps
from ltkd.distributed import barrier, broadcast_object
from ltkd.errors import CheckpointError, first_line
from ltkd.teacher_cache import TeacherCache, teacher_key
from ltkd.teacher_outputs import share_teacher_outputs


def read_teacher_file(path: Path, arch: str, num_classes: int, key: dict | None = None) -> dict[str, Any]:
    """Load a stored teacher and check it is the architecture and class count this run needs."""
    content = load_checkpoint(path, trusted=False)
    if content.get("arch") != arch or content.get("num_classes") != num_classes:
        raise CheckpointError(
            f"teacher checkpoint '{path}' holds {content.get('arch')} with {content.get('num_classes')} classes; "
            f"this run needs {arch} with {num_classes} classes"
        )
    if key is not None and content.get("key") != key:
        raise CheckpointError(f"teacher cache entry '{path}' was stored for another configuration")
    return content


def obtain_teacher(ctx: RunContext, given: dict[str, Any] | None) -> tuple[nn.Module, dict[str, Any]]:
    """The teacher from teacher.checkpoint (`given`, already read), else from the cache, else trained now
    and cached. A loaded teacher is evaluated on this run's test set; a trained one reports its last epoch. Its
    best and history are reported only when they were measured for this teacher stage (so on this test set:
    the cache key holds the test subset); a given teacher trained otherwise reports its final as its best."""
    cfg = ctx.cfg
    teacher = ctx.new_model(cfg.teacher.arch, "teacher")
    trained = False
    key = teacher_key(cfg, ctx.runtime.bf16)
    if given is not None:
        content, source = given, str(cfg.teacher.checkpoint)
    else:
        cache = TeacherCache(cfg.paths.teacher_cache, key)
        sweep_stale_temps(cache.root)  # entries and training states of jobs killed mid-write
        if broadcast_object(cache.path.exists(), ctx.dist):  # stored whole (atomic rename): no lock needed
            content = read_cached_teacher(ctx, cache)
        else:
            wait = functools.partial(ctx.stop.check, "while waiting for another job's teacher")
            # under torchrun rank 0 holds the lock for all ranks
            with cache.locked(enabled=ctx.dist.is_main, while_waiting=wait):
                if broadcast_object(cache.path.exists(), ctx.dist):
                    content = read_cached_teacher(ctx, cache)
                else:
                    content, trained = train_teacher(ctx, teacher, cache), True
                barrier(ctx.dist)
        source = str(cache.path)
    if not trained:
        _load_weights(teacher, content["state_dict"], source)
    teacher.eval()
    final = content["final"] if trained else ctx.evaluator(teacher)().as_dict()
    if content.get("key") == key:  # trained for this teacher stage: its best and history are on this test set
        best, best_epoch, history = content.get("best") or final, content.get("best_epoch"), content.get("history", [])
        best_from = "its training, on this run's test set"
    else:  # a given teacher trained for another configuration: only what was measured here
        best, best_epoch, history = final, None, []
        best_from = "this run's evaluation of it (it was trained for another configuration)"
    report = {"final": final, "best": best, "best_epoch": best_epoch, "best_from": best_from,
              "source": source, "wall_time_s": content.get("wall_time_s", 0.0), "history": history}
    return teacher, report


def read_cached_teacher(ctx: RunContext, cache: TeacherCache) -> dict[str, Any]:
    content = read_teacher_file(cache.path, ctx.cfg.teacher.arch, ctx.data.num_classes, cache.key)
    print(f"[teacher] loaded from cache {cache.path}")
    return content


def train_teacher(ctx: RunContext, teacher: nn.Module, cache: TeacherCache) -> dict[str, Any]:
    """Stage 1: cross-entropy on the long-tailed train set; the result is stored in the cache."""
    cfg = ctx.cfg
    module = teacher_distiller(ctx, teacher)
    ctx.logger.start("teacher", f"teacher-{cfg.teacher.arch}")
    result = ctx.stage("teacher", module, teacher, cfg.teacher.arch, cfg.teacher.lr, cache.training_checkpoint,
                       resume=True)
    content = {"arch": cfg.teacher.arch, "num_classes": ctx.data.num_classes, "key": cache.key,
               "state_dict": plain_state(teacher), "final": result.final.as_dict(),
               "best": result.best.as_dict(), "best_epoch": result.best_epoch, "wall_time_s": result.wall_time_s,
               "history": result.history}
    if ctx.dist.is_main:
        save_checkpoint(cache.path, content)
        cache.training_checkpoint.unlink(missing_ok=True)
    ctx.logger.summary({f"teacher/{k}": v for k, v in result.final.summary().items()})
    ctx.logger.finish()
    return content


def train_student(ctx: RunContext, teacher: nn.Module, teacher_report: dict) -> dict[str, Any]:
    """Stage 2: distil the student from the frozen teacher with the configured loss."""
    cfg = ctx.cfg
    distiller = student_distiller(ctx, teacher)
    student = distiller.student
    ctx.logger.start("student", f"{cfg.loss.name}-{cfg.student.arch}")
    ctx.logger.summary({f"teacher/{k}": v for k, v in teacher_report["final"].items() if k != "per_class"})
    stage = ctx.build_stage("student", distiller, student, cfg.student.arch, cfg.student.lr,
                            ctx.run_dir / "checkpoints" / "student.ckpt")
    share_teacher_outputs(ctx, stage, distiller)
    result = stage.run(resume=cfg.resume)
    if ctx.dist.is_main:
        save_checkpoint(ctx.run_dir / "student.pt",
                        {"arch": cfg.student.arch, "num_classes": ctx.data.num_classes,
                         "state_dict": plain_state(student), "distiller": distiller.student_state_dict()})
    ctx.logger.summary({f"student/{k}": v for k, v in result.final.summary().items()}
                       | {f"student_best/{k}": v for k, v in result.best.summary().items()})
    return {"final": result.final.as_dict(), "best": result.best.as_dict(), "best_epoch": result.best_epoch,
            "history": result.history, "wall_time_s": result.wall_time_s, "model": student}


def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict without torch.compile's prefix, on the CPU."""
    return {k.replace("_orig_mod.", ""): v.detach().cpu() for k, v in model.state_dict().items()}


def _load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"teacher weights in '{source}' do not fit the model "
                              f"({first_line(exc)})") from None
