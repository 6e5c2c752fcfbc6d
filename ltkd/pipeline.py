"""A run: the long-tailed data, stage 1 (teacher, from the cache or trained with CE), stage 2 (the
student with the chosen loss), then metrics.json, the console table and the per-class plot."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from ltkd.build import RunContext, build_context, load_data, student_distiller, teacher_distiller
from ltkd.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from ltkd.config import RunConfig, run_identity
from ltkd.data import GROUP_NAMES
from ltkd.deadline import deadline_for
from ltkd.distributed import barrier, broadcast_object, init_from_env, place_on_local_device
from ltkd.engine import StopSignal
from ltkd.errors import CheckpointError, ConfigError, LTKDError, first_line
from ltkd.group_mass import flatten, table_rows
from ltkd.loggers import NullLogger, build_logger
from ltkd.reporting import format_table, plot_per_class
from ltkd.runtime import Runtime, resolve_runtime, seed_everything
from ltkd.teacher_cache import TeacherCache, teacher_key
from ltkd.teacher_outputs import share_teacher_outputs

__all__ = ["RunContext", "load_data", "run", "student_distiller", "teacher_distiller"]  # the builder's, re-exported


def run(cfg: RunConfig, run_dir: Path, command: str = "", stop: StopSignal | None = None) -> dict[str, Any]:
    """Run (or resume, or report) one teacher -> student experiment; returns the metrics dict.

    With `resume`, a run directory holding another config's run is refused, and a finished run is reported
    as complete only when all its outputs are whole (otherwise they are made again from its checkpoints)."""
    stop = stop or StopSignal()
    metrics_path = run_dir / "metrics.json"
    if cfg.resume:
        check_same_identity(cfg, run_dir)
        problem = outputs_problem(run_dir)
        if problem is None:
            print(f"run complete: {metrics_path} exists (resume=false retrains)")
            return json.loads(metrics_path.read_text())
        if metrics_path.exists():
            print(f"run outputs incomplete ({problem}); finishing the run from its checkpoints")
    given_teacher = None  # read (and checked) before any work
    if cfg.teacher.checkpoint is not None:
        given_teacher = read_teacher_file(Path(cfg.teacher.checkpoint), cfg.teacher.arch, cfg.dataset.num_classes)
    started = time.perf_counter()
    runtime = resolve_runtime(cfg.trainer)
    dist_info = init_from_env(runtime.device.type)
    if dist_info.enabled:
        runtime = place_on_local_device(runtime, dist_info)
        if cfg.trainer.batch_size % dist_info.world_size:
            raise ConfigError(f"trainer.batch_size: {cfg.trainer.batch_size} is the global batch; it must be "
                              f"divisible by the number of processes ({dist_info.world_size})")
    seed_everything(cfg.seed, cfg.deterministic)
    data = load_data(cfg)
    if cfg.trainer.batch_size > len(data.train):
        raise ConfigError(f"trainer.batch_size: {cfg.trainer.batch_size} exceeds the {len(data.train)} training "
                          f"images of {data.name} (γ={data.imbalance_factor:g}); must be <= {len(data.train)}")
    main = dist_info.is_main
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.yaml", OmegaConf.to_yaml(cfg.to_dict()).encode())
    stop.deadline = deadline_for(cfg.trainer.time_limit)
    if not dist_info.enabled:  # under torchrun the ranks agree on stopping inside the step loop
        stop.check("during start-up")
    logger = build_logger(cfg, run_dir) if main else NullLogger()
    ctx = build_context(cfg, run_dir, data=data, runtime=runtime, logger=logger, stop=stop, dist=dist_info)
    try:
        with ctx.stop.installed():
            teacher, teacher_report = obtain_teacher(ctx, given_teacher)
            student_report = train_student(ctx, teacher, teacher_report)
        group_mass = ctx.group_mass({"teacher": teacher, "student": student_report.pop("model")})
        ctx.logger.summary({f"group_mass/{who} {key}": value for who in ("teacher", "student")
                            for key, value in flatten(group_mass, who).items()})
        metrics = assemble_metrics(ctx, teacher_report, student_report, time.perf_counter() - started)
        metrics["group_mass"] = group_mass
        metrics["command"] = command
        if main:
            finalize_outputs(ctx, metrics)
            atomic_write_bytes(metrics_path, (json.dumps(metrics, indent=1) + "\n").encode())  # last: marks done
    finally:
        ctx.logger.finish()
    barrier(dist_info)
    return metrics


def check_same_identity(cfg: RunConfig, run_dir: Path) -> None:
    """Refuse to resume or report a run directory whose stored config differs from `cfg` in a field that
    changes results (`config.run_identity`); names the differing fields, stored vs now."""
    stored_path = run_dir / "config.yaml"
    if not stored_path.exists():
        return
    try:
        stored = OmegaConf.to_container(OmegaConf.load(stored_path))
    except Exception as exc:
        raise ConfigError(f"{stored_path} is unreadable ({first_line(exc)}); "
                          "resume=false starts this run directory over") from None
    now = run_identity(cfg.to_dict())
    # before each method had its own loss config, every run stored every method's keys: those the run's
    # method does not have never changed its results
    before = {k: v for k, v in run_identity(stored).items() if k in now or not k.startswith("loss.")}
    diffs = [f"{k} (stored {before.get(k, 'absent')}, now {now.get(k, 'absent')})"
             for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    if diffs:
        shown = ", ".join(diffs[:4]) + (f" and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        raise ConfigError(f"{run_dir} holds a run of another config: {shown}; give another directory "
                          "(hydra.run.dir=...) or resume=false to start this one over")


OUTPUTS = ("metrics.json", "per_class_accuracy.png", "student.pt")
PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def outputs_problem(run_dir: Path) -> str | None:
    """Why the run's outputs are not all present and whole (None when they are)."""
    missing = [name for name in OUTPUTS if not (run_dir / name).is_file()]
    if missing:
        return f"{missing[0]} missing"
    try:
        json.loads((run_dir / "metrics.json").read_bytes())
    except ValueError as exc:
        return f"metrics.json is unreadable: {exc}"
    plot = (run_dir / "per_class_accuracy.png").read_bytes()
    if not (plot.startswith(PNG_START) and plot.endswith(PNG_END)):
        return "per_class_accuracy.png is not a whole PNG"
    try:
        load_checkpoint(run_dir / "student.pt", trusted=False)
    except LTKDError as exc:
        return str(exc)
    return None


# --- stage 1: the teacher ------------------------------------------------------------------------

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
    and cached. A loaded teacher is evaluated on this run's test set; a trained one reports its last epoch."""
    cfg = ctx.cfg
    teacher = ctx.new_model(cfg.teacher.arch, "teacher")
    trained = False
    if given is not None:
        content, source = given, str(cfg.teacher.checkpoint)
    else:
        cache = TeacherCache(cfg.paths.teacher_cache, teacher_key(cfg, ctx.runtime.bf16))
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
    best = content.get("best") or final
    report = {"final": final, "best": best, "best_epoch": content.get("best_epoch"),
              "source": source, "wall_time_s": content.get("wall_time_s", 0.0), "history": content.get("history", [])}
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
               "state_dict": _plain_state(teacher), "final": result.final.as_dict(),
               "best": result.best.as_dict(), "best_epoch": result.best_epoch, "wall_time_s": result.wall_time_s,
               "history": result.history}
    if ctx.dist.is_main:
        save_checkpoint(cache.path, content)
        cache.training_checkpoint.unlink(missing_ok=True)
    ctx.logger.summary({f"teacher/{k}": v for k, v in result.final.summary().items()})
    ctx.logger.finish()
    return content


# --- stage 2: the student ------------------------------------------------------------------------

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
                         "state_dict": _plain_state(student), "distiller": distiller.student_state_dict()})
    ctx.logger.summary({f"student/{k}": v for k, v in result.final.summary().items()}
                       | {f"student_best/{k}": v for k, v in result.best.summary().items()})
    return {"final": result.final.as_dict(), "best": result.best.as_dict(), "best_epoch": result.best_epoch,
            "history": result.history, "wall_time_s": result.wall_time_s, "model": student}


def _plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict without torch.compile's prefix, on the CPU."""
    return {k.replace("_orig_mod.", ""): v.detach().cpu() for k, v in model.state_dict().items()}


def _load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"teacher weights in '{source}' do not fit the model "
                              f"({first_line(exc)})") from None


# --- outputs -------------------------------------------------------------------------------------

def _git_commit() -> str | None:
    """HEAD's short hash, with "+dirty" when tracked files differ from it."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=here).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def assemble_metrics(ctx: RunContext, teacher: dict, student: dict, wall_time_s: float) -> dict[str, Any]:
    cfg, data = ctx.cfg, ctx.data
    return {
        "dataset": data.name,
        "imbalance_factor": data.imbalance_factor,
        "teacher_arch": cfg.teacher.arch,
        "student_arch": cfg.student.arch,
        "loss": cfg.loss.name,
        "seed": cfg.seed,
        "train_counts": list(data.train_counts),
        "groups": dict(zip(GROUP_NAMES, ctx.groups, strict=True)),
        "teacher": teacher,
        "student": student,
        "epochs": cfg.trainer.epochs,
        "max_steps_per_epoch": cfg.trainer.max_steps_per_epoch,
        "wall_time_s": wall_time_s,
        "device": _device_name(ctx.runtime),
        "commit": _git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.to_dict(),
    }


def _device_name(runtime: Runtime) -> str:
    if runtime.is_cuda:
        return torch.cuda.get_device_name(runtime.device)
    return f"cpu ({os.cpu_count()} cores)"


def finalize_outputs(ctx: RunContext, metrics: dict[str, Any]) -> None:
    """Print the head/medium/tail/overall table and save the per-class plot."""
    cfg = ctx.cfg
    rows = {f"teacher {cfg.teacher.arch}": metrics["teacher"]["final"],
            f"student {cfg.student.arch} ({cfg.loss.name})": metrics["student"]["final"]}
    print(format_table(rows, title=f"{ctx.data.name} imbalance {ctx.data.imbalance_factor:g}: final-epoch "
                                   "test accuracy (%)"))
    print(format_table(table_rows(metrics["group_mass"]), columns=GROUP_NAMES,
                       title="mean group mass (%) (definition: README, metrics.json)"))
    plot_path = ctx.run_dir / "per_class_accuracy.png"
    plot_per_class(plot_path, ctx.data.train_counts, metrics["groups"],
                   {f"teacher ({cfg.teacher.arch})": metrics["teacher"]["final"]["per_class"],
                    f"student ({cfg.student.arch}, {cfg.loss.name})": metrics["student"]["final"]["per_class"]},
                   title=f"{ctx.data.name} γ={ctx.data.imbalance_factor:g}")
    for who in ("teacher", "student"):
        ctx.logger.per_class(who, metrics[who]["final"]["per_class"], ctx.data.train_counts,
                             _group_of_class(metrics["groups"], ctx.data.num_classes),
                             image=plot_path if who == "student" else None)
    print(f"metrics: {ctx.run_dir / 'metrics.json'}\nplot: {plot_path}")


def _group_of_class(groups: dict[str, list[int]], num_classes: int) -> list[str]:
    names = [""] * num_classes
    for name, members in groups.items():
        for c in members:
            names[c] = name
    return names
