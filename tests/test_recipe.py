"""The optimiser follows the recipe, epoch by epoch, and the stages evaluate and checkpoint on cadence.

One toy run (5 epochs per stage) with a recorded history for both stages: lr ×lr_decay after each
milestone, `light_lr` for the light architectures, momentum and weight decay as configured; test
accuracy only every `eval_every` epochs (and at the last), checkpoints every `checkpoint_every`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ltkd import engine, pipeline
from ltkd.config import load_config
from ltkd.recipes import CONFIG_DIR
from tests.helpers import toy_overrides

RECIPE = ["loss=kd", "trainer.epochs=5", "trainer.max_steps_per_epoch=1", "trainer.lr_milestones=[2,4]",
          "trainer.lr_decay=0.1", "trainer.lr=0.2", "trainer.light_lr=0.03", "trainer.light_archs=[resnet14]",
          "student.arch=resnet14", "trainer.momentum=0.8", "trainer.weight_decay=0.002", "trainer.eval_every=2",
          "trainer.checkpoint_every=3"]


@pytest.fixture(scope="module")
def stages(fake_cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """{stage: {"history": [...], "saved": [next_epoch of each end-of-epoch checkpoint]}} of one toy run."""
    tmp = tmp_path_factory.mktemp("recipe")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = load_config(compose("train", overrides=toy_overrides(fake_cifar_root, tmp / "cache", *RECIPE)))
    seen: dict = {}
    run, save = engine.Stage.run, engine.Stage._save

    def recording_run(self, resume):
        result = run(self, resume)
        seen.setdefault(self.name, {})["history"] = result.history
        return result

    def recording_save(self, state):
        seen.setdefault(self.name, {}).setdefault("saved", []).append(state["next_epoch"])
        save(self, state)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine.Stage, "run", recording_run)
        patch.setattr(engine.Stage, "_save", recording_save)
        pipeline.run(cfg, tmp / "run")
    return seen


@pytest.mark.parametrize(("stage", "lr"), [("teacher", 0.2), ("student", 0.03)])  # resnet14 is light here
def test_lr_drops_tenfold_after_each_milestone(stages: dict, stage: str, lr: float):
    history = stages[stage]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert [h["lr"] for h in history] == pytest.approx([lr, lr, lr / 10, lr / 10, lr / 100])


@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_momentum_and_weight_decay_are_recorded_per_epoch(stages: dict, stage: str):
    assert {(h["momentum"], h["weight_decay"]) for h in stages[stage]["history"]} == {(0.8, 0.002)}


@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_evaluation_and_checkpoint_cadence(stages: dict, stage: str):
    evaluated = [h["epoch"] for h in stages[stage]["history"] if "test/overall" in h]
    assert evaluated == [2, 4, 5]  # every eval_every=2 epochs, and the last
    assert stages[stage]["saved"] == [4, 6]  # after epoch 3 (checkpoint_every=3) and the last, epoch 5
