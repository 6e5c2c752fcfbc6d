"""A sweep goes on past a job whose overrides do not compose (`loss=foo,kd`): that job fails with its one line,
the others run, and the summary lists it as failed."""

from __future__ import annotations

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
from tests.helpers import cli_in_process, toy_overrides


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


@pytest.mark.slow  # about 5 s on the loaded 2-core machine: a whole (if short) sweep
def test_a_sweep_in_process_lists_the_job_that_did_not_compose(fake_cifar_root: Path, tmp_path: Path, monkeypatch,
                                                               capsys):

    sweep_dir = tmp_path / "sweep"  # the kd job fails its validation at once: no training, a fast sweep
    args = toy_overrides(fake_cifar_root, tmp_path / "cache", "loss=foo,kd", "loss.alpha=inf",
                         f"hydra.sweep.dir={sweep_dir}")
    original = Sweeper.validate_batch_is_legal
    status, stderr = cli_in_process(monkeypatch, capsys, "-m", *args)
    assert status == 1, stderr[-3000:]  # before: 2, the sweep refused before any job
    assert "sweep: 2 jobs, 0 succeeded, 2 failed" in stderr
    job0, job1 = [line for line in stderr.splitlines() if line.startswith("  job ")]
    assert job0.startswith("  job 0 [") and "loss=foo loss.alpha=inf] exit 2: error: loss: unknown option 'foo'" in job0
    assert job1.startswith("  job 1 [") and "loss=kd loss.alpha=inf] exit 2: error: loss.alpha: expected a " in job1
    assert Sweeper.validate_batch_is_legal is original  # restored after the sweep
