"""Every failure is one line and a documented exit status; a sweep survives a bad job; signals at start-up,
while waiting for a teacher and Ctrl-C stop promptly; a read-only teacher cache is usable."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pickle
import signal
import time
from pathlib import Path

import pytest

from ltkd import checkpoint, pipeline
from ltkd.config import load_config
from ltkd.errors import INTERRUPTED_EXIT_CODE, OUTPUT_ERROR_EXIT_CODE, PREEMPTED_EXIT_CODE, ConfigError
from ltkd.teacher_cache import TeacherCache, teacher_key
from ltkd.train import execute
from tests.fakedata import write_fake_cifar100, write_fake_tinyimagenet
from tests.helpers import (
    KILL_POINTS,
    LONGER,
    cli_in_process,
    drop_test_class,
    run_cli,
    start_cli,
    toy_overrides,
    wait_for,
)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize(("override", "message"), [
    ("pair=foo", "error: pair: unknown option 'foo'; available: resnet32_resnet8, "),
    ("loss=foo", "error: loss: unknown option 'foo'; available: base, bkd, ce, dkd, "),
    ("dataset=foo", "error: dataset: unknown option 'foo'; available: cifar100_lt, imagenet_lt, tinyimagenet_lt"),
    ("loss.alpah=2", "error: loss.alpah: unknown config key for loss=kd; its keys: alpha, ce_weight, "),
    ("loss.rebalance=ema", "error: loss.rebalance: unknown config key for loss=kd; its keys: alpha, ce_weight, "),
    ("trainer.lr_milestones=[150,180,210]", "error: trainer.lr_milestones: [150, 180, 210]; each must be in [1, "
     "trainer.epochs=2] (a later milestone never takes effect); the recipe's schedule scaled to 2 epochs: "
     "trainer.lr_milestones=[1,2]"),
    ("trainer.epoch=3", "error: trainer.epoch: unknown config key; allowed keys here: batch_size, "),
    ("dataset.imbalance_factor=abc", "error: dataset.imbalance_factor: expected a finite number, got 'abc'"),
    ("debug=maybe", "error: debug: expected true or false, got 'maybe'"),  # not re-raised as if debug were on
    ("debug=1", "error: debug: expected true or false, got 1"),
    ("trainer.compile=yes", "error: trainer.compile: expected true or false, got 'yes'"),
])
def test_unknown_options_keys_and_bad_values_are_one_line_and_status_2(override: str, message: str,
                                                                       fake_cifar_root: Path, tmp_path: Path):
    proc = run_cli(*toy_overrides(fake_cifar_root, tmp_path / "cache"), override, cwd=tmp_path)  # no hydra.run.dir
    assert proc.returncode == 2
    assert one_line(proc.stderr).startswith(message)


def test_a_class_without_test_images_stops_before_training(tmp_path: Path):
    drop_test_class(write_fake_cifar100(tmp_path / "data", per_class_train=12, per_class_test=3), 99)
    run = tmp_path / "run"
    proc = run_cli(*toy_overrides(tmp_path / "data", tmp_path / "cache", f"hydra.run.dir={run}"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "the test set has no image of class 99 ('class_99'" in one_line(proc.stderr)
    assert not (run / "checkpoints").exists() and not (tmp_path / "cache").exists()  # no teacher trained


def test_a_long_override_list_still_names_a_valid_directory(fake_cifar_root: Path, tmp_path: Path):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    import ltkd.train

    fractions = "loss.group_fractions=[" + ",".join(["0.01"] * 100) + "]"
    with initialize_config_dir(config_dir=ltkd.recipes.CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=toy_overrides(fake_cifar_root, tmp_path, "loss=ltkd", fractions),
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    run_dir = tmp_path / cfg.hydra.run.dir
    run_dir.mkdir(parents=True)  # "File name too long" before
    assert "loss.group_fractions=[0.01,0.01" in run_dir.name and len(run_dir.name) <= 255


def fail_writing(monkeypatch, target: str, error: int, text: str) -> None:
    """Make the atomic write of files named `target` fail as a full disk or a read-only directory would."""
    real = checkpoint.os.fsync

    def fsync(fd: int) -> None:
        if target in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(error, text)
        real(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)


@pytest.mark.parametrize(("target", "error", "text"), [
    ("config.yaml", errno.EROFS, "Read-only file system"),  # the first file a run writes
    ("student.ckpt", errno.ENOSPC, "No space left on device"),
    ("metrics.json", errno.ENOSPC, "No space left on device"),
])
def test_a_full_disk_or_read_only_directory_is_one_line_and_status_74(target: str, error: int, text: str,
                                                                      compose_toy, tmp_path: Path, monkeypatch):
    fail_writing(monkeypatch, target, error, text)
    status, message = execute(compose_toy("loss=kd"), tmp_path / "run", "")
    assert status == OUTPUT_ERROR_EXIT_CODE == 74
    assert message.startswith("error: cannot write '") and f"{target}': {text}" in message and "\n" not in message
    assert not list((tmp_path / "run").rglob("*.tmp"))  # no partial file left
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("how", ["in-process", pytest.param("command", marks=pytest.mark.slow)])
def test_a_file_in_place_of_the_output_root_is_one_line_and_status_74(how: str, fake_cifar_root: Path,
                                                                      tmp_path: Path, monkeypatch, capsys):
    root = tmp_path / "outputs"
    root.write_text("")
    args = [*toy_overrides(fake_cifar_root, tmp_path / "cache"), f"paths.output_root={root}"]
    if how == "command":  # `python -m ltkd.train` itself
        proc = run_cli(*args, cwd=tmp_path)
        status, stderr = proc.returncode, proc.stderr
    else:
        status, stderr = cli_in_process(monkeypatch, capsys, *args)
    assert status == OUTPUT_ERROR_EXIT_CODE  # a traceback from Hydra's mkdir before
    line = one_line(stderr)
    assert line.startswith(f"error: cannot write '{root}/") and line.endswith(f"('{root}' is a file, not a directory)")


def make_read_only(root: Path, monkeypatch) -> None:
    """Creating anything under `root` fails as in a read-only directory, also for root (which ignores modes)."""
    root.mkdir(mode=0o555)
    if os.geteuid() != 0:
        return
    real = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path).parent == root:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        real(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_a_read_only_output_root_is_one_line_and_status_74(mode: str, fake_cifar_root: Path, tmp_path: Path,
                                                           monkeypatch, capsys):
    root = tmp_path / "read-only"
    make_read_only(root, monkeypatch)
    flags, where = (["-m"], [f"paths.sweep_root={root}", "loss.alpha=1,2"]) if mode == "sweep" else \
        ([], [f"paths.output_root={root}"])
    status, stderr = cli_in_process(monkeypatch, capsys, *flags, *toy_overrides(fake_cifar_root, tmp_path, *where))
    assert status == OUTPUT_ERROR_EXIT_CODE, stderr
    line = one_line(stderr)
    assert line.startswith(f"error: cannot write '{root}/") and line.endswith("': Permission denied"), line
    assert not os.listdir(root)


def binary(path: Path) -> None:
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)))  # a gzip header, then every byte


def a_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def two_d_labels(path: Path) -> None:
    with open(path, "rb") as f:
        content = pickle.load(f)
    with open(path, "wb") as f:
        pickle.dump({**content, "fine_labels": [[y] for y in content["fine_labels"]]}, f)


BAD_INPUTS = {  # dataset, file, how it is broken, what the one line says
    "binary wnids.txt": ("tinyimagenet_lt", "tiny-imagenet-200/wnids.txt", binary,
                         "wnids.txt: not a text file (byte 0x8b at offset 1 is not UTF-8); expected one wnid per line"),
    "binary words.txt": ("tinyimagenet_lt", "tiny-imagenet-200/words.txt", binary, "words.txt: not a text file"),
    "val_annotations.txt a directory": ("tinyimagenet_lt", "tiny-imagenet-200/val/val_annotations.txt", a_directory,
                                        "cannot read '{path}': Is a directory; expected lines 'filename<TAB>wnid"),
    "2-D CIFAR labels": ("cifar100_lt", "cifar-100-python/train", two_d_labels,
                         "train: fine_labels has shape (1200, 1); expected one class index per image"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_an_unreadable_dataset_file_is_one_line_naming_it_and_status_2(case: str, compose_toy, tmp_path: Path):
    dataset, name, corrupt, message = BAD_INPUTS[case]
    root = tmp_path / "data"
    if dataset == "cifar100_lt":
        write_fake_cifar100(root, per_class_train=12, per_class_test=1)
    else:
        write_fake_tinyimagenet(root, num_classes=3, per_class_train=12, per_class_val=1)
    corrupt(root / name)
    status, line = execute(compose_toy(f"dataset={dataset}", f"data.root={root}"), tmp_path / "run", "")
    assert status == 2 and "\n" not in line  # a traceback (text) or 'cannot write', status 74 (a directory) before
    assert line.startswith("error: ") and str(root / name) in line and message.format(path=root / name) in line


def test_a_batch_larger_than_the_training_set_is_refused(compose_toy, tmp_path: Path):
    cfg = load_config(compose_toy("loss=kd", "trainer.batch_size=100000"))
    with pytest.raises(ConfigError, match=r"trainer.batch_size: 100000 exceeds the \d+ training images"):
        pipeline.run(cfg, tmp_path / "run")


def test_a_sweep_goes_on_past_a_failed_job_and_reports_it(fake_cifar_root: Path, tmp_path: Path):
    sweep = tmp_path / "sweep"
    args = toy_overrides(fake_cifar_root, tmp_path / "cache", "loss=ltkd", "loss.alpha=inf,1",
                         f"hydra.sweep.dir={sweep}")
    proc = run_cli("-m", *args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    (finished,) = sweep.rglob("metrics.json")  # job 1 ran
    assert json.loads(finished.read_text())["config"]["loss"]["alpha"] == 1
    assert "sweep: 2 jobs, 1 succeeded, 1 failed" in proc.stderr
    assert "job 0 [" in proc.stderr and "loss.alpha=inf] exit 2: error: loss.alpha: expected a finite number" in \
        proc.stderr


def test_sigterm_during_start_up_exits_with_the_preemption_status(fake_cifar_root: Path, tmp_path: Path):
    proc = start_cli(toy_overrides(fake_cifar_root, tmp_path / "cache", f"hydra.run.dir={tmp_path / 'run'}"),
                     tmp_path)
    time.sleep(1.0)  # importing torch and composing the config take longer
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == PREEMPTED_EXIT_CODE


def test_sigterm_while_waiting_for_another_jobs_teacher_stops_promptly(compose_toy, fake_cifar_root: Path,
                                                                      tmp_path: Path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    cache.mkdir()
    key = teacher_key(load_config(compose_toy("loss=kd")), bf16=False)
    with open(cache / f"{TeacherCache(cache, key).name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another job is training this teacher
        proc = start_cli(toy_overrides(fake_cifar_root, cache, "loss=kd", f"hydra.run.dir={run}"), tmp_path)
        wait_for(lambda: (run / "config.yaml").exists(), proc)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)  # before: waited for the lock, i.e. for the other teacher
    assert proc.returncode == PREEMPTED_EXIT_CODE
    assert "waiting for another job's teacher" in one_line(stderr)


def test_ctrl_c_saves_a_checkpoint_and_exits_130_without_a_traceback(fake_cifar_root: Path, tmp_path: Path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    proc = start_cli(toy_overrides(fake_cifar_root, cache, *LONGER, f"hydra.run.dir={run}"), tmp_path)
    wait_for(lambda: KILL_POINTS["student"](cache, run), proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == INTERRUPTED_EXIT_CODE
    assert "checkpoint saved" in stderr and "Traceback" not in stderr
    assert checkpoint.load_checkpoint(run / "checkpoints" / "student.ckpt")["skip_steps"] > 0


def test_a_read_only_cache_with_a_valid_entry_is_read_without_a_lock(compose_toy, tmp_path: Path, monkeypatch,
                                                                     capsys):
    cfg = load_config(compose_toy("loss=kd"))
    pipeline.run(cfg, tmp_path / "first")  # fills the (shared) cache

    def read_only(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self.root / f"{self.name}.lock"))

    monkeypatch.setattr(TeacherCache, "locked", read_only)
    capsys.readouterr()
    pipeline.run(cfg, tmp_path / "second")
    assert "[teacher] loaded from cache" in capsys.readouterr().out
