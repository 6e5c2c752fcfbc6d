#!/usr/bin/env python
"""Training throughput of ltkd's path vs the usual CIFAR distillation loop, side by side, one process.

Measures images/s of (a) teacher training (resnet32x4, CE) and (b) distillation (resnet32x4 -> resnet8x4,
LTKD) at batch 64 on CIFAR-100-LT γ=100, for
  ours:      uint8 data resident on the device, batched crop/flip there, bf16 autocast + channels_last +
             fused SGD on CUDA, teacher under inference mode, no host sync in the step loop;
  reference: torchvision transforms on PIL images in DataLoader workers, fp32, loss.item() every step;
plus one test-set evaluation pass each, and projects the wall time of 240 epochs (train + eval per epoch).
Then times every method of the table (`ltkd.distillers.METHODS`) as a student and N LTKD students training at
once (N processes on one device) and projects the row's wall time (teacher + one student per method),
sequential vs N parallel students, for
the chosen mode (eager, or --compile). Writes results/bench/<device>.json and .md.

    python scripts/bench.py                       # whatever device is present
    python scripts/bench.py --device cpu          # a minute or two on 2 cores (3 steps, 200 test images)
    python scripts/bench.py --parallel 5 --compile   # on a GPU: the row's projection with compiled steps
    python scripts/bench.py --shared-teacher      # the row's students, teacher outputs shared vs recomputed

`--shared-teacher`: a row's distilled students with the teacher's outputs shared vs
recomputed, side by side in one process, through the real training path (ltkd.teacher_outputs).

Students: KD, DKD, LTKD and a 2x2 LTKD α/β grid around it (α 0.5, 2; β 4, 16), resnet32x4 -> resnet8x4 on
CIFAR-100-LT γ=100 at batch 64 (the teacher's weights are a fresh initialisation: the arithmetic is the
same). Each student trains the same `steps` steps twice, interleaved: once with its live teacher
(recomputed), once reading the teacher's stored logits (shared), which one teacher pass computed first
(timed, writing and reading the entry included). Then projects the speed-up for the row on another device
from the per-step costs: measured here, and from the models' multiply-accumulates (MACs) for a device where
time follows arithmetic (an H100 at large batch; at batch 64 a small student is partly launch-bound there,
so measure with this script on the GPU before relying on it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import nn

from ltkd.build import RunContext, build_context, loss_groups, student_distiller, teacher_distiller
from ltkd.config import load_config
from ltkd.data.transforms import ImageSetDataset, build_transforms
from ltkd.distillers import METHODS
from ltkd.engine import Stage
from ltkd.evaluation import class_counts
from ltkd.losses import ltkd_loss
from ltkd.models import create_model
from ltkd.recipes import CONFIG_DIR
from ltkd.teacher_outputs import share_teacher_outputs

EPOCHS = 240


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


# --- ours: the real training path (RunContext + Stage) --------------------------------------------

def training_stage(ctx: RunContext, task: str) -> tuple[Stage, torch.nn.Module]:
    """The real stage for `task` ("teacher": CE on the teacher; else the student with ctx's loss) and the
    model it evaluates."""
    cfg = ctx.cfg
    teacher = ctx.new_model(cfg.teacher.arch, "teacher")
    if task == "teacher":
        module, evaluated, arch = teacher_distiller(ctx, teacher), teacher, cfg.teacher.arch
    else:
        module = student_distiller(ctx, teacher.eval())
        evaluated, arch = module.student, cfg.student.arch
    checkpoint = Path(tempfile.gettempdir()) / "ltkd-bench.ckpt"
    return ctx.build_stage(task, module, evaluated, arch, None, checkpoint), evaluated


def time_steps(stage: Stage, steps: int, epoch: int, device: torch.device) -> float:
    """Seconds for `steps` training steps of the stage (device-synchronised)."""
    stage.train_loader.max_steps = steps
    return timed(lambda: stage.train_epoch(epoch), device)


def train_images_per_s(ctx: RunContext, task: str, steps: int, warmup: int) -> tuple[float, torch.nn.Module]:
    """Training throughput of `task` after `warmup` untimed steps, and the model it evaluates."""
    stage, evaluated = training_stage(ctx, task)
    time_steps(stage, warmup, 1, ctx.runtime.device)
    return steps * ctx.cfg.trainer.batch_size / time_steps(stage, steps, 2, ctx.runtime.device), evaluated


def bench_ours(ctx: RunContext, task: str, steps: int, warmup: int, eval_images: int) -> dict:
    images_per_s, evaluated = train_images_per_s(ctx, task, steps, warmup)
    device, data = ctx.runtime.device, ctx.data
    test = ctx.loader(False, "eval")
    eval_s = timed(lambda: class_counts(evaluated, _limit(test, eval_images),
                                        data.num_classes, ctx.runtime.autocast), device)
    return {"images_per_s": images_per_s, "eval_s": eval_s * len(data.test) / min(eval_images, len(data.test))}


def _limit(batches, images: int):
    """The first `images` test images, as batches."""
    left = images
    for inputs, labels in batches:
        if left <= 0:
            break
        yield inputs[:left], labels[:left]
        left -= len(labels)


# --- reference: the usual loop --------------------------------------------------------------------

def bench_reference(ctx: RunContext, task: str, steps: int, warmup: int, eval_images: int, workers: int) -> dict:
    cfg, data, device = ctx.cfg, ctx.data, ctx.runtime.device
    torch.manual_seed(0)
    teacher = create_model(cfg.teacher.arch, data.num_classes).to(device)
    student = create_model(cfg.student.arch, data.num_classes).to(device) if task == "distill" else teacher
    teacher.eval() if task == "distill" else teacher.train()
    student.train()
    groups = loss_groups(ctx)
    optimizer = torch.optim.SGD(student.parameters(), lr=cfg.trainer.lr, momentum=0.9, weight_decay=5e-4)
    train_set = ImageSetDataset(data.train, build_transforms(data.name, True, data.mean, data.std))
    loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.trainer.batch_size, shuffle=True,
                                         num_workers=workers, pin_memory=device.type == "cuda", drop_last=True,
                                         persistent_workers=workers > 0)
    loss_cfg = cfg.loss

    def run_steps(n: int) -> None:
        done = 0
        while done < n:
            for images, labels in loader:
                images, labels = images.to(device), labels.to(device)
                logits, _ = student(images)
                loss = F.cross_entropy(logits, labels)
                if task == "distill":
                    with torch.no_grad():
                        logits_t, _ = teacher(images)
                    loss = loss + ltkd_loss(logits, logits_t, groups, loss_cfg.alpha, loss_cfg.beta,
                                            loss_cfg.temperature)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss.item()
                done += 1
                if done == n:
                    return

    timed(lambda: run_steps(warmup), device)
    seconds = timed(lambda: run_steps(steps), device)
    test_set = ImageSetDataset(data.test, build_transforms(data.name, False, data.mean, data.std))
    subset = torch.utils.data.Subset(test_set, range(min(eval_images, len(test_set))))
    test_loader = torch.utils.data.DataLoader(subset, batch_size=100, num_workers=workers)
    evaluated = student

    def evaluate() -> None:
        evaluated.eval()
        with torch.no_grad():
            for images, labels in test_loader:
                logits, _ = evaluated(images.to(device))
                (logits.argmax(1) == labels.to(device)).sum().item()
        evaluated.train()

    eval_s = timed(evaluate, device)
    return {"images_per_s": steps * cfg.trainer.batch_size / seconds,
            "eval_s": eval_s * len(test_set) / len(subset)}


# --- the row: teacher + one student per method, sequential vs parallel -----------------------------

ROW_LOSSES = tuple(METHODS)  # every method of the table, in its order: a new one is timed too


def make_context(args: argparse.Namespace, loss: str, data=None) -> RunContext:
    """The benchmark's run context: CIFAR-100-LT γ=100, resnet32x4 -> resnet8x4, `loss`."""
    overrides = [f"loss={loss}", "logger=none", f"trainer.device={args.device}", f"data.root={args.data_root}",
                 "data.download=false", "dataset.imbalance_factor=100", f"trainer.compile={args.compile}",
                 *args.overrides]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = load_config(compose("train", overrides=overrides))
    return build_context(cfg, Path(tempfile.mkdtemp()), data=data)


def _parallel_worker(args: argparse.Namespace, steps: int, warmup: int, barrier, queue) -> None:
    """One of N concurrent LTKD students: warm up, wait for the others, time `steps` steps."""
    ctx = make_context(args, "ltkd")
    stage, _ = training_stage(ctx, "student")
    time_steps(stage, warmup, 1, ctx.runtime.device)
    barrier.wait()
    queue.put(steps * ctx.cfg.trainer.batch_size / time_steps(stage, steps, 2, ctx.runtime.device))


def concurrent_images_per_s(args: argparse.Namespace, n: int, steps: int, warmup: int) -> list[float]:
    """images/s of each of `n` LTKD students training at the same time, each in its own process."""
    mp = torch.multiprocessing.get_context("spawn")
    barrier, queue = mp.Barrier(n), mp.Queue()
    procs = [mp.Process(target=_parallel_worker, args=(args, steps, warmup, barrier, queue)) for _ in range(n)]
    for proc in procs:
        proc.start()
    rates = [queue.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join()
    return rates


def project_row(ctx: RunContext, args: argparse.Namespace, results: dict, steps: int, warmup: int,
                parallel: int) -> dict:
    """Measure each student loss and N concurrent students briefly; project the row's wall time for 240
    epochs, sequential (teacher, then one student after another) and parallel (teacher, then the students N
    at a time sharing the device: their total work at the measured concurrent throughput, and never less
    than the longest student alone). Process start-up and data loading (seconds) are not included."""
    train_images, ltkd = len(ctx.data.train), results["distill/ours"]  # LTKD measured already
    students = {}
    for loss in ROW_LOSSES:  # the same student architecture: one evaluation time for all
        print(f"timing student {loss} ...", flush=True)
        rate = ltkd["images_per_s"] if loss == "ltkd" else \
            train_images_per_s(make_context(args, loss, ctx.data), "student", steps, warmup)[0]
        students[loss] = {"images_per_s": rate, "eval_s": ltkd["eval_s"]}
    print(f"timing {parallel} LTKD students at once ...", flush=True)
    rates = concurrent_images_per_s(args, parallel, steps, warmup)
    speedup = sum(rates) / ltkd["images_per_s"]
    teacher_min = projected_minutes(results["teacher/ours"], train_images)
    student_min = {loss: projected_minutes(r, train_images) for loss, r in students.items()}
    return {"epochs": EPOCHS, "parallel": parallel, "compile": args.compile, "students": students,
            "timed_steps": steps, "concurrent_images_per_s": rates, "parallel_speedup": speedup,
            "teacher_min": teacher_min, "student_min": student_min,
            **row_wall_times(teacher_min, list(student_min.values()), speedup)}


def row_wall_times(teacher_min: float, student_min: list[float], speedup: float) -> dict[str, float]:
    """The row's wall time: the teacher, then the students one after another, or sharing the device at
    `speedup` times one student's throughput (never faster than the longest student alone)."""
    total = sum(student_min)
    return {"sequential_min": teacher_min + total,
            "parallel_min": teacher_min + max(total / max(speedup, 1e-9), max(student_min))}


def row_lines(row: dict) -> list[str]:
    mode = "compiled" if row["compile"] else "eager"
    lines = [f"Headline row ({row['epochs']} epochs, {mode}): teacher {row['teacher_min']:.1f} min; students "
             + ", ".join(f"{loss} {m:.1f}" for loss, m in row["student_min"].items()) + " min.",
             f"{row['parallel']} students at once: {row['parallel_speedup']:.2f}x the throughput of one.", "",
             "| execution | projected row wall time (min) |", "|---|---|",
             f"| sequential | {row['sequential_min']:.1f} |",
             f"| {row['parallel']} students in parallel | {row['parallel_min']:.1f} |"]
    return lines


# --- report ---------------------------------------------------------------------------------------

def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device).replace(" ", "-")
    return f"cpu-{os.cpu_count()}cores"


def report_stamp(device: torch.device) -> dict[str, str]:
    """Where and when a benchmark ran: device, versions, UTC date, commit and the command line."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"device": device_label(device), "torch": torch.__version__, "python": platform.python_version(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
            "command": " ".join([Path(sys.executable).name, *sys.argv])}


def write_report(stem: Path, report: dict, md: list[str]) -> None:
    """`<stem>.json` and `<stem>.md`; prints the markdown."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.parent.joinpath(stem.name + ".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.parent.joinpath(stem.name + ".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def projected_minutes(result: dict, train_images: int) -> float:
    return EPOCHS * (train_images / result["images_per_s"] + result["eval_s"]) / 60



STUDENTS = {"kd": ["loss=kd"], "dkd": ["loss=dkd"], "ltkd": ["loss=ltkd"],
            **{f"ltkd a{a} b{b}": ["loss=ltkd", f"loss.alpha={a}", f"loss.beta={b}"]
               for a in (0.5, 2) for b in (4, 16)}}
STEP_MAC_FACTOR = 3  # a training step's arithmetic: forward + backward ≈ 3 forwards


def forward_macs(model: nn.Module, image_size: int, channels: int = 3) -> int:
    """Multiply-accumulates of one image's forward pass through the model's convolutions and linear layers."""
    total = 0

    def count(module: nn.Module, _inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, image_size, image_size))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def row_speedup(teacher_s: float, student_s: float, students: int) -> float:
    """Wall-time ratio recomputed / shared for `students` students: each pays teacher + student per step
    when recomputing; with sharing one teacher pass serves them all."""
    return students * (teacher_s + student_s) / (teacher_s + students * student_s)


def student_context(args: argparse.Namespace, overrides: list[str], ctx: RunContext) -> RunContext:
    student_args = argparse.Namespace(**{**vars(args), "overrides": [*args.overrides, *overrides]})
    return make_context(student_args, overrides[0].removeprefix("loss="), ctx.data)


def shared_teacher_run(args: argparse.Namespace) -> int:
    gpu = args.device != "cpu" and torch.cuda.is_available()
    steps, warmup = args.steps or (200 if gpu else 3), 1 if args.warmup is None else args.warmup
    store_root = Path(tempfile.mkdtemp(prefix="ltkd-shared-bench-"))
    args.overrides = [*args.overrides, f"trainer.max_steps_per_epoch={steps}", f"paths.teacher_cache={store_root}"]
    base = make_context(args, "ltkd")
    device, epoch = base.runtime.device, 2
    warm, _ = training_stage(base, "student")
    for warm_epoch in range(warmup):
        warm.train_epoch(warm_epoch + 10)  # untimed, other epochs than the timed one
    per_student, teacher_s = {}, None
    for name, overrides in STUDENTS.items():
        ctx = student_context(args, overrides, base)
        live, _ = training_stage(ctx, "student")
        shared, _ = training_stage(ctx, "student")
        share_teacher_outputs(ctx, shared, shared.module)
        recomputed_s = timed(lambda s=live: s.train_epoch(epoch), device)
        if teacher_s is None:  # the first student computes and stores the epoch's teacher logits
            teacher_s = timed(lambda s=shared: s.train_loader.set_epoch(epoch), device)
        shared_s = timed(lambda s=shared: s.train_epoch(epoch), device)
        per_student[name] = {"recomputed_s": recomputed_s, "shared_s": shared_s}
        print(f"{name}: recomputed {recomputed_s:.2f} s, shared {shared_s:.2f} s", flush=True)
    recomputed = sum(s["recomputed_s"] for s in per_student.values())
    shared_total = teacher_s + sum(s["shared_s"] for s in per_student.values())
    n = len(per_student)
    student_step = sum(s["shared_s"] for s in per_student.values()) / (n * steps)
    teacher_step = teacher_s / steps
    cfg, image_size = base.cfg, base.data.image_size
    macs = {who: forward_macs(create_model(arch, base.data.num_classes), image_size)
            for who, arch in (("teacher", cfg.teacher.arch), ("student", cfg.student.arch))}
    mac_ratio = macs["teacher"] / (STEP_MAC_FACTOR * macs["student"])
    stamp = report_stamp(device)
    label, commit = stamp["device"], stamp["commit"]
    report = {
        **stamp,
        "settings": {"steps": steps, "warmup_epochs": warmup, "batch_size": cfg.trainer.batch_size,
                     "teacher": cfg.teacher.arch, "student": cfg.student.arch, "bf16": base.runtime.bf16,
                     "train_images": len(base.data.train)},
        "students": per_student, "teacher_pass_s": teacher_s, "recomputed_s": recomputed,
        "shared_s": shared_total, "speedup": recomputed / shared_total,
        "per_step_s": {"teacher_forward": teacher_step, "student_step": student_step},
        "macs_per_image": macs,
        "projection": {"row_students": n, "measured_here": row_speedup(teacher_step, student_step, n),
                       "from_macs": row_speedup(mac_ratio, 1.0, n), "teacher_to_student_step_macs": mac_ratio},
    }
    md = [f"# Teacher outputs shared vs recomputed on {label}", "",
          f"`{report['command']}` at commit {commit}, {report['date']}, torch {torch.__version__}; "
          f"{cfg.teacher.arch} -> {cfg.student.arch}, batch {cfg.trainer.batch_size}, {steps} timed steps per "
          f"student, CIFAR-100-LT γ=100 ({len(base.data.train)} images).", "",
          "| student | recomputed (s) | shared (s) |", "|---|---|---|",
          *(f"| {k} | {v['recomputed_s']:.2f} | {v['shared_s']:.2f} |" for k, v in per_student.items()),
          f"| teacher pass (shared only) | | {teacher_s:.2f} |",
          f"| **all {n} students** | **{recomputed:.2f}** | **{shared_total:.2f}** |", "",
          f"Shared: **{report['speedup']:.2f}x** less wall time for these {n} students. Per step: teacher forward "
          f"{teacher_step:.3f} s, student step {student_step:.3f} s.", "",
          f"Projection for a row of {n} students: {report['projection']['measured_here']:.2f}x from the per-step "
          f"costs measured here; {report['projection']['from_macs']:.2f}x where time follows arithmetic "
          f"(teacher forward {macs['teacher'] / 1e9:.2f} GMAC/image, student step ≈ {STEP_MAC_FACTOR} × "
          f"{macs['student'] / 1e9:.2f} GMAC/image; ratio {mac_ratio:.2f})."]
    write_report(args.out / f"{label}-shared-teacher", report, md)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 200 on GPU, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 30 GPU / 1 CPU)")
    parser.add_argument("--eval-images", type=int, default=None, help="test images timed (scaled to 10,000)")
    parser.add_argument("--workers", type=int, default=None, help="reference DataLoader workers")
    parser.add_argument("--compile", action="store_true", help="torch.compile our path")
    parser.add_argument("--data-root", default=os.environ.get("LTKD_DATA", "./data"))
    parser.add_argument("--parallel", type=int, default=None,
                        help="students run at once in the projected row (default one per method on GPU, 2 on CPU)")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("--shared-teacher", action="store_true",
                        help="only the row's students with the teacher's outputs shared vs recomputed")
    parser.add_argument("overrides", nargs="*", help="config overrides for our path (e.g. pair=..., dataset.n_max=12)")
    args = parser.parse_args()
    if args.shared_teacher:
        return shared_teacher_run(args)

    ctx = make_context(args, "ltkd")
    gpu = ctx.runtime.is_cuda
    steps = args.steps or (200 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (30 if gpu else 1)
    eval_images = args.eval_images or (10_000 if gpu else 200)
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    parallel = args.parallel or (len(ROW_LOSSES) if gpu else 2)
    cfg, data, runtime = ctx.cfg, ctx.data, ctx.runtime
    results: dict[str, dict] = {}
    for task in ("teacher", "distill"):
        for path_name, fn in (("ours", lambda t=task: bench_ours(ctx, t, steps, warmup, eval_images)),
                              ("reference", lambda t=task: bench_reference(ctx, t, steps, warmup, eval_images,
                                                                           workers))):
            print(f"timing {task} / {path_name} ...", flush=True)
            r = fn()
            r["projected_240_epochs_min"] = projected_minutes(r, len(data.train))
            results[f"{task}/{path_name}"] = r
    row_steps = steps if gpu else 1  # per student loss and per concurrent student (keeps the CPU run short)
    row = project_row(ctx, args, results, row_steps, warmup, parallel)
    for task in ("teacher", "distill"):
        results[f"{task}/speedup"] = {
            "train": results[f"{task}/ours"]["images_per_s"] / results[f"{task}/reference"]["images_per_s"],
            "epoch_incl_eval": results[f"{task}/reference"]["projected_240_epochs_min"]
            / results[f"{task}/ours"]["projected_240_epochs_min"]}
    stamp = report_stamp(runtime.device)
    label, commit = stamp["device"], stamp["commit"]
    report = {
        **stamp,
        "settings": {"steps": steps, "warmup": warmup, "eval_images": eval_images, "reference_workers": workers,
                     "batch_size": cfg.trainer.batch_size, "bf16": runtime.bf16,
                     "channels_last": runtime.channels_last, "compile": args.compile, "parallel": parallel,
                     "train_images": len(data.train), "teacher": cfg.teacher.arch, "student": cfg.student.arch},
        "results": results,
        "row_projection": row,
    }
    md = [f"# Throughput on {label}", "",
          f"`{report['command']}` at commit {commit}, {report['date']}, torch {torch.__version__}; "
          f"batch 64, {steps} timed steps after {warmup} warm-up, CIFAR-100-LT γ=100 ({len(data.train)} images); "
          f"eval time measured on {eval_images} test images, scaled to {len(data.test)}.", "",
          "| task | path | images/s | eval pass (s) | projected 240 epochs (min) |", "|---|---|---|---|---|"]
    for task in ("teacher", "distill"):
        for path_name in ("ours", "reference"):
            r = results[f"{task}/{path_name}"]
            md.append(f"| {task} | {path_name} | {r['images_per_s']:.0f} | {r['eval_s']:.2f} | "
                      f"{r['projected_240_epochs_min']:.1f} |")
    md.append("")
    for task in ("teacher", "distill"):
        s = results[f"{task}/speedup"]
        md.append(f"- {task}: training {s['train']:.2f}x, whole epoch incl. eval {s['epoch_incl_eval']:.2f}x")
    md += ["", *row_lines(row)]
    write_report(args.out / label, report, md)
    return 0 if all(math.isfinite(r["images_per_s"]) for k, r in results.items() if "/speedup" not in k) else 1


if __name__ == "__main__":
    sys.exit(main())
