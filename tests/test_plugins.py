"""The README's "Adding a method" and "Adding a dataset" steps, followed for a toy method (an L2 loss on the
logits) and a toy dataset (random images made in memory): their files are written into a copy of the
configs and a temporary package, each gets its one table line, and a toy run goes end to end through
Hydra's composition, the config validation and the pipeline."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from ltkd import pipeline
from ltkd.config import load_config
from ltkd.data import DATASETS, long_tailed_counts
from ltkd.distillers import METHODS, Distiller
from ltkd.errors import USER_ERROR_EXIT_CODE, ConfigError
from ltkd.recipes import CONFIG_DIR
from ltkd.train import execute

LOSS_FILE = '''
"""L2 between student and teacher logits (a pure function on tensors)."""
from torch import Tensor


def l2_logits_loss(logits_s: Tensor, logits_t: Tensor) -> Tensor:
    return (logits_s - logits_t).pow(2).mean()
'''

DISTILLER_FILE = '''
"""A toy long-tailed method: warm-up * alpha * L2(student logits, teacher logits), each sample weighted by its
class's inverse training frequency (from the run's DistillerInputs: counts, number of classes, groups)."""
from dataclasses import dataclass

import torch

from ltkd.checks import check_non_negative
from ltkd.distillers.base import Distiller, LossConfig, Method
from toy_plugins.l2_logits import l2_logits_loss

RECEIVED = []  # the DistillerInputs each build got (the test reads them)


@dataclass(frozen=True)
class L2Config(LossConfig):
    alpha: float

    def check(self, num_classes):
        super().check(num_classes)
        check_non_negative("loss", self, "alpha")


class L2(Distiller):
    def __init__(self, student, teacher, ce, *, alpha, warmup_epochs, class_weights):
        super().__init__(student, teacher, ce, warmup_epochs=warmup_epochs)
        self.alpha = alpha
        self.register_buffer("class_weights", class_weights, persistent=False)

    def distill_loss(self, logits_s, features_s, logits_t, features_t, target, epoch):
        return self.alpha * self.class_weights[target].mean() * l2_logits_loss(logits_s, logits_t)


def build(cfg, student, teacher, ce, inputs):
    RECEIVED.append(inputs)
    assert len(inputs.train_counts) == inputs.num_classes == inputs.class_to_group.numel()
    counts = torch.tensor(inputs.train_counts, dtype=torch.float32, device=inputs.class_to_group.device)
    weights = (1 / counts) * inputs.num_classes / (1 / counts).sum()
    return L2(student, teacher, ce, alpha=cfg.alpha, warmup_epochs=cfg.warmup_epochs, class_weights=weights)


METHOD = Method("l2_logits", L2Config, build)
'''

LOSS_YAML = """
defaults:
  - base
name: l2_logits
alpha: 0.5
"""

DATASET_FILE = '''
"""A toy long-tailed dataset: 10 classes of random 32x32 images, made in memory."""
import torch

from ltkd.data.base import ImageSet, LongTailedData
from ltkd.data.profile import long_tailed_counts
from ltkd.data.spec import DatasetSpec


def read_toy(request):
    counts = long_tailed_counts(request.n_max, SPEC.num_classes, request.imbalance_factor)
    generator = torch.Generator().manual_seed(request.seed)
    train_labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    test_labels = torch.arange(SPEC.num_classes).repeat(2)

    def images(n):
        return torch.randint(0, 256, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)

    return LongTailedData(name=SPEC.name, num_classes=SPEC.num_classes, class_names=[str(c) for c in range(10)],
                          image_size=SPEC.image_size, mean=SPEC.mean, std=SPEC.std,
                          train=ImageSet(train_labels, images=images(len(train_labels))),
                          test=ImageSet(test_labels, images=images(len(test_labels))),
                          train_counts=counts, imbalance_factor=float(request.imbalance_factor))


SPEC = DatasetSpec(name="toy_lt", num_classes=10, n_max=8, image_size=32, mean=(0.5, 0.5, 0.5),
                   std=(0.25, 0.25, 0.25), read=read_toy, crop_padding=4)
'''

DATASET_YAML = """
defaults:
  - override /trainer@_global_.trainer: toy_lt

name: toy_lt
imbalance_factor: 4
seed: 0
n_max: null
group_fractions: [0.3, 0.4, 0.3]
split_file: null
test_split_file: null
max_test_per_class: null
"""

TRAINER_YAML = """
defaults:
  - default
epochs: 3
lr_milestones: [2]
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The README's steps: the three files of each kind, and one table line each; returns the config dir."""
    package = tmp_path / "src" / "toy_plugins"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "l2_logits.py").write_text(LOSS_FILE)  # 1. the loss, a pure function
    (package / "l2_distiller.py").write_text(DISTILLER_FILE)  # 2. the distiller module with its METHOD
    (package / "toy_data.py").write_text(DATASET_FILE)  # 1. the dataset module with its SPEC
    configs = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, configs)
    (configs / "loss" / "l2_logits.yaml").write_text(textwrap.dedent(LOSS_YAML))  # 3. the loss yaml
    (configs / "dataset" / "toy_lt.yaml").write_text(textwrap.dedent(DATASET_YAML))  # 2. the dataset yaml
    (configs / "trainer" / "toy_lt.yaml").write_text(textwrap.dedent(TRAINER_YAML))  # 3. its own recipe (optional)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    method = importlib.import_module("toy_plugins.l2_distiller").METHOD
    spec = importlib.import_module("toy_plugins.toy_data").SPEC
    monkeypatch.setitem(METHODS, method.name, method)  # the table lines
    monkeypatch.setitem(DATASETS, spec.name, spec)
    yield configs
    for name in [m for m in sys.modules if m.startswith("toy_plugins")]:
        del sys.modules[name]


def toy_config(configs: Path, tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        return compose("train", overrides=["dataset=toy_lt", "loss=l2_logits", "logger=none", "trainer.device=cpu",
                                           "trainer.batch_size=8", "teacher.arch=resnet8", "student.arch=resnet8",
                                           f"paths.teacher_cache={tmp_path / 'cache'}", *overrides])


def test_a_new_method_and_dataset_run_end_to_end_through_hydra(plugins: Path, tmp_path: Path):
    """A long-tailed method reads the class counts, their number and the groups from DistillerInputs: no core
    edit."""
    cfg = load_config(toy_config(plugins, tmp_path))
    assert (cfg.dataset.name, cfg.loss.name, cfg.loss.alpha, cfg.loss.ce_weight) == ("toy_lt", "l2_logits", 0.5, 1.0)
    assert cfg.trainer.epochs == 3  # the dataset's own recipe (configs/trainer/toy_lt.yaml)
    metrics = pipeline.run(cfg, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["loss"] == "l2_logits"
    assert metrics["dataset"] == "toy_lt" and metrics["train_counts"] == long_tailed_counts(8, 10, 4)
    assert [len(members) for members in metrics["groups"].values()] == [3, 4, 3]
    history = metrics["student"]["history"]
    assert len(history) == 3 and all(h["train/loss_kd"] > 0 for h in history)
    received = importlib.import_module("toy_plugins.l2_distiller").RECEIVED
    assert len(received) == 2  # the check step's throwaway distiller, then the student's
    for inputs in received:
        assert inputs.train_counts == tuple(long_tailed_counts(8, 10, 4)) and inputs.num_classes == 10
        assert inputs.class_to_group.tolist() == [0] * 3 + [1] * 4 + [2] * 3


def _raises(self, *args):
    raise ValueError("boom")


def _narrow_logits(self, images, target, epoch):
    logits, losses = Distiller.forward(self, images, target, epoch)
    return logits[:, :5], losses


def _per_sample_loss(self, logits_s, features_s, logits_t, features_t, target, epoch):
    return (logits_s - logits_t).pow(2).mean(1)


@pytest.mark.parametrize(("where", "mistake", "message"), [
    ("distill_loss", _raises, r"the method failed its check step on a dummy batch, before any training "
                              r"\(ValueError: boom\)$"),
    ("forward", _narrow_logits, r"L2.forward returned logits of shape \(2, 5\); expected \(2, 10\)"),
    ("distill_loss", _per_sample_loss, r"L2.forward returned 'loss_kd' of shape \(2,\); expected a scalar"),
    ("build", _raises, r"the method failed its check step .*\(ValueError: boom\)"),
], ids=["raises", "wrong-logits-shape", "non-scalar-loss", "build-raises"])
def test_a_plug_in_s_mistake_fails_the_run_in_one_line_before_the_teacher_trains(
        plugins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where, mistake, message):
    module = importlib.import_module("toy_plugins.l2_distiller")
    if where == "build":
        monkeypatch.setitem(METHODS, "l2_logits", dataclasses.replace(METHODS["l2_logits"], build=mistake))
    else:
        monkeypatch.setattr(module.L2, where, mistake)
    started = time.perf_counter()
    status, line = execute(toy_config(plugins, tmp_path), tmp_path / "run", "")
    assert status == USER_ERROR_EXIT_CODE and "\n" not in line
    assert re.match(rf"error: loss=l2_logits: .*{message}", line), line
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())  # no teacher, not even begun
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert time.perf_counter() - started < 60  # the toy teacher alone trains for longer on 2 shared cores


def test_the_new_method_s_config_is_checked_against_its_own_keys(plugins: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match=r"^loss\.alpha: -1; must be >= 0$"):
        load_config(toy_config(plugins, tmp_path, "loss.alpha=-1"))
    raw = toy_config(plugins, tmp_path)
    with open_dict(raw):
        raw.loss.temperature = 4.0  # a key of other methods, not of this one
    with pytest.raises(ConfigError, match=r"^loss\.temperature: unknown config key for loss=l2_logits; its keys: "
                                          r"alpha, ce_weight, logit_adjust_tau, name, warmup_epochs$"):
        load_config(raw)
