"""Every checked config value at its boundary: the last allowed value loads, the first refused one stops
with a message that starts with the field's name (a check off by one, or a message lost, fails here)."""

from __future__ import annotations

import dataclasses
import functools
import typing
from functools import cache
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from ltkd.config import MAX_SEED, RunConfig, load_config, scaled_milestones, unknown_key_message
from ltkd.distillers import METHODS
from ltkd.errors import ConfigError
from ltkd.models import available_models
from ltkd.recipes import CONFIG_DIR


@cache
def _composed(logger: str) -> DictConfig:
    """Composed once per logger (LTKD uses every loss key that has a check)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=["loss=ltkd", f"logger={logger}"])


def _load(tmp_path: Path, *overrides: str) -> RunConfig:
    """`load_config` of the composed config with `logger=...` chosen and `key=value` (YAML) set."""
    logger = next((o.split("=", 1)[1] for o in overrides if o.startswith("logger=")), "none")
    raw = _composed(logger).copy()
    OmegaConf.update(raw, "data.root", str(tmp_path))
    for override in overrides:
        key, value = override.split("=", 1)
        if key != "logger":
            OmegaConf.update(raw, key, yaml.safe_load(value), force_add=False)
    return load_config(raw)


ACCEPTED = [
    ("seed=0",), (f"seed={MAX_SEED}",), (f"dataset.seed={MAX_SEED}",),
    ("dataset.imbalance_factor=1",),
    ("dataset.n_max=1",), ("dataset.max_test_per_class=1",),
    ("loss.group_fractions=[1.0]",),                                   # one group is allowed
    ("dataset.group_fractions=[0.98,0.01,0.01]",),                     # groups of exactly 1 class
    ("loss.group_fractions=[0.3333333,0.3333333,0.3333333]",),         # sums to 1 within 1e-6
    ("loss.temperature=0.001",),
    ("loss.ce_weight=0",), ("loss.alpha=0",), ("loss.beta=0",), ("loss.logit_adjust_tau=0",),
    ("loss.warmup_epochs=0",), ("loss.ema_momentum=0",), ("loss.ema_momentum=0.999",),
    ("trainer.epochs=1", "trainer.lr_milestones=[1]"),
    ("trainer.lr_milestones=[150,180,240]",),                          # a milestone at the last epoch
    ("trainer.batch_size=1",), ("trainer.eval_batch_size=1",),
    ("trainer.lr=0.000001", "trainer.light_lr=0.000001"),
    ("trainer.momentum=0",), ("trainer.momentum=0.999",), ("trainer.weight_decay=0",), ("trainer.lr_decay=1",),
    ("trainer.max_steps_per_epoch=1",), ("trainer.eval_every=1",), ("trainer.checkpoint_every=1",),
    ("trainer.num_workers=0",), ("trainer.time_limit=90s",),
    ("teacher.lr=0.5",), ("student.lr=0.5",),
    ("logger=wandb", "logger.project=ltkd"), ("logger=none",),
]


@pytest.mark.parametrize("overrides", ACCEPTED, ids=lambda o: " ".join(o))
def test_the_last_allowed_value_loads(overrides: tuple[str, ...], tmp_path: Path):
    loaded = _load(tmp_path, *overrides)
    for override in overrides:  # each value is there as given (a group: its name)
        key, value = override.split("=", 1)
        got: object = functools.reduce(getattr, key.split("."), loaded)
        got = list(got) if isinstance(got, tuple) else getattr(got, "name", got)
        assert got == yaml.safe_load(value), override


def test_an_existing_teacher_checkpoint_is_accepted(tmp_path: Path):
    path = tmp_path / "teacher.pt"
    path.write_bytes(b"")
    assert _load(tmp_path, f"teacher.checkpoint={path}").teacher.checkpoint == str(path)


REFUSED = [
    ("seed=-1", "seed: -1"), (f"seed={MAX_SEED + 1}", f"seed: {MAX_SEED + 1}"),
    ("dataset.imbalance_factor=0.99", "dataset.imbalance_factor: 0.99; must be >= 1"),
    ("dataset.n_max=0", "dataset.n_max: 0; must be >= 1 or null"),
    ("dataset.max_test_per_class=0", "dataset.max_test_per_class: 0; must be >= 1 or null"),
    ("dataset.group_fractions=[0.5,0.5]", "dataset.group_fractions: [0.5, 0.5]; give 3 fractions"),
    ("loss.group_fractions=[]", "loss.group_fractions: empty list"),
    ("loss.group_fractions=[0.5,0.5,0.0]", "loss.group_fractions: [0.5, 0.5, 0.0] has a fraction <= 0"),
    ("loss.group_fractions=[0.333,0.333,0.333]", "loss.group_fractions: [0.333, 0.333, 0.333] sums to 0.999"),
    # 100 classes: sizes 60, round(39.5) = 40, and nothing left for the last group
    ("loss.group_fractions=[0.6,0.395,0.005]", "loss.group_fractions: [0.6, 0.395, 0.005] leaves a group empty"),
    ("loss.temperature=0", "loss.temperature: 0; must be > 0"),
    *[(f"loss.{key}=-0.1", f"loss.{key}: -0.1; must be >= 0")
      for key in ("ce_weight", "alpha", "beta", "logit_adjust_tau")],
    ("loss.warmup_epochs=-1", "loss.warmup_epochs: -1; must be >= 0"),
    ("loss.ema_momentum=1", "loss.ema_momentum: 1; must be in [0, 1)"),
    ("loss.ema_momentum=-0.1", "loss.ema_momentum: -0.1; must be in [0, 1)"),
    ("trainer.batch_size=0", "trainer.batch_size: 0; must be >= 1"),
    ("trainer.eval_batch_size=0", "trainer.eval_batch_size: 0; must be >= 1"),
    ("trainer.lr=0", "trainer.lr: 0 / light_lr 0.01; must be > 0"),
    ("trainer.light_lr=0", "trainer.lr: 0.05 / light_lr 0; must be > 0"),
    ("trainer.momentum=-0.1", "trainer.momentum: -0.1; must be in [0, 1)"),
    ("trainer.momentum=1", "trainer.momentum: 1; must be in [0, 1)"),
    ("trainer.momentum=5", "trainer.momentum: 5; must be in [0, 1)"),
    ("trainer.weight_decay=-0.0001", "trainer.weight_decay: -0.0001; must be >= 0"),
    ("trainer.lr_decay=0", "trainer.lr_decay: 0; must be in (0, 1]"),
    ("trainer.lr_decay=1.5", "trainer.lr_decay: 1.5; must be in (0, 1]"),
    ("trainer.lr_milestones=[180,150,210]", "trainer.lr_milestones: [180, 150, 210]; must be increasing"),
    ("trainer.lr_milestones=[0,150]", "trainer.lr_milestones: [0, 150]; each must be in [1, trainer.epochs=240]"),
    ("trainer.max_steps_per_epoch=0", "trainer.max_steps_per_epoch: 0; must be >= 1 or null"),
    ("trainer.eval_every=0", "trainer.eval_every: 0; must be >= 1"),
    ("trainer.checkpoint_every=0", "trainer.checkpoint_every: 0; must be >= 1"),
    ("trainer.num_workers=-1", "trainer.num_workers: -1; must be >= 0"),
    ("teacher.lr=0", "teacher.lr: 0.0; must be > 0 or null"),
    ("student.lr=0", "student.lr: 0.0; must be > 0 or null"),
    ("logger=wandb logger.project=''", "logger.project: empty; give a W&B project name"),
    ("dataset.split_file=x.txt", "dataset.split_file: x.txt; split files are for imagenet_lt only, use null"),
    ("dataset.test_split_file=y.txt",
     "dataset.test_split_file: y.txt; split files are for imagenet_lt only, use null"),
]


@pytest.mark.parametrize(("overrides", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_the_first_refused_value_stops_naming_the_field(overrides: str, message: str, tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, *overrides.split(" "))
    assert str(info.value).startswith(message)


def test_an_unknown_model_lists_every_registered_one(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "student.arch=resnet9000")
    assert str(info.value) == f"student.arch: unknown model 'resnet9000'; available: {', '.join(available_models())}"


def test_split_files_load_for_the_dataset_that_reads_them(tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        raw = compose("train", overrides=["dataset=imagenet_lt", "pair=resnet34_resnet18", "logger=none",
                                          f"data.root={tmp_path}", "dataset.split_file=a.txt",
                                          "dataset.test_split_file=b.txt"])
    cfg = load_config(raw)
    assert (cfg.dataset.split_file, cfg.dataset.test_split_file) == ("a.txt", "b.txt")


@pytest.mark.parametrize(("alpha", "error"), [(0.0, None), (-0.1, "loss.alpha: -0.1; must be >= 0")])
def test_reviewkd_checks_its_own_weight(alpha: float, error: str | None, tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        raw = compose("train", overrides=["loss=reviewkd", "logger=none", f"data.root={tmp_path}",
                                          f"loss.alpha={alpha}"])
    if error is None:
        assert load_config(raw).loss.alpha == alpha
    else:
        with pytest.raises(ConfigError) as info:
            load_config(raw)
        assert str(info.value).startswith(error)


def test_a_milestone_scaled_below_the_first_epoch_stays_at_epoch_1():
    assert scaled_milestones((1, 150), 240, 30) == [1, 19]


# --- the typed construction: each refusal names the key (plain dicts reach `load_config` as well) ----------

def _plain(tmp_path: Path) -> dict:
    raw = OmegaConf.to_container(_composed("none"), resolve=True)
    raw["data"]["root"] = str(tmp_path)
    return raw


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("trainer", None, 5, "trainer: expected a mapping, got 5"),
    ("trainer", "epochs", None, "trainer.epochs: expected an integer, got None"),
    ("trainer", "lr_milestones", 5, "trainer.lr_milestones: expected a list, got 5"),
    ("trainer", "lr_milestones", [150, "x", 210], "trainer.lr_milestones[1]: expected an integer, got 'x'"),
    (None, "resume", "maybe", "resume: expected true or false, got 'maybe'"),
    ("data", "root", 5, "data.root: expected a string, got 5"),
])
def test_a_value_of_the_wrong_type_names_its_key(section, key, value, message: str, tmp_path: Path):
    raw = _plain(tmp_path)
    if key is None:
        raw[section] = value
    else:
        (raw if section is None else raw[section])[key] = value
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert str(info.value) == message


def _bool_keys(cls: type, prefix: str = "") -> list[str]:
    """The dotted keys of every bool field of the dataclass `cls` and its sections."""
    keys = []
    for name, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            keys += _bool_keys(tp, f"{prefix}{name}.")
        elif tp is bool:
            keys.append(f"{prefix}{name}")
    return keys


BOOL_KEYS = _bool_keys(RunConfig) + [f"loss.{k}" for k in _bool_keys(METHODS["ltkd"].config)]


def test_every_bool_field_is_checked():
    assert {"debug", "resume", "deterministic", "trainer.compile", "loss.reweight"} <= set(BOOL_KEYS)


@pytest.mark.parametrize("key", BOOL_KEYS)
@pytest.mark.parametrize("value", ["maybe", 1, 0])
def test_a_bool_field_refuses_anything_but_true_or_false(key: str, value, tmp_path: Path):
    raw = _plain(tmp_path)
    *parents, name = key.split(".")
    section = raw
    for part in parents:
        section = section[part]
    section[name] = value
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert str(info.value) == f"{key}: expected true or false, got {value!r}"


@pytest.mark.parametrize(("section", "key"), [("loss", "alpha"), ("dataset", "seed"), ("logger", "tags"),
                                              (None, "experiment")])
def test_a_missing_key_is_named_for_the_dataclasses_hold_no_defaults(section, key, tmp_path: Path):
    raw = _plain(tmp_path)
    del (raw[section] if section else raw)[key]  # each had a Python default once (dataset.seed: 0, ...)
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert str(info.value) == f"{section + '.' if section else ''}{key}: missing required value"


def test_a_plain_dict_may_carry_hydra_s_section_and_a_missing_value_is_refused(tmp_path: Path):
    raw = _plain(tmp_path)
    raw["hydra"] = {"run": {"dir": "x"}}
    assert load_config(raw).data.root == str(tmp_path)
    composed = _composed("none").copy()
    OmegaConf.update(composed, "data.root", "???")
    with pytest.raises(ConfigError) as info:
        load_config(composed)
    assert str(info.value) == "data.root: no value given (???); set it, e.g. data.root=..."


def test_an_unknown_key_below_a_value_that_is_not_a_section():
    assert unknown_key_message("trainer.lr_milestones.x.y") == "trainer.lr_milestones.x.y: unknown config key"


def test_an_unresolvable_interpolation_is_one_line_naming_it():
    composed = _composed("none").copy()
    OmegaConf.update(composed, "data.root", "${nowhere.at_all}")
    with pytest.raises(ConfigError) as info:
        load_config(composed)
    message = str(info.value)
    assert message.startswith("config: ") and "nowhere.at_all" in message and "\n" not in message
