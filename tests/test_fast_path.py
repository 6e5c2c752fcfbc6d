"""The device-resident path trains like the usual DataLoader path (same accuracy within noise)."""

from __future__ import annotations

from pathlib import Path

import torch

from ltkd.config import load_config
from ltkd.data import ImageSet, class_to_group, split_groups
from ltkd.data.loaders import DataLoaderAdapter, DeviceLoader
from ltkd.data.transforms import ImageSetDataset, build_transforms
from ltkd.distillers import build_distiller
from ltkd.engine import Stage, StopSignal
from ltkd.evaluation import accuracy_from_counts, class_counts
from ltkd.loggers import NullLogger
from ltkd.models import create_model
from ltkd.runtime import Runtime
from tests.helpers import CLASSES, MEAN, PLAIN_CE, STD, toy_problem


def train_and_test(cfg, loader, test: ImageSet, tmp_path: Path, seed: int) -> float:
    runtime = Runtime(torch.device("cpu"), bf16=False, channels_last=False)
    torch.manual_seed(seed)
    model = create_model("resnet8", CLASSES)
    groups = split_groups([1] * CLASSES)
    module = build_distiller(PLAIN_CE, model, None, class_to_group=class_to_group(groups, CLASSES),
                             train_counts=[1] * CLASSES, input_size=32)
    test_batches = DeviceLoader(test.images, test.labels, batch_size=100, train=False, mean=MEAN, std=STD, pad=0,
                                device="cpu")

    def evaluate():
        return accuracy_from_counts(*class_counts(model, test_batches, CLASSES, runtime.autocast), groups)

    stage = Stage("teacher", module, module.trainable_parameters(), train_loader=loader, evaluate=evaluate,
                  trainer=cfg.trainer, lr=0.05, runtime=runtime, checkpoint_path=tmp_path / f"{seed}.ckpt",
                  logger=NullLogger(), stop=StopSignal())
    return stage.run(resume=False).final.overall


def test_device_path_matches_the_dataloader_path(compose_toy, tmp_path: Path):
    cfg = load_config(compose_toy("trainer.epochs=4", "trainer.lr_milestones=[3]", "trainer.max_steps_per_epoch=null",
                                  "trainer.eval_every=4"))
    train, test = toy_problem(24, seed=0), toy_problem(10, seed=1)
    transform = build_transforms("cifar100_lt", True, MEAN, STD)
    results: dict[str, list[float]] = {"device": [], "dataloader": []}
    for seed in (0, 1):
        common = dict(batch_size=16, train=True, device="cpu", seed=seed)
        fast = DeviceLoader(train.images, train.labels, mean=MEAN, std=STD, pad=4, **common)
        usual = DataLoaderAdapter(ImageSetDataset(train, transform), num_workers=0, **common)
        results["device"].append(train_and_test(cfg, fast, test, tmp_path / "d", seed))
        results["dataloader"].append(train_and_test(cfg, usual, test, tmp_path / "u", seed))
    fast_acc, usual_acc = (sum(v) / len(v) for v in results.values())
    assert fast_acc > 35 and usual_acc > 35, results  # both learn (chance is 10%)
    assert abs(fast_acc - usual_acc) < 15, results
