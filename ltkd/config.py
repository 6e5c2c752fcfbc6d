"""Typed run configuration, built from the composed Hydra config and validated before any work.

`load_config` turns the resolved DictConfig into frozen dataclasses, checking every field's type and
range; each problem raises `ConfigError` with one line naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from ltkd.checks import check_fractions, check_positive, require
from ltkd.data.datasets import DATASETS
from ltkd.deadline import STOP_MARGIN_S, parse_duration
from ltkd.distillers import METHODS, LossConfig
from ltkd.errors import ConfigError, first_line
from ltkd.models import available_models, has_feature_pyramid, model_name
from ltkd.recipes import recipe_epochs, trainer_preset_values, trainer_presets

__all__ = ["LossConfig", "RunConfig", "load_config", "run_identity", "unknown_key_message"]

# --- roles: what each key does to a run, stated once on its field ----------------------------------
# Every derived view follows from these: the run's identity (`run_identity`), the run directory's name
# (`run_dir_exclude_keys`), the teacher cache key (`teacher_stage_identity`) and the table's rows
# (`ltkd.results`). A field without a role of its own has its section's (the field of RunConfig above it).
RESULT = "result"  # changes a run's numbers: part of its identity
SPEED = "speed"    # speed or placement only: the same numbers
FILES = "files"    # where files go, how progress is logged, how the run is named or resumed
ROLES = (RESULT, SPEED, FILES)


def role(kind: str, *, teacher: bool | None = None, in_dir_name: bool = False) -> Any:
    """A dataclass field with its role (`RESULT`, `SPEED`, `FILES`). `teacher=False`: not read by the
    teacher's stage (so not in its cache key); None: as its section. `in_dir_name`: a FILES key that still
    names the run directory (the experiment preset, whose values the overrides do not spell)."""
    assert kind in ROLES, kind
    metadata = {"role": kind, "teacher": teacher, "in_dir_name": in_dir_name}
    return field(metadata=metadata)


@dataclass(frozen=True)
class DataConfig:
    root: str
    download: bool


@dataclass(frozen=True)
class DatasetConfig:
    name: str  # a key of ltkd.data.DATASETS
    imbalance_factor: float
    seed: int
    n_max: int | None
    group_fractions: tuple[float, ...]
    split_file: str | None
    test_split_file: str | None
    max_test_per_class: int | None

    @property
    def num_classes(self) -> int:
        return DATASETS[self.name].num_classes


@dataclass(frozen=True)
class PairConfig:
    name: str
    teacher: str
    student: str


TeacherObjective = Literal["ce", "logit_adjusted", "balanced_softmax"]


@dataclass(frozen=True)
class TeacherConfig:
    arch: str
    objective: TeacherObjective  # the teacher's training loss: ce, logit_adjusted (τ = tau), balanced_softmax
    tau: float  # objective=logit_adjusted: its τ (Menon et al. 2021)
    checkpoint: str | None
    lr: float | None

    @property
    def logit_adjust_tau(self) -> float:
        """τ of the teacher's cross-entropy on `logits + τ·log prior`: 0 for plain CE, `tau` for the
        logit-adjusted loss, 1 for balanced softmax (Ren et al. 2020: the logit-adjusted loss at τ = 1)."""
        return {"ce": 0.0, "logit_adjusted": self.tau, "balanced_softmax": 1.0}[self.objective]


@dataclass(frozen=True)
class StudentConfig:
    arch: str
    lr: float | None
    recipe: str | None  # a trainer preset whose optimizer and schedule the student trains with


Optimizer = Literal["sgd", "adamw"]
LrSchedule = Literal["step", "cosine"]


@dataclass(frozen=True)
class TrainerConfig:
    epochs: int
    batch_size: int
    lr: float
    light_lr: float
    light_archs: tuple[str, ...]
    momentum: float
    weight_decay: float
    lr_milestones: tuple[int, ...]
    lr_decay: float
    optimizer: Optimizer  # sgd (momentum), adamw (betas (momentum, 0.999), decoupled weight decay)
    lr_schedule: LrSchedule  # step: x lr_decay at lr_milestones; cosine: to 0 after the warm-up
    warmup_epochs: int  # lr_schedule=cosine: linear warm-up epochs before the cosine decay
    max_steps_per_epoch: int | None
    eval_batch_size: int = role(SPEED)
    eval_every: int
    checkpoint_every: int = role(SPEED)
    device: str = role(SPEED)
    precision: Literal["auto", "fp32", "bf16"]
    channels_last: Literal["auto", True, False]
    compile: bool = role(SPEED)
    loader: Literal["auto", "device", "dataloader"]
    num_workers: int = role(SPEED)
    sync_bn: bool
    share_teacher: bool = role(SPEED)  # students of one teacher share its stored logits (ltkd.teacher_outputs)
    time_limit: str | float | None = role(SPEED)  # wall-clock budget from the launch ("8m", "1h30m", seconds)


@dataclass(frozen=True)
class LoggerConfig:
    name: Literal["wandb", "none"]
    project: str
    entity: str | None
    mode: Literal["auto", "online", "offline"]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class PathsConfig:
    output_root: str
    sweep_root: str
    teacher_cache: str


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on (the Hydra config minus Hydra's own settings). Every default is in the
    YAML (configs/), none here: a key the composed config lacks is an error."""

    data: DataConfig = role(FILES)
    dataset: DatasetConfig = role(RESULT)
    # the pair's names reach the stages as teacher.arch and student.arch
    pair: PairConfig = role(RESULT, teacher=False)
    teacher: TeacherConfig = role(RESULT)
    student: StudentConfig = role(RESULT, teacher=False)
    loss: LossConfig = role(RESULT, teacher=False)  # the chosen method's own config class (ltkd.distillers.METHODS)
    trainer: TrainerConfig = role(RESULT)
    logger: LoggerConfig = role(FILES)
    paths: PathsConfig = role(FILES)
    seed: int = role(RESULT)
    deterministic: bool = role(RESULT)
    debug: bool = role(FILES)
    resume: bool = role(FILES)
    sweep_name: str = role(FILES)
    experiment: str | None = role(FILES, in_dir_name=True)

    def stage_lr(self, arch: str, explicit: float | None, trainer: TrainerConfig | None = None) -> float:
        """The learning rate for training `arch`: explicit, else the recipe's light or default lr (the recipe:
        `trainer`, by default the run's)."""
        if explicit is not None:
            return explicit
        trainer = trainer or self.trainer
        return trainer.light_lr if arch in trainer.light_archs else trainer.lr

    def stage_trainer(self, stage: str) -> TrainerConfig:
        """The recipe stage `stage` ("teacher", "student") trains with: the run's trainer, for the student
        with `student.recipe`'s optimizer and schedule (`RECIPE_FIELDS`) when one is named."""
        if stage != "student" or self.student.recipe is None:
            return self.trainer
        return recipe_trainer(self.trainer, self.student.recipe)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(cfg: DictConfig | dict[str, Any]) -> RunConfig:
    """Resolve, type-check and validate a composed config; raises ConfigError on the first problem."""
    if isinstance(cfg, DictConfig):
        try:
            job_keys = [key for key in cfg if key != "hydra"]
            raw = OmegaConf.to_container(OmegaConf.masked_copy(cfg, job_keys), resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as exc:  # a `???` left in the config
            raise ConfigError(f"{exc.full_key}: no value given (???); set it, e.g. {exc.full_key}=...") from None
        except Exception as exc:  # omegaconf reports the key in its message's first line
            raise ConfigError(f"config: {first_line(exc)}") from None
    else:
        raw = dict(cfg)
    raw.pop("hydra", None)
    run = _build(RunConfig, raw, "")
    _validate(run)
    return dataclasses.replace(run, teacher=dataclasses.replace(run.teacher, arch=model_name(run.teacher.arch)),
                               student=dataclasses.replace(run.student, arch=model_name(run.student.arch)))


# --- typed construction -------------------------------------------------------------------------

def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    loss_name = None
    if cls is LossConfig:  # the loss section is checked against the chosen method's own config
        loss_name = _coerce(Literal[tuple(METHODS)], raw.get("name"), f"{prefix}name")
        cls = METHODS[loss_name].config
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(unknown_key_message(f"{prefix}{unknown[0]}", loss_name))
    values = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if f.name not in raw:  # the YAML holds every default (configs/); the dataclasses hold none
            raise ConfigError(f"{key}: missing required value")
        values[f.name] = _coerce(hints[f.name], raw[f.name], key)
    return cls(**values)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{key}: null is not allowed")
        inner = [o for o in options if o is not type(None)]
        for option in inner[:-1]:  # the first type that accepts the value; the last one reports the error
            try:
                return _coerce(option, value, key)
            except ConfigError:
                pass
        return _coerce(inner[-1], value, key)
    if origin is Literal:
        allowed = get_args(tp)
        for option in allowed:
            if value == option and type(value) is type(option):
                return option
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (inner,) = get_args(tp)[:1]
        return tuple(_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp} for {key}")


# --- per-stage recipes --------------------------------------------------------------------------

# What a stage recipe (`student.recipe`) sets; the rest (epochs, batch size, device, ...) stays the run's.
RECIPE_FIELDS = ("optimizer", "lr", "light_lr", "light_archs", "momentum", "weight_decay", "lr_schedule",
                 "warmup_epochs", "lr_milestones", "lr_decay")


def recipe_trainer(trainer: TrainerConfig, recipe: str) -> TrainerConfig:
    """`trainer` with the optimizer and schedule of the trainer preset `recipe` (configs/trainer/), its
    epoch-counted points (lr milestones, warm-up) moved from the preset's epochs to the same fractions of
    `trainer.epochs` (a smoke run keeps the recipe's shape)."""
    presets = trainer_presets()
    require(recipe in presets, f"student.recipe: {recipe!r} is not allowed; allowed: {', '.join(presets)} "
            "(configs/trainer/), or null")
    preset = trainer_preset_values(recipe)
    values = {key: preset[key] for key in RECIPE_FIELDS if key in preset}
    recipe_epochs_, epochs = int(preset["epochs"]), trainer.epochs
    if recipe_epochs_ != epochs:
        values["lr_milestones"] = scaled_milestones(tuple(values.get("lr_milestones", ())), recipe_epochs_, epochs)
        warmup = int(values.get("warmup_epochs", 0))
        values["warmup_epochs"] = min(epochs - 1, math.floor(warmup * epochs / recipe_epochs_ + 0.5))
    raw = {**dataclasses.asdict(trainer), **values}
    try:
        staged = _build(TrainerConfig, raw, "trainer.")
        _validate_trainer(staged)
    except ConfigError as exc:
        raise ConfigError(f"student.recipe={recipe}: {exc}") from None
    return staged


# --- semantic checks ----------------------------------------------------------------------------

def unknown_key_message(full_key: str, loss_name: str | None = None) -> str:
    """`<key>: unknown config key; allowed keys here: ...` for a dotted key the RunConfig does not have; under
    `loss.`, with the method `loss_name` known: `<key>: unknown config key for loss=<name>; its keys: ...`."""
    cls: Any = RunConfig
    parents = full_key.split(".")[:-1]
    for part in parents:
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if part not in fields:
            return f"{full_key}: unknown config key"
        cls = typing.get_type_hints(cls)[part]
    names = sorted(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else []
    if cls is LossConfig and loss_name in METHODS:
        keys = sorted(f.name for f in dataclasses.fields(METHODS[loss_name].config))
        return f"{full_key}: unknown config key for loss={loss_name}; its keys: {', '.join(keys)}"
    return f"{full_key}: unknown config key" + (f"; allowed keys here: {', '.join(names)}" if names else "")


MAX_SEED = 2**32 - 1  # numpy's limit; torch takes the stage seeds derived from it (seed * 1009 + 1)
DIR_NAME_KEYS = ("dataset", "dataset.imbalance_factor", "pair", "teacher.arch", "student.arch", "loss", "seed")
# ^ spelled out by the run directory's name itself (configs/hydra/default.yaml: ${run_dir:...}), so never again
#   among its overrides


def key_role(key: str) -> tuple[str, bool]:
    """(role, read by the teacher's stage) of a dotted config key, from the fields' `role` metadata: a key's
    own, else that of the nearest section above it that has one. A key the config no longer has (a stored
    config.yaml of an older version) takes its section's; an unknown top-level key is RESULT (it counts)."""
    kind, teacher = RESULT, True
    cls: Any = RunConfig
    parts = key.split(".")
    for depth, part in enumerate(parts, 1):
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if part not in fields:
            break
        meta = fields[part].metadata
        kind = meta.get("role", kind)
        teacher = teacher if meta.get("teacher") is None else meta["teacher"]
        if depth == len(parts):
            break
        cls = _field_type(cls, fields[part])
        if cls is LossConfig:  # the method's own keys: all the section's role
            break
    return kind, teacher


def _field_type(cls: type, f: dataclasses.Field) -> Any:
    """The type of one field (`typing.get_type_hints` evaluates all of a class's, too slow per key)."""
    if not isinstance(f.type, str):
        return f.type
    owner = next(k for k in cls.__mro__ if f.name in inspect.get_annotations(k))
    return eval(f.type, vars(sys.modules[owner.__module__]))  # an annotation, in the module that wrote it


def field_keys(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, dataclasses.Field]]:
    """Every dotted key of the typed config's fields, sections first, with its field (loss.*: the section)."""
    keys = []
    for f in dataclasses.fields(cls):
        keys.append((f"{prefix}{f.name}", f))
        tp = _field_type(cls, f)
        if dataclasses.is_dataclass(tp) and tp is not LossConfig:
            keys.extend(field_keys(tp, f"{prefix}{f.name}."))
    return keys


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of a config (`RunConfig.to_dict()` or its stored copy) that change a run's results
    (role RESULT), flattened to dotted keys: not where files are, how progress is logged, nor the speed
    knobs. A run directory belongs to one identity. A teacher trained with plain CE adds no
    `teacher.objective` / `teacher.tau` (τ does not act then), so run directories stored before the teacher
    objective existed keep their identity."""
    flat = _flatten(json.loads(json.dumps(config)))
    identity = {k: v for k, v in flat.items() if key_role(k)[0] == RESULT}
    if identity.get("teacher.objective", "ce") == "ce":
        identity.pop("teacher.objective", None)
        identity.pop("teacher.tau", None)
    for key, default in ADDED_WITH_DEFAULT.items():
        if identity.get(key, default) == default:
            identity.pop(key, None)
    for key in REMOVED_KEYS:
        identity.pop(key, None)
    return identity


# Fields added after runs were stored, at the value that reproduces those runs: absent from the identity there.
ADDED_WITH_DEFAULT = {"trainer.optimizer": "sgd", "trainer.lr_schedule": "step", "trainer.warmup_epochs": 0,
                      "student.recipe": None}
# Fields removed since runs were stored, whose effect is now another key's: absent from every identity.
REMOVED_KEYS = ("pair.dkd_beta",)  # DKD's β: now loss.beta (configs/loss_pair/)


STAGE_LR_KEYS = ("trainer.lr", "trainer.light_lr", "trainer.light_archs", "teacher.lr")  # give `stage_lr`


def teacher_stage_identity(run: RunConfig) -> dict[str, Any]:
    """The identity of the run's teacher stage: the RESULT keys that stage reads (the dataset and its test
    subset, the teacher, the recipe, the seed, the loader, deterministic, ...), nothing the student alone
    reads. The learning-rate keys enter as the one rate they give the teacher (`RunConfig.stage_lr`), the
    objective as its τ (`TeacherConfig.logit_adjust_tau`: balanced softmax is the logit-adjusted loss at
    τ = 1, one teacher), and plain CE as neither."""
    identity = run_identity(run.to_dict())
    stage = {k: v for k, v in identity.items() if key_role(k)[1] and k not in STAGE_LR_KEYS}
    stage["teacher.lr"] = run.stage_lr(run.teacher.arch, run.teacher.lr)
    stage.pop("teacher.objective", None)
    stage.pop("teacher.tau", None)
    if run.teacher.logit_adjust_tau:
        stage["teacher.logit_adjust_tau"] = run.teacher.logit_adjust_tau
    return dict(sorted(stage.items()))


def run_dir_exclude_keys() -> list[str]:
    """The override keys left out of the run directory's name (Hydra's `override_dirname.exclude_keys`, via
    the `run_dir_exclude_keys` resolver): those the name spells itself (`DIR_NAME_KEYS`) and every key, or
    section, that does not change results, but `in_dir_name` ones."""
    quiet = [key for key, f in field_keys() if key_role(key)[0] != RESULT and not f.metadata.get("in_dir_name")]
    return list(dict.fromkeys([*DIR_NAME_KEYS, *quiet]))


# configs/hydra/default.yaml leaves these keys out of the run directory's name; Hydra resolves it where the
# run's config is loaded (ltkd.train), so the resolver is registered with the function
OmegaConf.register_new_resolver("run_dir_exclude_keys", run_dir_exclude_keys, replace=True)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _validate(run: RunConfig) -> None:
    models = available_models()
    ds, tr = run.dataset, run.trainer
    _coerce(Literal[tuple(DATASETS)], ds.name, "dataset.name")
    for key, seed in (("seed", run.seed), ("dataset.seed", ds.seed)):
        require(0 <= seed <= MAX_SEED, f"{key}: {seed}; must be in [0, {MAX_SEED}]")
    require(ds.imbalance_factor >= 1, f"dataset.imbalance_factor: {ds.imbalance_factor:g}; must be >= 1")
    require(ds.n_max is None or ds.n_max >= 1, f"dataset.n_max: {ds.n_max}; must be >= 1 or null")
    require(ds.max_test_per_class is None or ds.max_test_per_class >= 1,
            f"dataset.max_test_per_class: {ds.max_test_per_class}; must be >= 1 or null")
    require(len(ds.group_fractions) == 3,
            f"dataset.group_fractions: {list(ds.group_fractions)}; give 3 fractions (head, medium, tail)")
    check_fractions("dataset.group_fractions", ds.group_fractions, ds.num_classes)
    if not DATASETS[ds.name].split_files:
        supported = ", ".join(name for name, spec in DATASETS.items() if spec.split_files)
        for key, given in (("dataset.split_file", ds.split_file), ("dataset.test_split_file", ds.test_split_file)):
            require(given is None, f"{key}: {given}; split files are for {supported} only, use null")
    for key, arch in (("teacher.arch", run.teacher.arch), ("student.arch", run.student.arch)):
        require(model_name(arch) in models, f"{key}: unknown model '{arch}'; available: {', '.join(models)}")
    for role, arch in (("student", run.student.arch), ("teacher", run.teacher.arch)):
        if METHODS[run.loss.name].needs_feature_pyramid and not has_feature_pyramid(arch):
            others = ", ".join(m.name for m in METHODS.values() if m.uses_teacher and not m.needs_feature_pyramid)
            raise ConfigError(f"loss={run.loss.name}: pair {run.pair.name} has {role} {model_name(arch)}, whose "
                              f"features are one resolution of tokens, not the multi-stage CNN feature pyramid "
                              f"{run.loss.name} fuses; use a CNN {role} or loss={others} (logits only)")
    for key, lr in (("teacher.lr", run.teacher.lr), ("student.lr", run.student.lr)):
        require(lr is None or lr > 0, f"{key}: {lr}; must be > 0 or null")
    _validate_teacher(run.teacher)
    run.loss.check(ds.num_classes)
    _validate_trainer(tr, ds.name)
    run.stage_trainer("student")  # a student.recipe that is no preset, or gives no valid recipe, stops here
    require(bool(re.fullmatch(r"auto|cpu|cuda(:\d+)?", tr.device)),
            f"trainer.device: '{tr.device}'; allowed: auto, cpu, cuda, cuda:N")
    if run.logger.name == "wandb":
        require(bool(run.logger.project), "logger.project: empty; give a W&B project name")


def _validate_trainer(tr: TrainerConfig, dataset: str | None = None) -> None:
    """The trainer's values; `dataset` names the recipe the milestones error scales (None: no suggestion)."""
    require(tr.epochs >= 1, f"trainer.epochs: {tr.epochs}; must be >= 1")
    require(tr.batch_size >= 1, f"trainer.batch_size: {tr.batch_size}; must be >= 1")
    require(tr.eval_batch_size >= 1, f"trainer.eval_batch_size: {tr.eval_batch_size}; must be >= 1")
    require(tr.lr > 0 and tr.light_lr > 0, f"trainer.lr: {tr.lr:g} / light_lr {tr.light_lr:g}; must be > 0")
    require(0 <= tr.momentum < 1, f"trainer.momentum: {tr.momentum:g}; must be in [0, 1)")
    require(tr.weight_decay >= 0, f"trainer.weight_decay: {tr.weight_decay:g}; must be >= 0")
    require(0 < tr.lr_decay <= 1, f"trainer.lr_decay: {tr.lr_decay:g}; must be in (0, 1]")
    require(list(tr.lr_milestones) == sorted(tr.lr_milestones),
            f"trainer.lr_milestones: {list(tr.lr_milestones)}; must be increasing")
    if tr.lr_schedule == "step" and not all(1 <= m <= tr.epochs for m in tr.lr_milestones):
        raise ConfigError(_milestones_message(tr, dataset))
    require(tr.warmup_epochs >= 0, f"trainer.warmup_epochs: {tr.warmup_epochs}; must be >= 0")
    require(tr.lr_schedule == "cosine" or tr.warmup_epochs == 0,
            f"trainer.warmup_epochs: {tr.warmup_epochs}; the warm-up belongs to lr_schedule=cosine, use 0 with "
            f"lr_schedule={tr.lr_schedule}")
    require(tr.warmup_epochs < tr.epochs,
            f"trainer.warmup_epochs: {tr.warmup_epochs}; must be < trainer.epochs={tr.epochs} (the cosine needs "
            "an epoch)")
    require(tr.max_steps_per_epoch is None or tr.max_steps_per_epoch >= 1,
            f"trainer.max_steps_per_epoch: {tr.max_steps_per_epoch}; must be >= 1 or null")
    require(tr.eval_every >= 1, f"trainer.eval_every: {tr.eval_every}; must be >= 1")
    require(tr.checkpoint_every >= 1, f"trainer.checkpoint_every: {tr.checkpoint_every}; must be >= 1")
    require(tr.num_workers >= 0, f"trainer.num_workers: {tr.num_workers}; must be >= 0")
    if tr.time_limit is not None:
        try:
            budget = parse_duration(tr.time_limit)
        except ValueError:
            raise ConfigError(f"trainer.time_limit: {tr.time_limit!r}; allowed: a positive duration such as 90s, "
                              "8m, 1h30m, or seconds") from None
        require(budget > STOP_MARGIN_S, f"trainer.time_limit: {tr.time_limit!r}; must be more than the "
                f"{STOP_MARGIN_S:g} s stop margin plus start-up")


def _validate_teacher(teacher: TeacherConfig) -> None:
    check_positive("teacher.tau", teacher.tau)
    require(teacher.objective != "balanced_softmax" or teacher.tau == 1,
            f"teacher.tau: {teacher.tau:g}; balanced_softmax is the logit-adjusted loss at tau = 1 "
            "(another tau: teacher.objective=logit_adjusted)")
    if teacher.checkpoint is not None:
        path = Path(teacher.checkpoint)
        require(path.is_file(), f"teacher.checkpoint: '{path}' is not a file; give a .pt saved by ltkd")
        require(teacher.objective == "ce", f"teacher.objective: {teacher.objective} trains the teacher, but "
                "teacher.checkpoint gives a trained one; use teacher.objective=ce with a checkpoint")


def scaled_milestones(milestones: tuple[int, ...], recipe_epochs: int, epochs: int) -> list[int]:
    """`milestones` of a `recipe_epochs`-epoch schedule moved to the same fractions of `epochs` (rounded,
    within [1, epochs], without repeats)."""
    return sorted({min(epochs, max(1, math.floor(m * epochs / recipe_epochs + 0.5))) for m in milestones})


def _milestones_message(tr: TrainerConfig, dataset: str | None) -> str:
    """The error for milestones beyond the epochs (they would never take effect), with the milestones scaled
    from the dataset's recipe length (`recipes.recipe_epochs`) to `trainer.epochs` as a ready override."""
    message = (f"trainer.lr_milestones: {list(tr.lr_milestones)}; each must be in [1, trainer.epochs={tr.epochs}] "
               "(a later milestone never takes effect)")
    if dataset is None:
        return message
    scaled = scaled_milestones(tr.lr_milestones, recipe_epochs(dataset), tr.epochs)
    return (f"{message}; the recipe's schedule scaled to {tr.epochs} epochs: "
            f"trainer.lr_milestones=[{','.join(map(str, scaled))}]")
