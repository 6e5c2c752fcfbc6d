"""A run, in order: refuse another config's run directory, read the data, build the run's parts
(`ltkd.build`) and check the method on a dummy batch, stage 1 then stage 2 (`ltkd.stages`), then the outputs
(`ltkd.run_outputs`), metrics.json last."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ltkd.build import build_context, check_method, load_data
from ltkd.checkpoint import atomic_write_bytes, sweep_stale_temps
from ltkd.config import RunConfig, run_identity
from ltkd.deadline import STOP_MARGIN_S, deadline_for, parse_duration
from ltkd.distributed import barrier, init_from_env, place_on_local_device
from ltkd.engine import StopSignal
from ltkd.errors import ConfigError, first_line, run_dir_override
from ltkd.group_mass import flatten
from ltkd.loggers import NullLogger, build_logger
from ltkd.run_outputs import assemble_metrics, finalize_outputs, outputs_problem
from ltkd.runtime import resolve_runtime, seed_everything
from ltkd.stages import obtain_teacher, read_teacher_file, train_student


def run(cfg: RunConfig, run_dir: Path, command: str = "", stop: StopSignal | None = None) -> dict[str, Any]:
    """Run (or resume, or report) one teacher -> student experiment; returns the metrics dict.

    With `resume`, a run directory holding another config's run is refused, and a finished run is reported
    as complete only when all its outputs are whole (otherwise they are made again from its checkpoints)."""
    stop = stop or StopSignal()
    metrics_path = run_dir / "metrics.json"
    for folder in (run_dir, run_dir / "checkpoints"):  # what an earlier run killed mid-write left
        sweep_stale_temps(folder)
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
        check_budget_fits(cfg.trainer.time_limit, stop)
        stop.check("during start-up")
    logger = build_logger(cfg, run_dir) if main else NullLogger()
    ctx = build_context(cfg, run_dir, data=data, runtime=runtime, logger=logger, stop=stop, dist=dist_info)
    try:
        with ctx.stop.installed():
            check_method(ctx)  # a method's mistake shows now, not after the teacher has trained
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


def check_budget_fits(time_limit: str | float | None, stop: StopSignal) -> None:
    """ConfigError when the time limit runs out within this job's own start-up and the stop margin: no step
    could run, and every re-run would stop here again (a budget spent by earlier jobs is a stop, status 75)."""
    if time_limit is None or stop.reason() != "time limit":
        return
    start_up = time.time() - stop.started
    if start_up + STOP_MARGIN_S >= parse_duration(time_limit):
        raise ConfigError(f"trainer.time_limit: {time_limit!r} ran out during start-up; a re-run would stop "
                          f"there again; must be more than {math.ceil(start_up + STOP_MARGIN_S)}s (start-up "
                          f"{start_up:.0f} s plus the {STOP_MARGIN_S:g} s stop margin)")


def check_same_identity(cfg: RunConfig, run_dir: Path) -> None:
    """Refuse to resume or report a run directory whose stored config differs from `cfg` in a field that
    changes results (`config.run_identity`); names the differing fields, stored vs now."""
    stored_path = run_dir / "config.yaml"
    if not stored_path.exists():
        return
    try:
        stored = OmegaConf.to_container(OmegaConf.load(stored_path))
    except Exception as exc:
        raise ConfigError(f"{stored_path} is unreadable ({first_line(exc)}); resume=false "
                          f"{run_dir_override(run_dir)} starts this run directory over") from None
    now = run_identity(cfg.to_dict())
    # before each method had its own loss config, every run stored every method's keys: those the run's
    # method does not have never changed its results
    before = {k: v for k, v in run_identity(stored).items() if k in now or not k.startswith("loss.")}
    diffs = [f"{k} (stored {before.get(k, 'absent')}, now {now.get(k, 'absent')})"
             for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    if diffs:
        shown = ", ".join(diffs[:4]) + (f" and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        raise ConfigError(f"{run_dir} holds a run of another config: {shown}; give another directory "
                          f"(hydra.run.dir=...), or resume=false {run_dir_override(run_dir)} starts this one over")
