"""The open-question presets: each an experiment with a table name, valid at every grid point, runnable."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from ltkd.config import load_config
from ltkd.recipes import CONFIG_DIR
from tests.helpers import ROOT, run_cli, toy_overrides

PRESETS = {"table_ltkd_logit_adjust": 3, "table_ltkd_groups": 4, "table_ltkd_batch_size": 8,
           "table_ltkd_alpha_beta": 12, "table_ltkd_debiased_teacher": 4, "table_ltkd_vit_student": 2}
# the students' methods where not LTKD alone
LOSSES = {"table_ltkd_debiased_teacher": {"kd", "ltkd"}, "table_ltkd_vit_student": {"kd", "ltkd"}}
STUDENTS = {"table_ltkd_vit_student": "vit_tiny"}  # a preset whose question is the student keeps it at toy size


def preset_overrides(preset: str, data_root: Path, cache: Path, *overrides: str) -> list[str]:
    """The toy overrides for running `preset` (its own student kept where the question is about it)."""
    student = [f"student.arch={STUDENTS[preset]}"] if preset in STUDENTS else []
    toy = [o for o in toy_overrides(data_root, cache) if not (student and o.startswith("student.arch="))]
    return [*toy, *student, f"experiment={preset}", *overrides]


def grid(preset: str, data_root: Path, cache: Path) -> list:
    """Every job of the preset's sweep, composed at toy size and validated."""
    base = preset_overrides(preset, data_root, cache)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        params = compose("train", overrides=base, return_hydra_config=True).hydra.sweeper.params
        sweeps = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
        axes = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in sweeps]
        return [load_config(compose("train", overrides=[*base, *job])) for job in itertools.product(*axes)]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_job_of_the_preset_is_a_valid_ltkd_run(preset: str, fake_cifar_root: Path, tmp_path: Path):
    jobs = grid(preset, fake_cifar_root, tmp_path)
    assert len(jobs) == PRESETS[preset] and {cfg.loss.name for cfg in jobs} == LOSSES.get(preset, {"ltkd"})
    assert len({repr(cfg) for cfg in jobs}) == len(jobs)  # no two jobs alike
    assert (Path(ROOT) / "configs" / "experiment" / f"{preset}.yaml").read_text().startswith("# @package _global_")


def test_presets_vary_what_their_question_asks(fake_cifar_root: Path, tmp_path: Path):
    def varied(preset: str, get) -> list:
        return sorted({get(cfg) for cfg in grid(preset, fake_cifar_root, tmp_path)}, key=str)

    assert varied("table_ltkd_logit_adjust", lambda c: c.loss.logit_adjust_tau) == [0.0, 0.5, 1.0]
    assert varied("table_ltkd_groups", lambda c: len(c.loss.group_fractions)) == [10, 2, 3, 5]
    assert varied("table_ltkd_groups", lambda c: c.dataset.group_fractions) == [(0.33, 0.34, 0.33)]
    assert varied("table_ltkd_batch_size", lambda c: (c.trainer.batch_size, c.trainer.lr, c.loss.rebalance)) == [
        (128, 0.1, "batch"), (128, 0.1, "ema"), (16, 0.0125, "batch"), (16, 0.0125, "ema"),
        (32, 0.025, "batch"), (32, 0.025, "ema"), (64, 0.05, "batch"), (64, 0.05, "ema")]
    assert len(varied("table_ltkd_alpha_beta", lambda c: (c.loss.alpha, c.loss.beta))) == 12
    assert varied("table_ltkd_debiased_teacher", lambda c: (c.teacher.objective, c.loss.name)) == [
        ("ce", "kd"), ("ce", "ltkd"), ("logit_adjusted", "kd"), ("logit_adjusted", "ltkd")]
    assert varied("table_ltkd_debiased_teacher", lambda c: c.teacher.tau) == [1.0]
    # the ViT student trains with its own recipe (the warm-up scaled from 5 of 240 epochs to none of 2), the
    # teacher with the trainer's SGD
    assert varied("table_ltkd_vit_student", lambda c: (c.loss.name, c.student.arch, c.pair.name, c.trainer.optimizer,
                                                       c.stage_trainer("student").optimizer,
                                                       c.stage_trainer("student").lr_schedule,
                                                       c.stage_trainer("student").warmup_epochs)) == [
        ("kd", "vit_tiny", "resnet32x4_vit_tiny", "sgd", "adamw", "cosine", 0),
        ("ltkd", "vit_tiny", "resnet32x4_vit_tiny", "sgd", "adamw", "cosine", 0)]


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_runs_at_smoke_scale_and_tabulates(preset: str, fake_cifar_root: Path, tmp_path: Path):
    import subprocess
    import sys

    overrides = preset_overrides(preset, fake_cifar_root, tmp_path / "cache", f"sweep_name={preset}",
                                 f"paths.sweep_root={tmp_path / 'multirun'}")
    proc = run_cli("-m", *overrides, cwd=tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_table.py"), str(tmp_path / "multirun"),
                            "--name", preset, "--out", str(tmp_path / "results")], capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    md = (tmp_path / "results" / f"{preset}.md").read_text()
    rows = [re.findall(rf"\| {loss}(?: \(.*?\))? \|", md) for loss in LOSSES.get(preset, {"ltkd"})]
    assert sum(map(len, rows)) == PRESETS[preset]  # one row per job (a variant label where a method has several)
    assert "REDUCED SCALE" in md
    assert (tmp_path / "results" / f"{preset}_group_mass.md").exists()
    if preset == "table_ltkd_vit_student":  # the ViT trained with its own recipe, the teacher with SGD
        runs = sorted((tmp_path / "multirun").glob("**/metrics.json"))
        assert len(runs) == PRESETS[preset]
        for path in runs:
            metrics = json.loads(path.read_text())
            assert (metrics["teacher_arch"], metrics["student_arch"]) == ("resnet8", "vit_tiny")
            student = [(h["lr"], h["momentum"], h["weight_decay"]) for h in metrics["student"]["history"]]
            assert student == [(1e-3, 0.9, 0.05), (5e-4, 0.9, 0.05)]  # AdamW, a cosine over 2 epochs
            assert [h["weight_decay"] for h in metrics["teacher"]["history"]] == [5e-4, 5e-4]  # SGD's
