"""Teacher bias, measured: group masses in a run's metrics.json, post hoc, and in make_table's own table;
LTKD's group statistics per epoch in the history."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import Tensor, nn

from ltkd import pipeline
from ltkd.config import load_config
from ltkd.distillers import METHODS
from ltkd.group_mass import measure
from ltkd.recipes import CONFIG_DIR
from tests.helpers import ROOT, toy_overrides


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


group_mass_script, make_table = _script("group_mass"), _script("make_table")

KEYS = {"T=1", "T=4"}


class FixedLogits(nn.Module):
    """Returns the logits stored for each image index (the image's first pixel)."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits, requires_grad=False)

    def forward(self, images: Tensor) -> tuple[Tensor, dict]:
        return self.logits[images[:, 0].long()], {}


def test_group_mass_is_the_mean_summed_softmax_of_each_groups_classes():
    logits = torch.tensor([[2.0, 0.0, 0.0, -1.0, 1.0], [0.0, 3.0, -2.0, 0.0, 0.5], [1.0, 1.0, 1.0, 1.0, 1.0]])
    groups = [[0, 1], [2], [3, 4]]
    batches = [(torch.tensor([[0.0], [1.0]]), torch.zeros(2)), (torch.tensor([[2.0]]), torch.zeros(1))]
    result = measure({"teacher": FixedLogits(logits)}, {"test": batches}, groups, (1.0, 2.0, 1.0),
                     contextlib.nullcontext)
    for t in (1.0, 2.0):
        probs = torch.softmax(logits / t, dim=1)
        expected = [100 * probs[:, g].sum(dim=1).mean().item() for g in groups]
        got = result["teacher"]["test"][f"T={t:g}"]
        assert list(got) == ["head", "medium", "tail"]
        assert list(got.values()) == pytest.approx(expected, rel=1e-5)
        assert sum(got.values()) == pytest.approx(100.0)
    assert set(result["teacher"]["test"]) == {"T=1", "T=2"}  # a repeated temperature is measured once
    assert result["class_share"] == pytest.approx({"head": 40.0, "medium": 20.0, "tail": 40.0})


@pytest.mark.parametrize("loss", list(METHODS))
def test_group_masses_are_also_measured_at_the_methods_own_temperature(tmp_path: Path, loss: str):
    """A method with a `temperature` key (in the table: KD, DKD, BKD, LTKD) softens at it: the group masses are
    measured there too; one without (CE, ReviewKD) at T = 1 only."""
    temperature = 3.0 if "temperature" in {f.name for f in dataclasses.fields(METHODS[loss].config)} else None
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = load_config(compose("train", overrides=[f"data.root={tmp_path}", f"loss={loss}",
                                                      "loss.temperature=3" if temperature else "logger=none"]))
    assert cfg.loss.distillation_temperature == temperature


@pytest.fixture(scope="module")
def ltkd_run(tmp_path_factory, fake_cifar_root: Path, shared_teacher_cache: Path) -> tuple[Path, dict, str]:
    """One toy LTKD run (EMA rebalancing): its directory, metrics and console output."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=toy_overrides(fake_cifar_root, shared_teacher_cache, "loss=ltkd",
                                                       "loss.rebalance=ema"))
    run_dir = tmp_path_factory.mktemp("runs") / "ltkd"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        metrics = pipeline.run(load_config(cfg), run_dir)
    return run_dir, metrics, out.getvalue()


def test_a_run_records_and_prints_the_group_masses_of_teacher_and_student(ltkd_run):
    run_dir, metrics, stdout = ltkd_run
    stored = json.loads((run_dir / "metrics.json").read_text())["group_mass"]
    assert stored == metrics["group_mass"]
    for who in ("teacher", "student"):
        assert set(stored[who]) == {"train", "test"}
        for split in ("train", "test"):
            assert set(stored[who][split]) == KEYS
            for masses in stored[who][split].values():
                assert sum(masses.values()) == pytest.approx(100.0, abs=1e-3)
    # at T = 4 the distribution is flatter than at T = 1: closer to the class shares
    share = stored["class_share"]
    for split in ("train", "test"):
        by_t = stored["teacher"][split]
        assert sum(abs(by_t["T=4"][g] - share[g]) for g in share) < sum(abs(by_t["T=1"][g] - share[g]) for g in share)
    assert "teacher train T=1" in stdout and "student test T=4" in stdout and "class share" in stdout


def test_post_hoc_script_measures_old_runs_as_the_run_itself_did(ltkd_run, tmp_path: Path):
    run_dir, metrics, _ = ltkd_run
    old = tmp_path / "sweep" / "ltkd"
    shutil.copytree(run_dir, old)
    without = json.loads(json.dumps({k: v for k, v in metrics.items() if k != "group_mass"}))  # an older run
    (old / "metrics.json").write_text(json.dumps(without))
    config = OmegaConf.load(old / "config.yaml")  # stored before teacher.objective existed
    del config.teacher["objective"], config.teacher["tau"]
    OmegaConf.save(config, old / "config.yaml")
    assert group_mass_script.main([str(tmp_path / "sweep"), "--device", "cpu"]) == 0
    measured = json.loads((old / "metrics.json").read_text())
    assert {k: v for k, v in measured.items() if k != "group_mass"} == without
    for who in ("teacher", "student"):
        for split in ("train", "test"):
            for t in KEYS:
                assert measured["group_mass"][who][split][t] == pytest.approx(metrics["group_mass"][who][split][t],
                                                                              rel=1e-4)


def test_post_hoc_script_reports_a_missing_teacher(ltkd_run, tmp_path: Path, capsys):
    run_dir, metrics, _ = ltkd_run
    old = tmp_path / "ltkd"
    shutil.copytree(run_dir, old)
    moved = {k: v for k, v in metrics.items() if k != "group_mass"}
    moved["teacher"] = {**moved["teacher"], "source": str(tmp_path / "gone.pt")}
    (old / "metrics.json").write_text(json.dumps(moved))
    assert group_mass_script.main([str(tmp_path), "--device", "cpu"]) == 1
    assert "gone.pt" in capsys.readouterr().err
    assert "group_mass" not in json.loads((old / "metrics.json").read_text())


def test_ltkd_history_has_the_teachers_group_mass_and_the_factors_applied(ltkd_run):
    _, metrics, _ = ltkd_run
    for record in metrics["student"]["history"]:
        mass = [record[f"ltkd/teacher_mass_{g}"] for g in ("head", "medium", "tail")]
        factors = [record[f"ltkd/rebalance_factor_{g}"] for g in ("head", "medium", "tail")]
        assert sum(mass) == pytest.approx(100.0, abs=1e-3)
        assert all(f > 0 for f in factors) and factors != [1.0, 1.0, 1.0]
    assert not any(k.startswith("ltkd/") for k in metrics["teacher"]["history"][-1])


def test_make_table_writes_the_group_mass_table_and_figure(tmp_path: Path):
    def masses(head: float) -> dict:
        rest = (100 - head) / 2
        return {"T=1": {"head": head, "medium": rest, "tail": rest},
                "T=4": {"head": 40.0, "medium": 30.0, "tail": 30.0}}

    runs = tmp_path / "runs"
    for seed, loss, head in ((0, "kd", 50.0), (1, "kd", 54.0), (0, "ltkd", 40.0), (1, "ltkd", 44.0)):
        run = runs / f"{loss}{seed}"
        run.mkdir(parents=True)
        acc = {"overall": 40.0, "head": 50.0, "medium": 40.0, "tail": 30.0, "per_class": []}
        (run / "metrics.json").write_text(json.dumps({
            "dataset": "cifar100_lt", "imbalance_factor": 100, "teacher_arch": "resnet20", "student_arch": "resnet8",
            "loss": loss, "seed": seed, "epochs": 20, "max_steps_per_epoch": None,
            "teacher": {"final": acc, "source": f"t{seed}.pt"}, "student": {"final": acc},
            "config": {"seed": seed, "loss": {"name": loss}},
            "group_mass": {"definition": "d", "class_share": {"head": 33.0, "medium": 34.0, "tail": 33.0},
                           "teacher": {"train": masses(60.0 + seed)}, "student": {"train": masses(head)}}}))
    older = runs / "a-ce0"  # a run without group masses (made before them), listed first, same teacher as seed 0
    older.mkdir()
    metrics = json.loads((runs / "kd0" / "metrics.json").read_text())
    (older / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "group_mass"}
                                                   | {"loss": "ce"}))
    assert make_table.main([str(runs), "--name", "t", "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "t_group_mass.md").read_text()
    assert "| ce |" not in md and "| ce |" in (tmp_path / "out" / "t.md").read_text()
    assert "mean over images of the summed softmax" in md and "head 33.00" in md
    assert "| 100 | resnet20 | resnet8 | teacher | 2 | train | 1 | 60.50 ± 0.71 |" in md
    assert "| 100 | resnet20 | resnet8 | kd | 2 | train | 1 | 52.00 ± 2.83 | 24.00 ± 1.41 |" in md
    assert "| ltkd | 2 | train | 4 | 40.00 ± 0.00 |" in md
    assert (tmp_path / "out" / "t_group_mass.png").stat().st_size > 1000
    assert (tmp_path / "out" / "t_group_mass.csv").read_text().startswith("dataset,imbalance_factor")


def test_the_teacher_row_has_its_mass_at_every_students_temperature(tmp_path: Path):
    """One teacher, a T=2 student read first and a T=4 student: the teacher is listed at T=1, 2 and 4, each value
    once (it was listed only at the first-read student's T)."""
    def masses(t: str, head: float) -> dict:
        return {"T=1": {"head": head, "medium": 20.0, "tail": 80.0 - head}, t: {"head": head - 10, "medium": 30.0,
                                                                               "tail": 80.0 - head}}

    for loss, t in (("a-bkd", "T=2"), ("kd", "T=4")):
        run = tmp_path / "runs" / loss
        run.mkdir(parents=True)
        acc = {"overall": 40.0, "head": 50.0, "medium": 40.0, "tail": 30.0, "per_class": []}
        (run / "metrics.json").write_text(json.dumps({
            "dataset": "cifar100_lt", "imbalance_factor": 100, "teacher_arch": "resnet20", "student_arch": "resnet8",
            "loss": loss, "seed": 0, "epochs": 20, "max_steps_per_epoch": None,
            "teacher": {"final": acc, "source": "t0.pt"}, "student": {"final": acc},
            "config": {"seed": 0, "loss": {"name": loss}},
            "group_mass": {"definition": "d", "class_share": {"head": 33.0, "medium": 34.0, "tail": 33.0},
                           "teacher": {"test": masses(t, 70.0)}, "student": {"test": masses(t, 50.0)}}}))
    assert make_table.main([str(tmp_path / "runs"), "--name", "t", "--out", str(tmp_path / "out")]) == 0
    teacher = [line for line in (tmp_path / "out" / "t_group_mass.md").read_text().splitlines()
               if line.startswith("| 100 |") and "| teacher |" in line]
    assert [line.split(" | ")[6] for line in teacher] == ["1", "2", "4"]
    assert all(" | 1 | test | " in line for line in teacher)  # one seed: no value counted twice
    assert [line.split(" | ")[7] for line in teacher] == ["70.00", "60.00", "60.00"]
