"""The optimizer and lr schedule as config fields: SGD + steps unchanged by default, AdamW with a linear
warm-up then a cosine to ~0 (trainer=vit), the student's own recipe (student.recipe), and what refuses a
ViT student for ReviewKD."""

from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir

from ltkd.config import RunConfig, load_config, run_identity
from ltkd.engine import Stage, build_optimizer
from ltkd.errors import ConfigError
from ltkd.recipes import CONFIG_DIR
from ltkd.teacher_cache import teacher_key

CPU = SimpleNamespace(is_cuda=False)


@functools.cache
def config(*overrides: str) -> RunConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return load_config(compose("train", overrides=["logger=none", "data.root=unused", *overrides]))


def lr_per_epoch(trainer) -> tuple[torch.optim.Optimizer, list[float]]:
    """The optimizer and the lr each epoch trains with, stepping the schedule once per epoch as the engine does."""
    optimizer, scheduler = build_optimizer([torch.nn.Parameter(torch.zeros(1))], 1.0, trainer, CPU)
    lrs = []
    for _ in range(trainer.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return optimizer, lrs


def test_the_default_recipe_is_sgd_with_its_steps_as_before():
    trainer = config().trainer
    assert (trainer.optimizer, trainer.lr_schedule, trainer.warmup_epochs) == ("sgd", "step", 0)
    optimizer, scheduler = build_optimizer([torch.nn.Parameter(torch.zeros(1))], 1.0, trainer, CPU)
    reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0.9, weight_decay=5e-4,
                                fused=False)
    steps = torch.optim.lr_scheduler.MultiStepLR(reference, milestones=[150, 180, 210], gamma=0.1)
    assert (type(optimizer), type(scheduler)) == (torch.optim.SGD, torch.optim.lr_scheduler.MultiStepLR)
    assert optimizer.state_dict() == reference.state_dict() and scheduler.state_dict() == steps.state_dict()
    _, lrs = lr_per_epoch(trainer)
    expected = [0.1 ** sum(epoch > m for m in (150, 180, 210)) for epoch in range(1, 241)]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_cosine_warms_up_linearly_then_decays_to_about_zero():
    trainer = config("trainer=vit").trainer
    assert (trainer.epochs, trainer.warmup_epochs, trainer.lr) == (240, 5, 1e-3)
    _, lrs = lr_per_epoch(trainer)
    warmup, peak, decay = lrs[:5], lrs[5], lrs[5:]
    assert warmup == pytest.approx([k / 6 for k in range(1, 6)])  # linear, equal steps up to the peak
    assert peak == 1.0 and max(lrs) == 1.0
    assert all(a > b for a, b in itertools.pairwise(decay))  # strictly down after the warm-up
    assert decay[len(decay) // 2] == pytest.approx(0.5, abs=0.01)  # half-way down at half the decay
    assert 0 < lrs[-1] < 1e-4  # ~0 by the last epoch
    assert decay == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 235)) for k in range(235)])


def test_adamw_uses_beta1_as_momentum_and_reports_it():
    trainer = config("trainer=vit").trainer
    optimizer, _ = build_optimizer([torch.nn.Parameter(torch.zeros(1))], 1e-3, trainer, CPU)
    assert type(optimizer) is torch.optim.AdamW
    group = optimizer.param_groups[0]
    assert (group["betas"], group["weight_decay"]) == ((0.9, 0.999), 0.05)
    settings = Stage._optimizer_settings(SimpleNamespace(optimizer=optimizer))
    assert settings == {"lr": pytest.approx(1e-3 / 6), "momentum": 0.9, "weight_decay": 0.05}  # warm-up epoch 1


def test_the_student_recipe_is_the_students_alone_scaled_to_the_run():
    cfg = config("pair=resnet32x4_vit_tiny", "student.recipe=vit")
    teacher, student = cfg.stage_trainer("teacher"), cfg.stage_trainer("student")
    assert teacher is cfg.trainer and teacher.optimizer == "sgd"
    assert (student.optimizer, student.lr_schedule, student.warmup_epochs, student.weight_decay) == (
        "adamw", "cosine", 5, 0.05)
    assert (cfg.stage_lr("resnet32x4", None, teacher), cfg.stage_lr("vit_tiny", None, student)) == (0.05, 1e-3)
    assert (student.epochs, student.batch_size) == (cfg.trainer.epochs, cfg.trainer.batch_size)
    # the recipe's 5 warm-up epochs of 240 at another length: the same fraction, rounded, below the epochs
    shorter = config("student.recipe=vit", "trainer.epochs=48", "trainer.lr_milestones=[10]")
    assert shorter.stage_trainer("student").warmup_epochs == 1
    once = config("student.recipe=vit", "trainer.epochs=1", "trainer.lr_milestones=[1]")
    assert once.stage_trainer("student").warmup_epochs == 0
    # a step recipe's milestones move the same way
    stepped = config("student.recipe=imagenet_lt", "trainer.epochs=50", "trainer.lr_milestones=[10]")
    assert stepped.stage_trainer("student").lr_milestones == (15, 30, 45)


def test_new_fields_at_their_defaults_keep_identities_and_teacher_keys():
    default, vit_student, vit_trainer = config(), config("student.recipe=vit"), config("trainer=vit")
    identity = run_identity(default.to_dict())
    assert not {"trainer.optimizer", "trainer.lr_schedule", "trainer.warmup_epochs", "student.recipe"} & set(identity)
    assert run_identity(vit_student.to_dict())["student.recipe"] == "vit"
    assert run_identity(vit_trainer.to_dict())["trainer.optimizer"] == "adamw"
    key = teacher_key(default, bf16=False)
    assert not {"trainer.optimizer", "trainer.lr_schedule", "trainer.warmup_epochs"} & set(key["stage"])
    assert teacher_key(vit_student, bf16=False) == key  # the student's recipe leaves the teacher alone
    assert teacher_key(vit_trainer, bf16=False)["stage"]["trainer.optimizer"] == "adamw"


@pytest.mark.parametrize(("overrides", "message"), [
    (["trainer.optimizer=adam"], "trainer.optimizer: 'adam' is not allowed; allowed: sgd, adamw"),
    (["trainer.lr_schedule=poly"], "trainer.lr_schedule: 'poly' is not allowed; allowed: step, cosine"),
    (["trainer.warmup_epochs=1"], "trainer.warmup_epochs: 1; the warm-up belongs to lr_schedule=cosine, use 0 "
                                  "with lr_schedule=step"),
    (["trainer=vit", "trainer.warmup_epochs=-1"], "trainer.warmup_epochs: -1; must be >= 0"),
    (["trainer=vit", "trainer.warmup_epochs=240"], "trainer.warmup_epochs: 240; must be < trainer.epochs=240"),
    (["student.recipe=nope"], "student.recipe: 'nope' is not allowed; allowed: default, demo, imagenet_lt, smoke, "
                              "vit (configs/trainer/), or null"),
    (["pair=resnet32x4_vit_tiny", "loss=reviewkd"],
     "loss=reviewkd: pair resnet32x4_vit_tiny has student vit_tiny, whose features are one resolution of tokens, "
     "not the multi-stage CNN feature pyramid reviewkd fuses; use a CNN student or loss=kd, dkd, bkd, ltkd "
     "(logits only)"),
    (["teacher.arch=vit_tiny", "loss=reviewkd"], "loss=reviewkd: pair resnet32x4_resnet8x4 has teacher vit_tiny"),
])
def test_a_bad_optimizer_schedule_or_pairing_stops_in_one_line(overrides: list[str], message: str, tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        config(*overrides)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_cosine_ignores_the_step_milestones():
    assert config("trainer=vit", "trainer.epochs=10").trainer.lr_milestones == (150, 180, 210)
    with pytest.raises(ConfigError, match=r"^trainer\.lr_milestones: \[150, 180, 210\]; each must be in"):
        config("trainer.epochs=10")
