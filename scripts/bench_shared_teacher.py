"""`scripts/bench.py --shared-teacher`: a row's distilled students with the teacher's outputs shared vs
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
import tempfile
from pathlib import Path

import torch
from bench import make_context, report_stamp, timed, training_stage, write_report
from torch import nn

from ltkd.build import RunContext
from ltkd.models import create_model
from ltkd.teacher_outputs import share_teacher_outputs

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


def run(args: argparse.Namespace) -> int:
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
