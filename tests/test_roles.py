"""Each config field states its role once (ltkd/config.py `role`): the run identity, the run directory's name,
the teacher cache key and the table's rows all follow from it."""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ltkd import config, stages
from ltkd.build import build_context
from ltkd.checkpoint import save_checkpoint
from ltkd.config import RESULT, ROLES, SPEED, field_keys, key_role, load_config, run_dir_exclude_keys, run_identity
from ltkd.models import create_model
from ltkd.recipes import CONFIG_DIR
from ltkd.results import collect, find_metrics, to_rows
from ltkd.teacher_cache import TeacherCache, teacher_key
from tests.conftest import toy_overrides


def _hydra_dirname(*overrides: str) -> tuple[str, list[str]]:
    """The run directory's override part for `overrides`, and the exclude_keys Hydra used."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    return cfg.hydra.job.override_dirname, list(cfg.hydra.job.config.override_dirname.exclude_keys)


def _metrics(root: Path, name: str, seed: int, overall: float, cfg: dict) -> None:
    run = root / name
    run.mkdir(parents=True)
    acc = {"overall": overall, "head": overall, "medium": overall, "tail": overall, "per_class": []}
    (run / "metrics.json").write_text(json.dumps({
        "dataset": "cifar100_lt", "imbalance_factor": 100, "teacher_arch": "resnet32x4", "student_arch": "resnet8x4",
        "loss": "ltkd", "seed": seed, "epochs": 240, "max_steps_per_epoch": None,
        "teacher": {"final": acc, "best": acc, "source": f"cache/{name}.pt"},
        "student": {"final": acc, "best": acc}, "config": cfg}))


def test_every_key_of_the_config_has_one_of_the_roles():
    top = {f.name: f for f in dataclasses.fields(config.RunConfig)}
    assert all(f.metadata.get("role") in ROLES for f in top.values())  # every section states one
    for key, _ in field_keys():
        assert key_role(key)[0] in ROLES, key
    assert key_role("loss.alpha") == (RESULT, False) and key_role("trainer.weight_decay") == (RESULT, True)
    assert key_role("trainer.num_workers")[0] == SPEED and key_role("paths.teacher_cache")[0] == "files"


def test_hydra_names_the_run_directory_without_the_keys_that_do_not_change_results():
    dirname, used = _hydra_dirname("trainer.num_workers=0", "trainer.share_teacher=false", "trainer.eval_batch_size=7",
                                   "trainer.checkpoint_every=3", "logger=none", "trainer.eval_every=2",
                                   "trainer.loader=dataloader", "experiment=demo")
    assert used == run_dir_exclude_keys()  # the YAML holds no list of its own: the resolver gives it
    assert dirname == "experiment=demo,trainer.eval_every=2,trainer.loader=dataloader"


def test_a_new_speed_knob_stated_once_is_left_out_of_all_four_views(fake_cifar_root: Path, tmp_path: Path,
                                                                     monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class TrainerWithKnob(config.TrainerConfig):
        prefetch: int = config.role(SPEED)  # the one place it is stated (its default would be in the YAML)

    monkeypatch.setattr(config, "TrainerConfig", TrainerWithKnob)  # what RunConfig's `trainer: TrainerConfig` reads
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        knob = load_config(compose("train", overrides=toy_overrides(fake_cifar_root, tmp_path / "cache",
                                                                      "+trainer.prefetch=8")))
    base = _changed(knob, "trainer.prefetch", 2)
    assert knob.trainer.prefetch == 8
    assert run_identity(knob.to_dict()) == run_identity(base.to_dict())  # 1. the run identity
    assert "trainer.prefetch" in run_dir_exclude_keys()  # 2. the run directory's name
    assert _hydra_dirname("+trainer.prefetch=8", "trainer.eval_every=2")[0] == "trainer.eval_every=2"
    assert teacher_key(knob, bf16=False) == teacher_key(base, bf16=False)  # 3. the teacher cache key
    for seed, (cfg, overall) in enumerate(((base, 40.0), (knob, 42.0))):  # 4. the table's rows
        _metrics(tmp_path / "runs", f"s{seed}", seed, overall, {**cfg.to_dict(), "seed": seed})
    rows = {r["method"]: r for r in to_rows(collect(find_metrics(tmp_path / "runs")), {})}
    assert rows["ltkd"]["seeds"] == "2" and rows["ltkd"]["overall"] == "41.00 ± 1.41"


def _changed(cfg: config.RunConfig, key: str, value) -> config.RunConfig:
    """`cfg` with the dotted `key` set to `value` (no validation: only the key is computed from it)."""
    head, _, rest = key.partition(".")
    return dataclasses.replace(cfg, **{head: _changed(getattr(cfg, head), rest, value) if rest else value})


def test_the_teacher_cache_key_is_the_identity_of_the_teacher_s_stage(compose_toy):
    cfg = load_config(compose_toy())
    base = TeacherCache("cache", teacher_key(cfg, bf16=False)).name

    def name(key: str, value) -> str:
        return TeacherCache("cache", teacher_key(_changed(cfg, key, value), bf16=False)).name

    # read by the teacher's stage and changing its numbers; before, the loader, deterministic and the test subset
    # were not in the key (a run was handed a teacher trained, or measured, the other way)
    for key, value in (("trainer.loader", "dataloader"), ("deterministic", True), ("trainer.weight_decay", 1e-3),
                       ("dataset.max_test_per_class", 2), ("dataset.test_split_file", "t.txt"),
                       ("trainer.eval_every", 2), ("dataset.group_fractions", (0.2, 0.3, 0.5)),
                       ("trainer.momentum", 0.8), ("trainer.lr_decay", 0.2), ("trainer.max_steps_per_epoch", 2),
                       ("trainer.sync_bn", True), ("trainer.channels_last", True), ("seed", 1)):
        assert name(key, value) != base, key
    # what the student alone reads, and the speed knobs, keep it
    for key, value in (("loss", dataclasses.replace(cfg.loss, ce_weight=0.5)), ("student.arch", "resnet20"),
                       ("student.lr", 0.3), ("pair.student", "resnet20"), ("student.recipe", "vit"),
                       ("trainer.share_teacher", False),
                       ("trainer.eval_batch_size", 7), ("trainer.checkpoint_every", 2), ("trainer.light_lr", 0.02),
                       ("teacher.lr", cfg.trainer.lr), ("trainer.time_limit", "1h"), ("trainer.num_workers", 3),
                       ("experiment", "demo"), ("paths.output_root", "elsewhere")):
        assert name(key, value) == base, key


def _given_teacher(path: Path, key: dict) -> None:
    state = create_model("resnet8", num_classes=100).state_dict()
    stored = {"overall": 99.0, "head": 99.0, "medium": 99.0, "tail": 99.0, "per_class": []}
    save_checkpoint(path, {"arch": "resnet8", "num_classes": 100, "key": key, "state_dict": state, "final": stored,
                           "best": stored, "best_epoch": 7, "history": [{"epoch": 7, "overall": 99.0}]})


def test_a_teacher_from_another_test_subset_reports_only_what_this_run_measured(compose_toy, tmp_path: Path,
                                                                              monkeypatch):
    """Before: a given teacher's best and history were those of the run that trained it, on its test set."""
    entry = tmp_path / "teacher.pt"
    entry.write_bytes(b"")  # there when the config is validated
    cfg = load_config(compose_toy("dataset.max_test_per_class=1", f"teacher.checkpoint={entry}"))
    _given_teacher(entry, teacher_key(_changed(cfg, "dataset.max_test_per_class", None), False))  # full test set
    ctx = build_context(cfg, tmp_path / "run")
    given = stages.read_teacher_file(entry, "resnet8", 100)
    _, report = stages.obtain_teacher(ctx, given)
    assert report["final"]["overall"] != 99.0  # measured here, on this run's 100 test images
    assert report["best"] == report["final"] and report["best_epoch"] is None and report["history"] == []
    assert "another configuration" in report["best_from"]
    # an entry of this very teacher stage keeps its best and history (measured on this test set)
    measured = types.SimpleNamespace(as_dict=lambda: report["final"])
    monkeypatch.setattr(ctx, "evaluator", lambda model: lambda: measured)  # measured above already
    _given_teacher(entry, teacher_key(cfg, bf16=False))
    _, report = stages.obtain_teacher(ctx, stages.read_teacher_file(entry, "resnet8", 100))
    assert report["best_epoch"] == 7 and report["history"] == [{"epoch": 7, "overall": 99.0}]


@pytest.mark.parametrize("who", ["teacher", "student"])
def test_runs_of_one_setting_that_differ_only_in_speed_knobs_are_one_row(who: str, tmp_path: Path):
    """Before: "share_teacher=True, time_limit=None" and "share_teacher=False, time_limit=9m", two rows."""
    for seed, (share, limit) in enumerate(((True, None), (False, "9m"))):
        cfg = {"seed": seed, "trainer": {"share_teacher": share, "time_limit": limit, "batch_size": 64},
               "loss": {"name": "ltkd", "alpha": 1.0}}
        _metrics(tmp_path, f"s{seed}", seed, 40.0 + 2 * seed, cfg)
    rows = [r for r in to_rows(collect(find_metrics(tmp_path)), {}) if r["method"].startswith(who.replace(
        "student", "ltkd"))]
    assert [(r["method"], r["seeds"]) for r in rows] == [(who.replace("student", "ltkd"), "2")]


def test_two_teachers_of_seed_0_are_two_rows_of_one_seed_each(tmp_path: Path):
    """The table_ltkd_batch_size preset: one teacher per batch size, each seed 0. Before: one teacher row,
    "seeds 2", mean ± std over the two different teachers."""
    for batch in (16, 64):
        for rebalance in ("batch", "ema"):
            cfg = {"seed": 0, "trainer": {"batch_size": batch}, "loss": {"name": "ltkd", "rebalance": rebalance}}
            _metrics(tmp_path, f"b{batch}-{rebalance}", 0, float(batch), cfg)
    rows = {r["method"]: r for r in to_rows(collect(find_metrics(tmp_path)), {})}
    assert {m: (r["seeds"], r["overall"]) for m, r in rows.items() if m.startswith("teacher")} == {
        "teacher (batch_size=16)": ("1", "16.00"), "teacher (batch_size=64)": ("1", "64.00")}
    assert rows["ltkd (rebalance=ema, batch_size=16)"]["seeds"] == "1"
