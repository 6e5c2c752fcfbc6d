"""The teacher's training objective (`teacher.objective`: ce, logit_adjusted, balanced_softmax): its checks, the
loss the teacher trains with (against the formulas written out), the teacher cache key (plain CE adds
nothing to it), the run identity, and a toy run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ltkd import pipeline
from ltkd.build import build_context, teacher_distiller
from ltkd.config import RunConfig, load_config, run_identity
from ltkd.errors import ConfigError
from ltkd.models import create_model
from ltkd.pipeline import check_same_identity
from ltkd.recipes import CONFIG_DIR
from ltkd.teacher_cache import TeacherCache, teacher_key


def compose_default(tmp_path: Path, *overrides: str) -> RunConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return load_config(compose("train", overrides=[f"data.root={tmp_path}", "logger=none", *overrides]))


def test_the_default_teacher_objective_is_plain_ce(tmp_path: Path):
    teacher = compose_default(tmp_path).teacher
    assert (teacher.objective, teacher.tau, teacher.logit_adjust_tau) == ("ce", 1.0, 0.0)


@pytest.mark.parametrize(("overrides", "tau"), [
    (["teacher.objective=logit_adjusted"], 1.0),
    (["teacher.objective=logit_adjusted", "teacher.tau=0.5"], 0.5),
    (["teacher.objective=balanced_softmax"], 1.0),
    (["teacher.tau=0.5"], 0.0),  # τ does not act on plain CE
])
def test_each_objective_s_logit_adjustment(overrides: list[str], tau: float, tmp_path: Path):
    assert compose_default(tmp_path, *overrides).teacher.logit_adjust_tau == tau


@pytest.mark.parametrize(("overrides", "message"), [
    (["teacher.objective=focal"], "teacher.objective: 'focal' is not allowed; allowed: ce, logit_adjusted, "
                                  "balanced_softmax"),
    (["teacher.tau=0"], "teacher.tau: 0; must be > 0"),
    (["teacher.objective=logit_adjusted", "teacher.tau=-1"], "teacher.tau: -1; must be > 0"),
    (["teacher.objective=balanced_softmax", "teacher.tau=2"],
     "teacher.tau: 2; balanced_softmax is the logit-adjusted loss at tau = 1 (another tau: "
     "teacher.objective=logit_adjusted)"),
])
def test_a_bad_objective_or_tau_is_one_line_naming_the_field(overrides: list[str], message: str, tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        compose_default(tmp_path, *overrides)
    assert str(info.value) == message


def test_a_given_teacher_checkpoint_is_not_trained_so_it_takes_no_objective(tmp_path: Path):
    checkpoint = tmp_path / "teacher.pt"
    checkpoint.write_bytes(b"")
    assert compose_default(tmp_path, f"teacher.checkpoint={checkpoint}").teacher.objective == "ce"
    with pytest.raises(ConfigError, match=r"^teacher\.objective: logit_adjusted trains the teacher, but "
                                          r"teacher\.checkpoint gives a trained one"):
        compose_default(tmp_path, f"teacher.checkpoint={checkpoint}", "teacher.objective=logit_adjusted")


# --- the loss the teacher trains with ------------------------------------------------------------

def _teacher_loss(compose_toy, tmp_path: Path, *overrides: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                          list[int]]:
    """The teacher distiller's CE term on a fixed batch, the teacher's logits and the targets, the counts."""
    ctx = build_context(load_config(compose_toy(*overrides)), tmp_path)
    torch.manual_seed(0)
    teacher = create_model(ctx.cfg.teacher.arch, ctx.data.num_classes)
    module = teacher_distiller(ctx, teacher).train()
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 5, 20, 40, 60, 80, 95, 99])
    logits, losses = module(images, target, 1)
    assert set(losses) == {"loss_ce"}
    return losses["loss_ce"], logits.detach(), target, ctx.data.train_counts


def test_the_ce_teacher_trains_with_plain_cross_entropy(compose_toy, tmp_path: Path):
    loss, logits, target, _ = _teacher_loss(compose_toy, tmp_path)
    torch.testing.assert_close(loss, F.cross_entropy(logits, target))


def test_the_logit_adjusted_teacher_trains_on_logits_plus_tau_log_prior(compose_toy, tmp_path: Path):
    loss, logits, target, counts = _teacher_loss(compose_toy, tmp_path, "teacher.objective=logit_adjusted",
                                                 "teacher.tau=0.5")
    prior = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    expected = F.cross_entropy(logits.double() + 0.5 * prior.log(), target).float()
    torch.testing.assert_close(loss, expected)
    assert abs(float(expected - F.cross_entropy(logits, target))) > 1e-3  # the adjustment acts


def test_balanced_softmax_is_ren_et_al_s_loss(compose_toy, tmp_path: Path):
    loss, logits, target, counts = _teacher_loss(compose_toy, tmp_path, "teacher.objective=balanced_softmax")
    n = torch.tensor(counts, dtype=torch.float64)
    z = logits.double()
    # -log( n_y e^{z_y} / Σ_j n_j e^{z_j} ), per image, averaged
    weighted = n * z.exp()
    expected = -(weighted.gather(1, target[:, None]).squeeze(1) / weighted.sum(1)).log().mean()
    torch.testing.assert_close(loss, expected.float())


# --- the teacher cache key and the run identity --------------------------------------------------

def _cache_name(tmp_path: Path, *overrides: str) -> str:
    return TeacherCache("cache", teacher_key(compose_default(tmp_path, *overrides), bf16=False)).name


def test_plain_ce_adds_nothing_to_the_cache_key_and_tau_does_not_act_on_it(tmp_path: Path):
    key = teacher_key(compose_default(tmp_path), bf16=False)
    assert not any(k.startswith(("teacher.objective", "teacher.tau", "teacher.logit_adjust")) for k in key["stage"])
    assert _cache_name(tmp_path).startswith("cifar100_lt-g100-resnet32x4-seed0-")
    assert _cache_name(tmp_path, "teacher.tau=0.5") == _cache_name(tmp_path)  # τ does not act on plain CE


def test_a_debiased_teacher_has_its_own_cache_entry(tmp_path: Path):
    ce = _cache_name(tmp_path)
    adjusted = _cache_name(tmp_path, "teacher.objective=logit_adjusted")
    assert adjusted != ce
    assert _cache_name(tmp_path, "teacher.objective=logit_adjusted", "teacher.tau=0.5") not in (ce, adjusted)
    # balanced softmax is the logit-adjusted loss at τ = 1: the same teacher, trained once
    assert _cache_name(tmp_path, "teacher.objective=balanced_softmax") == adjusted
    adjusted_key = teacher_key(compose_default(tmp_path, "teacher.objective=logit_adjusted"), False)
    assert adjusted_key["stage"]["teacher.logit_adjust_tau"] == 1.0


def test_a_run_stored_before_the_objective_existed_keeps_its_identity(tmp_path: Path):
    ce = compose_default(tmp_path)
    identity = run_identity(ce.to_dict())
    assert not any(k.startswith(("teacher.objective", "teacher.tau")) for k in identity)
    adjusted = run_identity(compose_default(tmp_path, "teacher.objective=logit_adjusted").to_dict())
    assert (adjusted["teacher.objective"], adjusted["teacher.tau"]) == ("logit_adjusted", 1.0)
    # a run directory whose config.yaml has no teacher.objective / teacher.tau (made before they existed)
    stored = ce.to_dict()
    del stored["teacher"]["objective"], stored["teacher"]["tau"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    OmegaConf.save(OmegaConf.create(stored), run_dir / "config.yaml")
    check_same_identity(ce, run_dir)  # resumes: it trained its teacher with plain CE
    with pytest.raises(ConfigError, match=r"holds a run of another config: teacher\.objective \(stored absent, "
                                          r"now logit_adjusted\), teacher\.tau \(stored absent, now 1\.0\)"):
        check_same_identity(compose_default(tmp_path, "teacher.objective=logit_adjusted"), run_dir)


@pytest.mark.slow  # trains a teacher of its own (the pieces above are fast; the preset's smoke run is slow too)
def test_a_toy_run_trains_and_reports_a_logit_adjusted_teacher(compose_toy, tmp_path: Path, capsys):
    cfg = load_config(compose_toy("loss=kd", "teacher.objective=logit_adjusted", f"paths.teacher_cache={tmp_path}"))
    metrics = pipeline.run(cfg, tmp_path / "run")
    entry = TeacherCache(tmp_path, teacher_key(cfg, bf16=False)).path
    assert metrics["teacher"]["source"] == str(entry) and entry.exists()
    assert metrics["config"]["teacher"]["objective"] == "logit_adjusted"
    assert set(metrics["teacher"]["final"]) >= {"head", "medium", "tail", "overall"}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["teacher"]["history"]  # trained here
    assert f"teacher {cfg.teacher.arch} (logit_adjusted)" in capsys.readouterr().out
