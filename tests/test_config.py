"""Config validation: every bad value stops before any work with one line naming field, value, allowed."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from ltkd.config import (
    RESULT,
    LossConfig,
    RunConfig,
    TrainerConfig,
    key_role,
    load_config,
    run_identity,
    unknown_key_message,
)
from ltkd.distillers import METHODS
from ltkd.errors import ConfigError
from ltkd.models import model_name
from ltkd.recipes import CONFIG_DIR, recipe_epochs


def test_defaults_compose_to_the_paper_recipe(tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = load_config(compose("train", overrides=[f"data.root={tmp_path}"]))
    assert (cfg.dataset.name, cfg.dataset.imbalance_factor, cfg.dataset.seed) == ("cifar100_lt", 100, 0)
    assert (cfg.teacher.arch, cfg.student.arch) == ("resnet32x4", "resnet8x4")
    tr = cfg.trainer
    assert (tr.epochs, tr.batch_size, tr.lr, tr.momentum, tr.weight_decay) == (240, 64, 0.05, 0.9, 5e-4)
    assert tr.lr_milestones == (150, 180, 210) and tr.lr_decay == 0.1
    assert (cfg.loss.name, cfg.loss.temperature, cfg.loss.ce_weight, cfg.loss.alpha) == ("kd", 4.0, 0.1, 0.9)
    assert cfg.logger.name == "wandb"


@pytest.mark.parametrize(("overrides", "expected"), [
    (["loss=dkd"], dict(ce_weight=1.0, alpha=1.0, beta=8.0, temperature=4.0, warmup_epochs=20)),
    (["loss=dkd", "pair=wrn_40_2_wrn_16_2"], dict(beta=6.0)),
    (["loss=dkd", "pair=vgg13_vgg8"], dict(beta=6.0)),
    (["loss=reviewkd"], dict(ce_weight=1.0, alpha=5.0, warmup_epochs=20)),
    (["loss=ltkd"], dict(ce_weight=1.0, alpha=1.0, beta=8.0, temperature=4.0, warmup_epochs=20, rebalance="batch",
                         reweight=True)),
    # the ImageNet-LT table: mdistiller's ImageNet settings (T = 1, one warm-up epoch, DKD β per pair)
    (["experiment=table_imagenet_lt", "loss=dkd", "pair=resnet34_resnet18"],
     dict(alpha=1.0, beta=0.5, temperature=1.0, warmup_epochs=1)),
    (["experiment=table_imagenet_lt", "loss=dkd", "pair=resnet50_mobilenetv2_imagenet"],
     dict(beta=2.0, temperature=1.0, warmup_epochs=1)),
    (["experiment=table_imagenet_lt", "loss=ltkd"], dict(alpha=1.0, beta=8.0, temperature=1.0, warmup_epochs=1)),
    (["experiment=table_imagenet_lt", "loss=reviewkd"], dict(alpha=5.0, warmup_epochs=1, preact=True)),
    (["loss=ltkd", "loss.rebalance=none", "loss.reweight=false"], dict(rebalance="none", reweight=False)),
    # BKD: its code's T, α and β_cb; DRW's deferral (160 of 200 epochs) scaled to 192 of 240, 16 of 20 at CPU scale
    (["loss=bkd"], dict(ce_weight=1.0, alpha=1.0, temperature=2.0, beta_cb=0.9999, defer_epoch=192, warmup_epochs=0)),
    (["experiment=cpu_scale_cifar100_lt_g100", "loss=bkd"], dict(defer_epoch=16, beta_cb=0.9999, temperature=2.0)),
])
def test_loss_presets(overrides, expected, tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = load_config(compose("train", overrides=[f"data.root={tmp_path}", *overrides]))
    for key, value in expected.items():
        assert getattr(cfg.loss, key) == value, key


# DKD's β per pair as configs/pair/<pair>.yaml's `dkd_beta` stated it before β moved to the loss side
DKD_BETA_BEFORE = {"resnet32_resnet8": 8.0, "resnet32x4_resnet8x4": 8.0, "resnet32x4_shufflev2": 8.0,
                   "resnet34_resnet18": 0.5, "resnet50_mobilenetv2": 8.0, "resnet50_mobilenetv2_imagenet": 2.0,
                   "resnet56_resnet20": 8.0, "vgg13_vgg8": 6.0, "wrn_40_2_shufflev1": 8.0, "wrn_40_2_wrn_16_2": 6.0,
                   "resnet32x4_vit_tiny": 8.0}


def test_dkd_s_beta_for_each_pair_is_the_one_the_pair_gave_before(tmp_path: Path):
    assert sorted(DKD_BETA_BEFORE) == sorted(p.stem for p in (Path(CONFIG_DIR) / "pair").glob("*.yaml"))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        def beta(*overrides: str) -> float:
            cfg = compose("train", overrides=[f"data.root={tmp_path}", *overrides])
            assert "dkd_beta" not in cfg.pair  # the loss side's value only
            return cfg.loss.beta

        assert {pair: beta("loss=dkd", f"pair={pair}") for pair in DKD_BETA_BEFORE} == DKD_BETA_BEFORE
        # with an experiment (the ImageNet-LT table's other pair); another loss with a pair of DKD's own
        assert beta("experiment=table_imagenet_lt", "loss=dkd", "pair=resnet50_mobilenetv2_imagenet") == 2.0
        assert beta("loss=ltkd", "pair=resnet34_resnet18") == 8.0
        assert beta("loss=dkd", "pair=vgg13_vgg8", "loss.beta=3") == 3.0


def test_light_architectures_get_their_own_lr(tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = load_config(compose("train", overrides=[f"data.root={tmp_path}", "pair=resnet50_mobilenetv2"]))
        imagenet = load_config(compose("train", overrides=[f"data.root={tmp_path}", "dataset=imagenet_lt",
                                                           "pair=resnet50_mobilenetv2_imagenet"]))
    assert cfg.stage_lr(cfg.teacher.arch, cfg.teacher.lr) == 0.05
    assert cfg.stage_lr(cfg.student.arch, cfg.student.lr) == 0.01
    assert cfg.stage_lr(cfg.student.arch, 0.02) == 0.02
    tr = imagenet.trainer
    assert (tr.epochs, tr.batch_size, tr.lr, tr.weight_decay, tr.lr_milestones) == (100, 256, 0.1, 1e-4, (30, 60, 90))


@pytest.mark.parametrize(("overrides", "recipe", "epochs"), [
    (["dataset=cifar100_lt"], "default", 240),
    (["dataset=tinyimagenet_lt"], "default", 240),
    (["dataset=imagenet_lt", "pair=resnet34_resnet18"], "imagenet_lt", 100),
    (["dataset=imagenet_lt", "pair=resnet34_resnet18", "trainer=smoke"], "smoke", 2),  # the command line wins
    (["experiment=table_imagenet_lt", "pair=resnet34_resnet18"], "imagenet_lt", 100),
    (["experiment=demo", "dataset=imagenet_lt", "pair=resnet34_resnet18"], "demo", 3),  # so does a preset's
])
def test_each_dataset_gets_its_recipe_unless_one_is_chosen(tmp_path: Path, overrides, recipe, epochs):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        composed = compose("train", overrides=[f"data.root={tmp_path}", *overrides], return_hydra_config=True)
    assert composed.hydra.runtime.choices.trainer == recipe
    cfg = load_config(composed)
    assert cfg.trainer.epochs == epochs
    if recipe not in ("smoke", "demo"):  # tables measure a run against the recipe its dataset selects
        assert recipe_epochs(cfg.dataset.name) == epochs


@pytest.mark.parametrize(("override", "message"), [
    ("dataset.imbalance_factor=0.5", "dataset.imbalance_factor: 0.5; must be >= 1"),
    ("teacher.arch=resnet9000", "teacher.arch: unknown model 'resnet9000'; available: "),
    ("student.arch=foo", "student.arch: unknown model 'foo'"),
    ("loss.temperature=0", "loss.temperature: 0; must be > 0"),
    ("loss.temperature=-1", "loss.temperature: -1; must be > 0"),
    ("trainer.batch_size=0", "trainer.batch_size: 0; must be >= 1"),
    ("trainer.epochs=0", "trainer.epochs: 0; must be >= 1"),
    ("trainer.lr_milestones=[150,300]", "trainer.lr_milestones: [150, 300]; each must be in [1, trainer.epochs=240]"),
    ("dataset.group_fractions=[0.5,0.3,0.3]", "dataset.group_fractions: [0.5, 0.3, 0.3] sums to 1.1; the fractions"),
    ("loss.group_fractions=[0.999,0.0005,0.0005]", "loss.group_fractions: [0.999, 0.0005, 0.0005] leaves a group"),
    ("loss.group_fractions=[1.2,-0.2]", "loss.group_fractions: [1.2, -0.2] has a fraction <= 0"),
    ("loss.rebalance=sometimes", "loss.rebalance: 'sometimes' is not allowed; allowed: batch, ema, none"),
    ("trainer.device=tpu", "trainer.device: 'tpu'; allowed: auto, cpu, cuda, cuda:N"),
    ("trainer.epochs=ten", "trainer.epochs: expected an integer, got 'ten'"),
    ("loss.ema_momentum=1.5", "loss.ema_momentum: 1.5; must be in [0, 1)"),
    ("teacher.checkpoint=/nonexistent/teacher.pt", "teacher.checkpoint: '/nonexistent/teacher.pt' is not a file"),
    ("dataset.seed=-1", "dataset.seed: -1; must be in [0, 4294967295]"),
    ("seed=12345678901234567890123", "seed: 12345678901234567890123; must be in [0, 4294967295]"),
    *[(f"{key}=inf", f"{key}: expected a finite number, got inf")
      for key in ("loss.temperature", "loss.alpha", "loss.beta", "loss.ce_weight", "loss.logit_adjust_tau",
                  "trainer.lr", "trainer.weight_decay", "trainer.momentum", "teacher.lr")],
    ("loss.alpha=nan", "loss.alpha: expected a finite number, got nan"),
    ("trainer.time_limit=8x", "trainer.time_limit: '8x'; allowed: a positive duration such as 90s, 8m, 1h30m"),
    ("trainer.time_limit=0", "trainer.time_limit: 0.0; allowed: a positive duration"),
])
def test_bad_values_name_field_value_and_allowed(override: str, message: str, tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):  # LTKD has every loss key checked here
        raw = compose("train", overrides=[f"data.root={tmp_path}", "loss=ltkd", override])
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(message)


@pytest.mark.parametrize(("override", "message"), [
    ("loss.beta_cb=1", "loss.beta_cb: 1; must be in [0, 1)"),
    ("loss.beta_cb=-0.1", "loss.beta_cb: -0.1; must be in [0, 1)"),
    ("loss.defer_epoch=-1", "loss.defer_epoch: -1; must be >= 0"),
    ("loss.temperature=0", "loss.temperature: 0; must be > 0"),
    ("loss.defer_epoch=1.5", "loss.defer_epoch: expected an integer, got 1.5"),
])
def test_bkd_checks_its_own_keys(override: str, message: str, tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        raw = compose("train", overrides=[f"data.root={tmp_path}", "loss=bkd", override])
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_config(raw)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):  # the boundaries load
        for ok in ("loss.beta_cb=0", "loss.beta_cb=0.999999", "loss.defer_epoch=0"):
            load_config(compose("train", overrides=[f"data.root={tmp_path}", "loss=bkd", ok]))


def test_unknown_dataset_and_loss_names_are_listed(tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        raw = compose("train", overrides=[f"data.root={tmp_path}"])
    raw.dataset.name = "mnist_lt"
    with pytest.raises(ConfigError, match=re.escape("dataset.name: 'mnist_lt' is not allowed; allowed: cifar100_lt, "
                                                    "tinyimagenet_lt, imagenet_lt")):
        load_config(raw)
    raw.dataset.name = "cifar100_lt"
    raw.loss.name = "fitnet"
    allowed = "loss.name: 'fitnet' is not allowed; allowed: ce, kd, dkd, reviewkd, bkd, ltkd"
    with pytest.raises(ConfigError, match=re.escape(allowed)):
        load_config(raw)


def test_unknown_key_is_named(tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        raw = compose("train", overrides=[f"data.root={tmp_path}", "+loss.temprature=3"])
    with pytest.raises(ConfigError, match=re.escape("loss.temprature: unknown config key")):
        load_config(raw)


def test_unknown_key_message_lists_the_keys_allowed_at_that_level():
    def keys(cls: type) -> str:
        return ", ".join(sorted(f.name for f in dataclasses.fields(cls)))

    assert unknown_key_message("loss.alpah") == f"loss.alpah: unknown config key; allowed keys here: {keys(LossConfig)}"
    assert unknown_key_message("trainer.epoch") == (
        f"trainer.epoch: unknown config key; allowed keys here: {keys(TrainerConfig)}")
    assert unknown_key_message("sed") == f"sed: unknown config key; allowed keys here: {keys(RunConfig)}"
    assert unknown_key_message("foo.bar") == "foo.bar: unknown config key"  # no such parent
    assert unknown_key_message("seed.x") == "seed.x: unknown config key"  # the parent is a plain value


def test_each_loss_is_checked_against_its_own_keys(tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        kd = compose("train", overrides=[f"data.root={tmp_path}", "loss=kd"])
        ltkd = load_config(compose("train", overrides=[f"data.root={tmp_path}", "loss=ltkd"]))
    assert (ltkd.loss.rebalance, ltkd.loss.reweight, ltkd.loss.beta) == ("batch", True, 8.0)
    with open_dict(kd):
        kd.loss.rebalance = "ema"  # an LTKD key: KD used to accept it silently and ignore it
    with pytest.raises(ConfigError, match=re.escape("loss.rebalance: unknown config key for loss=kd; its keys: alpha, "
                                                    "ce_weight, logit_adjust_tau, name, temperature, warmup_epochs")):
        load_config(kd)
    assert not hasattr(load_config(compose_default(tmp_path, "loss=kd")).loss, "rebalance")


def compose_default(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[f"data.root={tmp_path}", *overrides])


def test_short_runs_get_the_recipe_s_milestones_scaled_as_a_ready_override(tmp_path: Path):
    with pytest.raises(ConfigError, match=re.escape("the recipe's schedule scaled to 30 epochs: "
                                                    "trainer.lr_milestones=[19,23,26]")):
        load_config(compose_default(tmp_path, "trainer.epochs=30"))
    with pytest.raises(ConfigError, match=re.escape("scaled to 50 epochs: trainer.lr_milestones=[15,30,45]")):
        load_config(compose_default(tmp_path, "dataset=imagenet_lt", "pair=resnet34_resnet18", "trainer.epochs=50"))
    fixed = load_config(compose_default(tmp_path, "trainer.epochs=30", "trainer.lr_milestones=[19,23,26]"))
    assert fixed.trainer.lr_milestones == (19, 23, 26)


def test_other_codebases_architecture_spellings_map_to_the_registry(tmp_path: Path):
    cfg = load_config(compose_default(tmp_path, "teacher.arch=ResNet50", "student.arch=MobileNetV2"))
    assert (cfg.teacher.arch, cfg.student.arch) == ("resnet50", "mobilenetv2")
    assert cfg.stage_lr(cfg.student.arch, None) == cfg.trainer.light_lr  # the light lr follows the registry name
    cfg = load_config(compose_default(tmp_path, "teacher.arch=ResNet32x4", "student.arch=ShuffleV1"))
    assert (cfg.teacher.arch, cfg.student.arch) == ("resnet32x4", "shufflev1")
    assert model_name("ShuffleV2") == "shufflev2" and model_name("wrn_40_2") == "wrn_40_2"
    with pytest.raises(ConfigError, match=r"student\.arch: unknown model 'MobileNetV3'"):
        load_config(compose_default(tmp_path, "student.arch=MobileNetV3"))


def test_run_identity_is_the_config_minus_where_files_go_logging_and_speed_knobs(tmp_path: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = load_config(compose("train", overrides=[f"data.root={tmp_path}", "loss=ltkd"]))
    identity = run_identity(cfg.to_dict())
    assert identity["loss.alpha"] == 1.0 and identity["loss.rebalance"] == "batch" and identity["seed"] == 0
    assert identity["trainer.lr_milestones"] == [150, 180, 210] and identity["trainer.eval_every"] == 1
    assert "deterministic" in identity and "dataset.imbalance_factor" in identity
    for excluded in ("data.root", "logger.name", "paths.output_root", "debug", "resume", "sweep_name", "experiment",
                     "trainer.device", "trainer.compile", "trainer.num_workers", "trainer.eval_batch_size",
                     "trainer.checkpoint_every", "trainer.time_limit", "trainer.share_teacher"):
        assert excluded not in identity and key_role(excluded)[0] != RESULT, excluded
    stored = OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(cfg.to_dict())))  # as config.yaml holds it
    assert run_identity(stored) == identity
    # an excluded name excludes that key and what is below it, never a key that merely starts the same way
    raw = {"trainer": {"device": "cpu", "devices": 2, "lr": 0.1}, "data": {"root": "x"}, "database": 1}
    assert run_identity(raw) == {"trainer.devices": 2, "trainer.lr": 0.1, "database": 1}


def test_an_experiment_s_loss_values_that_skip_the_chosen_loss_are_a_warning(tmp_path: Path, monkeypatch, capsys):
    """experiment=table_imagenet_lt gives KD, DKD and LTKD T = 1 (configs/loss_experiment/): BKD, which has a
    temperature too but no file there, would quietly keep its own T = 2."""
    from ltkd import pipeline, train

    def warning(*overrides: str) -> str | None:
        overrides = ("experiment=table_imagenet_lt", *overrides)
        return train.loss_experiment_warning(load_config(compose_default(tmp_path, *overrides)), overrides)

    assert warning("loss=bkd") == (
        "warning: experiment=table_imagenet_lt sets loss.temperature for dkd, kd, ltkd (configs/loss_experiment/) "
        "but not for loss=bkd, which keeps its own loss.temperature=2.0; give "
        "configs/loss_experiment/table_imagenet_lt_bkd.yaml or the value on the command line")
    assert warning("loss=bkd", "loss.temperature=1") is None  # given on the command line
    for loss in ("kd", "ce", "reviewkd"):  # its own file; no temperature at all; preact is ReviewKD's alone
        assert warning(f"loss={loss}") is None
    monkeypatch.setattr(pipeline, "run", lambda *args: None)
    overrides = ["experiment=table_imagenet_lt", "loss=bkd"]
    assert train.execute(compose_default(tmp_path, *overrides), tmp_path, "", overrides) == (0, "")
    assert capsys.readouterr().err.startswith("warning: experiment=table_imagenet_lt sets loss.temperature")


def _config_classes(cls: type = RunConfig) -> list[type]:
    hints = typing.get_type_hints(cls)
    nested = [t for t in hints.values() if dataclasses.is_dataclass(t) and t is not LossConfig]
    return [cls, *(c for t in nested for c in _config_classes(t))]


@pytest.mark.parametrize("logger", ["none", "wandb"])
def test_defaults_live_in_the_yaml_alone(logger: str, tmp_path: Path):
    """configs/ holds every default; the typed config holds none (as the loss configs: ltkd.distillers)."""
    classes = [*_config_classes(), *(method.config for method in METHODS.values())]
    assert len(classes) >= 9 + len(METHODS)
    for cls in classes:
        for f in dataclasses.fields(cls):
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, (cls, f.name)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        composed = compose("train", overrides=[f"data.root={tmp_path}", f"logger={logger}"])
    raw = OmegaConf.to_container(composed, resolve=True)
    assert _keys(load_config(raw).to_dict()) == _keys(raw)  # the YAML gives every key, nothing is added to it


def _keys(tree: dict, prefix: str = "") -> set[str]:
    return {k for key, value in tree.items()
            for k in (_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"})}
