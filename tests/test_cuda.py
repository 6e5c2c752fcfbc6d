"""The GPU path, on every device present: `make test` runs each body on the CPU, `pytest -m cuda` (the CUDA
self-check; under 90 s on one GPU) the same bodies on CUDA. Every loss trains through the real stage with
bf16 autocast and channels_last (fused SGD and no host sync in the step loop on CUDA), bf16 evaluation
agrees with float32 CPU evaluation, a checkpoint resumes onto its device, trainer.compile=true trains, and
the teacher's shared outputs keep bf16. The device loader's checks are in test_loaders.py (same tests
on every device). Only a device's own numerics may differ between the two; such comparisons say their
tolerance."""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from pathlib import Path

import pytest
import torch

from ltkd.build import RunContext, build_context, student_distiller
from ltkd.checkpoint import load_checkpoint
from ltkd.config import load_config
from ltkd.data.loaders import DeviceLoader
from ltkd.distillers import METHODS
from ltkd.engine import Preempted, Stage, StopSignal
from ltkd.models import create_model
from ltkd.runtime import Runtime
from ltkd.teacher_outputs import share_teacher_outputs
from tests.helpers import DEVICES, no_host_sync

# every method of the table with its preset, some in variants of their own
VARIANTS = {"bkd": {"bkd": ["loss.defer_epoch=0"]},  # class-balanced from the first step
            "ltkd": {"ltkd-batch": ["loss.rebalance=batch"], "ltkd-ema": ["loss.rebalance=ema"]}}
LOSSES = {label: [f"loss={method}", *extra] for method in METHODS
          for label, extra in VARIANTS.get(method, {method: []}).items()}
HAS_COMPILER = any(map(shutil.which, ("cc", "gcc", "clang")))


def gpu_path_context(compose_toy, run_dir: Path, device: str, *overrides: str) -> RunContext:
    """The toy run on `device` with the GPU's settings: bf16 autocast and channels_last."""
    return build_context(load_config(compose_toy(f"trainer.device={device}", "trainer.precision=bf16",
                                                 "trainer.channels_last=true", "loss.warmup_epochs=0",
                                                 *overrides)), run_dir)


def student_stage(ctx: RunContext, checkpoint: Path) -> tuple[Stage, torch.nn.Module]:
    teacher = ctx.new_model(ctx.cfg.teacher.arch, "teacher").eval()
    distiller = student_distiller(ctx, teacher)
    student = distiller.student
    return ctx.build_stage("student", distiller, student, ctx.cfg.student.arch, None, checkpoint), student


def _loss_on_device(fast_on_cpu: str) -> list:
    """(device, loss) for every loss on every device; bf16 is emulated on the CPU (30-85 s a loss there), so
    `make test` trains `fast_on_cpu` on it and `make test-all` every loss."""
    params = []
    for loss in LOSSES:
        for device in DEVICES:
            name, marks = (device, []) if isinstance(device, str) else (device.values[0], list(device.marks))
            if name == "cpu" and loss != fast_on_cpu:
                marks.append(pytest.mark.slow)
            params.append(pytest.param(name, loss, marks=marks, id=f"{loss}-{name}"))
    return params


@pytest.mark.parametrize(("device", "loss"), _loss_on_device(fast_on_cpu="ltkd-batch"))
def test_every_loss_trains_in_bf16_channels_last_without_host_sync(device: str, loss: str, compose_toy,
                                                                   tmp_path: Path):
    ctx = gpu_path_context(compose_toy, tmp_path, device, *LOSSES[loss])
    assert ctx.runtime.bf16 and ctx.runtime.channels_last and ctx.runtime.device.type == device
    stage, student = student_stage(ctx, tmp_path / "student.ckpt")
    assert stage.optimizer.defaults["fused"] == (device == "cuda") and next(student.parameters()).device.type == device
    train = ctx.data.train  # one fixed batch of 64 images (no crop padding; only flips vary), a step per epoch
    stage.train_loader = DeviceLoader(train.images[:64], train.labels[:64], batch_size=64, train=True,
                                      mean=ctx.data.mean, std=ctx.data.std, pad=0, device=device,
                                      channels_last=True)
    sums = [stage.train_epoch(1)]  # warm-up: lazy CUDA initialisation, cuDNN autotuning
    with no_host_sync(device):  # on CUDA any host synchronisation in the step loop raises
        sums += [stage.train_epoch(epoch) for epoch in range(2, 21)]
    losses = [stage._read_epoch_stats(epoch, s)["train/loss"] for epoch, s in enumerate(sums, 1)]
    assert all(math.isfinite(v) for v in losses), losses
    assert sum(losses[-3:]) < sum(losses[:3]), losses  # the loss falls on the fixed batch


def logits_on(ctx: RunContext, model: torch.nn.Module) -> torch.Tensor:
    model.eval()
    with torch.no_grad(), ctx.runtime.autocast():
        return torch.cat([model(x)[0].float().cpu() for x, _ in ctx.loader(train=False, stage="eval")])


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_evaluation_agrees_with_float32_on_the_cpu(device: str, compose_toy, tmp_path: Path):
    ctx = gpu_path_context(compose_toy, tmp_path, device, "loss=ce")
    stage, student = student_stage(ctx, tmp_path / "student.ckpt")
    stage.run(resume=False)  # trained a little, so predictions are not all one class
    cpu_ctx = dataclasses.replace(ctx, runtime=Runtime(torch.device("cpu"), bf16=False, channels_last=False))
    cpu_model = create_model(ctx.cfg.student.arch, ctx.data.num_classes)
    cpu_model.load_state_dict({k: v.cpu() for k, v in student.state_dict().items()})
    on_device, on_cpu = logits_on(ctx, student), logits_on(cpu_ctx, cpu_model)
    tolerance = 0.05 * float(on_cpu.abs().max())  # bf16 autocast: a few per cent of the logit scale
    assert float((on_device - on_cpu).abs().max()) <= tolerance
    top2 = on_cpu.topk(2, dim=1).values
    near_ties = 100.0 * float((top2[:, 0] - top2[:, 1] < 2 * tolerance).float().mean())
    device_acc, cpu_acc = ctx.evaluator(student)(), cpu_ctx.evaluator(cpu_model)()
    assert abs(device_acc.overall - cpu_acc.overall) <= near_ties + 1e-9  # only near-ties may flip


@pytest.mark.parametrize("device", DEVICES)
def test_a_checkpoint_resumes_onto_its_device(device: str, compose_toy, tmp_path: Path, capsys):
    ctx = gpu_path_context(compose_toy, tmp_path, device, "loss=ltkd", "loss.rebalance=ema", "trainer.epochs=3",
                           "trainer.lr_milestones=[2]")
    checkpoint = tmp_path / "student.ckpt"
    stopped, _ = student_stage(dataclasses.replace(ctx, stop=StopSignal(deadline=time.time())), checkpoint)
    with pytest.raises(Preempted, match="time limit"):
        stopped.run(resume=False)
    saved = load_checkpoint(checkpoint)  # read onto the CPU, whatever device wrote it
    assert saved["skip_steps"] == 1 and ("cuda" in saved["rng"]) == (device == "cuda")
    restored, _ = student_stage(ctx, checkpoint)
    next_epoch, skip, partial = restored._restore()
    assert (next_epoch, skip) == (1, 1) and partial.loss_terms.device.type == device  # the sums go back on it
    assert next(restored.module.student.parameters()).device.type == device
    resumed, _ = student_stage(ctx, checkpoint)
    result = resumed.run(resume=True)
    assert "resuming from" in capsys.readouterr().out
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert all(math.isfinite(r["train/loss"]) for r in result.history)


@pytest.mark.compile
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.skipif(not HAS_COMPILER, reason="torch.compile's kernels need a C compiler, and this machine has none")
def test_compile_trains_a_step(device: str, compose_toy, tmp_path: Path):
    ctx = gpu_path_context(compose_toy, tmp_path, device, "loss=ce", "trainer.compile=true",
                           "trainer.max_steps_per_epoch=2")
    stage, _ = student_stage(ctx, tmp_path / "student.ckpt")
    assert stage.forward._compiled_call_impl is not None
    stats = stage._read_epoch_stats(1, stage.train_epoch(1))
    assert math.isfinite(stats["train/loss"])


@pytest.mark.parametrize("device", DEVICES)
def test_shared_teacher_outputs_are_stored_in_bf16_and_train_the_student(device: str, compose_toy, tmp_path: Path):
    ctx = gpu_path_context(compose_toy, tmp_path, device, "loss=kd", "trainer.max_steps_per_epoch=2",
                           f"paths.teacher_cache={tmp_path / 'cache'}")
    stage, _ = student_stage(ctx, tmp_path / "student.ckpt")
    share_teacher_outputs(ctx, stage, stage.module)
    stats = stage._read_epoch_stats(1, stage.train_epoch(1))
    assert math.isfinite(stats["train/loss"])
    (entry,) = (tmp_path / "cache" / "outputs").glob("*/epoch0001.pt")
    assert load_checkpoint(entry)["logits"].dtype == torch.bfloat16  # as the teacher produced them
