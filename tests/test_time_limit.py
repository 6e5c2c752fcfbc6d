"""trainer.time_limit: budgets parse, the loop checkpoints and stops (exit 75) before the budget runs out, and
re-running continues exactly; a parallel multirun honours the budget in every job."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
import torch

from ltkd.checkpoint import load_checkpoint
from ltkd.config import LossConfig, load_config
from ltkd.data import class_to_group, split_groups
from ltkd.data.loaders import DeviceLoader
from ltkd.deadline import LAUNCH_TIME_ENV, STOP_MARGIN_S, parse_duration
from ltkd.distillers import build_distiller
from ltkd.engine import PREEMPTED_EXIT_CODE, Preempted, Stage, StopSignal
from ltkd.errors import ConfigError
from ltkd.loggers import NullLogger
from ltkd.models import create_model
from ltkd.runtime import Runtime
from tests.helpers import CLASSES, MEAN, STD, run_cli, toy_overrides, toy_problem

PLAIN_CE = LossConfig(name="ce", ce_weight=1.0, warmup_epochs=0, logit_adjust_tau=0.0)


@pytest.mark.parametrize(("text", "seconds"), [("8m", 480), ("90s", 90), ("1h30m", 5400), ("1.5m", 90), (480, 480),
                                               ("480", 480), ("2h", 7200)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "8x", "-5", 0, "5m3h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match=r"^.* is not a (positive )?duration$"):
        parse_duration(text)


def test_stop_reason_honours_the_margin_before_the_deadline():
    assert StopSignal().reason() is None
    assert StopSignal(deadline=time.time() + STOP_MARGIN_S + 60).reason() is None
    assert StopSignal(deadline=time.time() + STOP_MARGIN_S - 1).reason() == "time limit"
    signalled = StopSignal(deadline=time.time() + 3600)
    signalled.received = signal.SIGTERM
    assert signalled.reason() == "stop signal"


def toy_stage(cfg, checkpoint: Path, stop: StopSignal) -> Stage:
    """A CE stage of resnet8 on a small toy problem, seeded identically every time."""
    runtime = Runtime(torch.device("cpu"), bf16=False, channels_last=False)
    torch.manual_seed(0)
    model = create_model("resnet8", CLASSES)
    groups = split_groups([1] * CLASSES)
    module = build_distiller(PLAIN_CE, model, None, class_to_group=class_to_group(groups, CLASSES),
                             train_counts=[1] * CLASSES, input_size=32)
    train, test = toy_problem(8, seed=0), toy_problem(2, seed=1)
    loader = DeviceLoader(train.images, train.labels, batch_size=16, train=True, mean=MEAN, std=STD, pad=4,
                          device="cpu", seed=0)
    test_batches = DeviceLoader(test.images, test.labels, batch_size=100, train=False, mean=MEAN, std=STD, pad=0,
                                device="cpu")
    from ltkd.evaluation import accuracy_from_counts, class_counts

    def evaluate():
        return accuracy_from_counts(*class_counts(model, test_batches, CLASSES, runtime.autocast), groups)

    return Stage("teacher", module, module.trainable_parameters(), train_loader=loader, evaluate=evaluate,
                 trainer=cfg.trainer, lr=0.05, runtime=runtime, checkpoint_path=checkpoint, logger=NullLogger(),
                 stop=stop)


def test_time_limit_saves_mid_epoch_and_the_rerun_continues_exactly(compose_toy, tmp_path: Path):
    cfg = load_config(compose_toy("trainer.epochs=2", "trainer.lr_milestones=[1]",
                                  "trainer.max_steps_per_epoch=null"))
    reference = toy_stage(cfg, tmp_path / "reference.ckpt", StopSignal()).run(resume=False)
    checkpoint = tmp_path / "budgeted.ckpt"
    with pytest.raises(Preempted, match=r"time limit: checkpoint saved at epoch 1, step 1 "):
        toy_stage(cfg, checkpoint, StopSignal(deadline=time.time())).run(resume=False)
    assert load_checkpoint(checkpoint)["skip_steps"] == 1
    resumed = toy_stage(cfg, checkpoint, StopSignal()).run(resume=True)
    assert resumed.final == reference.final
    untimed = [[{k: v for k, v in r.items() if k != "time_s"} for r in result.history]
               for result in (resumed, reference)]
    assert untimed[0] == untimed[1] and all(r["time_s"] > 0 for r in reference.history)


def test_spent_budget_exits_75_and_rerunning_continues_in_the_same_run_dir(fake_cifar_root: Path, tmp_path: Path):
    args = toy_overrides(fake_cifar_root, tmp_path / "cache", "loss=kd", f"paths.output_root={tmp_path / 'out'}")
    spent = {LAUNCH_TIME_ENV: repr(time.time() - 3600)}
    stopped = run_cli(*args, "trainer.time_limit=1h", cwd=tmp_path, env_extra=spent)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-2000:]
    assert "time limit during start-up" in stopped.stderr and "Traceback" not in stopped.stderr
    (run_dir,) = {p.parent for p in (tmp_path / "out").rglob("config.yaml")}
    assert not (run_dir / "metrics.json").exists()
    finished = run_cli(*args, cwd=tmp_path)  # no budget now: the same run directory, completed
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert (run_dir / "metrics.json").exists()


def test_a_budget_within_start_up_and_the_margin_is_refused_not_stopped(fake_cifar_root: Path, tmp_path: Path):
    """16 s minus the 15 s margin runs out during start-up (torch alone takes longer to import) on every re-run:
    refused (status 2), not a stop (status 75) re-run for ever."""
    args = toy_overrides(fake_cifar_root, tmp_path / "cache", "loss=kd", f"hydra.run.dir={tmp_path / 'run'}")
    proc = run_cli(*args, "trainer.time_limit=16s", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert re.fullmatch(r"error: trainer\.time_limit: '16s' ran out during start-up; a re-run would stop there "
                        r"again; must be more than (\d+)s \(start-up \d+ s plus the 15 s stop margin\)", lines[0])


def test_a_budget_no_longer_than_the_stop_margin_is_refused_up_front(compose_toy):
    with pytest.raises(ConfigError, match=r"^trainer\.time_limit: '15s'; must be more than the 15 s stop margin"):
        load_config(compose_toy("trainer.time_limit=15s"))
    assert load_config(compose_toy("trainer.time_limit=16s")).trainer.time_limit == "16s"
