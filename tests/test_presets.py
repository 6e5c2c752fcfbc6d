"""The open-question presets: each an experiment with a table name, valid at every grid point, runnable."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from ltkd.config import load_config
from ltkd.recipes import CONFIG_DIR
from tests.helpers import ROOT, run_cli, toy_overrides

PRESETS = {"table_ltkd_logit_adjust": 3, "table_ltkd_groups": 4, "table_ltkd_batch_size": 8,
           "table_ltkd_alpha_beta": 12, "table_ltkd_debiased_teacher": 4}
LOSSES = {"table_ltkd_debiased_teacher": {"kd", "ltkd"}}  # the students' methods where not LTKD alone


def grid(preset: str, data_root: Path, cache: Path) -> list:
    """Every job of the preset's sweep, composed at toy size and validated."""
    base = toy_overrides(data_root, cache, f"experiment={preset}")
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


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_runs_at_smoke_scale_and_tabulates(preset: str, fake_cifar_root: Path, tmp_path: Path):
    import subprocess
    import sys

    overrides = toy_overrides(fake_cifar_root, tmp_path / "cache", f"experiment={preset}", f"sweep_name={preset}",
                              f"paths.sweep_root={tmp_path / 'multirun'}")
    proc = run_cli("-m", *overrides, cwd=tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_table.py"), str(tmp_path / "multirun"),
                            "--name", preset, "--out", str(tmp_path / "results")], capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    md = (tmp_path / "results" / f"{preset}.md").read_text()
    assert sum(md.count(f"| {loss} (") for loss in LOSSES.get(preset, {"ltkd"})) == PRESETS[preset]
    assert "REDUCED SCALE" in md
    assert (tmp_path / "results" / f"{preset}_group_mass.md").exists()
