"""A sweep goes on past a job whose overrides do not compose (`loss=foo,kd`): that job fails with its one line,
the others run, and the summary lists it as failed."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.plugins.sweeper import Sweeper
from hydra.types import RunMode

from ltkd import sweep
from ltkd.recipes import CONFIG_DIR
from ltkd.train import hydra_error_line
from tests.conftest import toy_overrides
from tests.test_train import run_cli


def test_a_job_that_does_not_compose_is_recorded_and_stood_in_for(tmp_path: Path):
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(CONFIG_DIR))
    master = loader.load_configuration("train", overrides=[f"hydra.sweep.dir={tmp_path}"], run_mode=RunMode.MULTIRUN)
    sweeper = SimpleNamespace(config=master, hydra_context=SimpleNamespace(config_loader=loader))
    first, second = [["loss=foo"], ["loss=kd"]], [["loss=kd", "loss.alpah=2"]]
    kept = [list(job) for job in first + second]
    original = Sweeper.validate_batch_is_legal
    with sweep.composition_errors_tolerated(hydra_error_line):
        Sweeper.validate_batch_is_legal(sweeper, first)  # before: MissingConfigException, the sweep refused
        Sweeper.validate_batch_is_legal(sweeper, second)  # the next batch: numbered on
    assert Sweeper.validate_batch_is_legal is original
    assert first[1] == kept[1]  # a job that composes is left as it is
    outcomes = {o["job"]: o for o in sweep.read_outcomes(tmp_path)}
    assert sorted(outcomes) == [0, 2]
    assert outcomes[0]["overrides"] == kept[0] and outcomes[0]["status"] == 2
    assert outcomes[0]["message"].startswith("error: loss: unknown option 'foo'; available: base, bkd, ce, ")
    assert outcomes[2]["message"].startswith("error: loss.alpah: unknown config key for loss=kd; its keys: alpha, ")
    cfg = loader.load_sweep_config(master, first[0])  # what the launcher composes and runs in its place
    assert cfg[sweep.COMPOSITION_ERROR_KEY] == outcomes[0]["message"]
    assert cfg.hydra.sweep.subdir == f"{sweep.OUTCOMES_DIR}/uncomposed-0"
    assert second[0][1] == f"hydra.sweep.subdir={sweep.OUTCOMES_DIR}/uncomposed-2"


@pytest.mark.slow  # a toy sweep through the CLI
def test_a_sweep_goes_on_past_a_job_that_does_not_compose(fake_cifar_root: Path, tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    args = toy_overrides(fake_cifar_root, tmp_path / "cache", "loss=foo,kd", f"hydra.sweep.dir={sweep_dir}")
    proc = run_cli("-m", *args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]  # before: 2, and no job ran
    (finished,) = sweep_dir.rglob("metrics.json")
    assert json.loads(finished.read_text())["loss"] == "kd"
    assert proc.stderr.startswith("error: loss: unknown option 'foo'; available: base, bkd, ce, dkd, kd, ")
    assert "sweep: 2 jobs, 1 succeeded, 1 failed" in proc.stderr
    assert "loss=foo] exit 2: error: loss: unknown option 'foo'" in proc.stderr and "Traceback" not in proc.stderr
