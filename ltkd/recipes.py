"""The config folder and the published recipes read from it: the bottom of the package (imports nothing
else from ltkd at import time), and the resolver the configs name the run directory with."""

from __future__ import annotations

import functools
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

_PACKAGE = Path(__file__).resolve().parent
# the installed wheel's copy; in a checkout ltkd/configs links to the top-level configs/ (used directly where a
# copy of the checkout lost the link)
CONFIG_DIR = str(_PACKAGE / "configs" if (_PACKAGE / "configs").is_dir() else _PACKAGE.parent / "configs")


@functools.cache
def recipe_epochs(dataset: str) -> int:
    """The epochs of `dataset`'s published recipe: the trainer its dataset yaml selects (`override
    /trainer@_global_.trainer: <recipe>` in its defaults), else configs/trainer/default.yaml."""
    return int(_trainer_preset(_recipe_name(dataset)).epochs)


def _recipe_name(dataset: str) -> str:
    defaults = OmegaConf.load(Path(CONFIG_DIR) / "dataset" / f"{dataset}.yaml").get("defaults", [])
    overrides = [entry for item in defaults if isinstance(item, DictConfig)
                 for key, entry in item.items() if str(key).startswith("override /trainer")]
    return str(overrides[-1]) if overrides else "default"


def trainer_presets() -> list[str]:
    """The trainer presets (configs/trainer/<name>.yaml), sorted."""
    return sorted(path.stem for path in (Path(CONFIG_DIR) / "trainer").glob("*.yaml"))


@functools.cache
def trainer_preset_values(name: str) -> dict:
    """Trainer preset `name` with its parents merged in, as plain values."""
    return OmegaConf.to_container(_trainer_preset(name), resolve=True)


def _trainer_preset(name: str) -> DictConfig:
    preset = OmegaConf.load(Path(CONFIG_DIR) / "trainer" / f"{name}.yaml")
    parents = [_trainer_preset(parent) for parent in preset.pop("defaults", [])]
    return OmegaConf.merge(*parents, preset)


def experiment_loss_values(experiment: str, losses: list[str]) -> dict[str, dict[str, object]]:
    """Each of `losses` that `experiment` has values for (configs/loss_experiment/<experiment>_<loss>.yaml):
    loss -> {key: value}."""
    folder = Path(CONFIG_DIR) / "loss_experiment"
    found = {}
    for loss in losses:
        path = folder / f"{experiment}_{loss}.yaml"
        if path.is_file():
            values = OmegaConf.to_container(OmegaConf.load(path))
            found[loss] = {k: v for k, v in values.items() if k != "defaults"}
    return found

