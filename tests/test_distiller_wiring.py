"""Config → distiller → loss: each method built from a composed config (by the pipeline's own builder)
gives the pure loss functions of ltkd.losses called with the arguments the config names.

The teacher is biased toward the head classes (like a teacher trained on long-tailed data), so that
rebalancing, reweighting and the temperature change the losses by far more than the tolerance; each
test also checks that the wrong setting would give a clearly different number.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import Tensor

from ltkd.build import check_method, student_distiller
from ltkd.config import RunConfig, load_config
from ltkd.distillers import METHODS, Distiller
from ltkd.distributed import DistInfo, mean_over_ranks
from ltkd.losses import (
    bkd_loss,
    class_balanced_weights,
    class_log_prior,
    dkd_loss,
    hcl_loss,
    kd_loss,
    logit_adjusted_ce,
    ltkd_loss,
    teacher_group_mean,
)
from tests.helpers import biased_teacher, context

# the toy data (tests/conftest.py): 100 classes, counts falling with the label, so the groups by count
# are the labels in order: 33 / 34 / 33 classes, or 50 / 50 for two groups
THREE_GROUPS = torch.tensor([0] * 33 + [1] * 34 + [2] * 33)
TWO_GROUPS = torch.tensor([0] * 50 + [1] * 50)
BATCH = 8


def build(compose_toy, tmp_path: Path, *overrides: str) -> tuple[RunConfig, Distiller]:
    cfg = load_config(compose_toy(*overrides))
    return cfg, student_distiller(context(cfg, tmp_path), biased_teacher(cfg)).train()


def batch(seed: int = 0, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(BATCH, 3, 32, 32, generator=gen), torch.randint(0, 100, (BATCH,), generator=gen)


def outputs(distiller: Distiller, images: Tensor) -> tuple[Tensor, dict, Tensor, dict]:
    """The student's and the teacher's (logits, features) on `images`, as the distiller sees them."""
    logits_s, feats_s = distiller.student(images)
    with torch.no_grad():
        logits_t, feats_t = distiller.teacher(images)
    return logits_s, feats_s, logits_t, feats_t


def losses_at(distiller: Distiller, epoch: int, seed: int = 0, scale: float = 1.0) -> tuple[dict[str, Tensor], tuple]:
    """The distiller's losses on a fixed batch at `epoch`, and the model outputs they were computed from."""
    images, target = batch(seed, scale)
    _, losses = distiller(images, target, epoch)
    return losses, (*outputs(distiller, images), target)


def differs(a: Tensor, b: Tensor, rel: float = 1e-4) -> bool:
    """a and b differ by more than `rel` (a hundred times assert_close's tolerance)."""
    a, b = float(a.detach()), float(b.detach())
    return abs(a - b) > rel * abs(b)


# --- KD ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "alpha", "temperature", "ce_weight"), [
    ((), 0.9, 4.0, 0.1),  # the preset: 0.1 CE + 0.9 T² KL at T = 4
    (("loss.alpha=0.3", "loss.temperature=2.5", "loss.ce_weight=0.7"), 0.3, 2.5, 0.7),
])
def test_kd_follows_alpha_temperature_and_ce_weight(overrides, alpha, temperature, ce_weight, compose_toy,
                                                    tmp_path: Path):
    _, distiller = build(compose_toy, tmp_path, "loss=kd", *overrides)
    losses, (logits_s, _, logits_t, _, target) = losses_at(distiller, epoch=1)
    expected = alpha * kd_loss(logits_s, logits_t, temperature)
    torch.testing.assert_close(losses["loss_kd"], expected)
    torch.testing.assert_close(losses["loss_ce"], ce_weight * logit_adjusted_ce(logits_s, target, None, 0.0))
    assert differs(expected, kd_loss(logits_s, logits_t, temperature))  # dropping α would show
    assert differs(expected, alpha * kd_loss(logits_s, logits_t, 1.0))  # and so would T = 1


# --- BKD -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("defer_epoch", "epoch", "weighted"), [(3, 1, False), (3, 3, False), (3, 4, True),
                                                               (0, 1, True)])
def test_bkd_is_plain_kd_until_its_deferral_epoch_then_class_balanced(defer_epoch: int, epoch: int, weighted: bool,
                                                                       compose_toy, tmp_path: Path):
    cfg, distiller = build(compose_toy, tmp_path, "loss=bkd", "loss.alpha=0.7", "loss.temperature=3",
                           "loss.beta_cb=0.999", f"loss.defer_epoch={defer_epoch}")
    losses, (logits_s, _, logits_t, _, target) = losses_at(distiller, epoch)
    counts = context(cfg, tmp_path).data.train_counts  # the toy data's, through DistillerInputs
    weights = class_balanced_weights(counts, 0.999)
    balanced, plain = 0.7 * bkd_loss(logits_s, logits_t, weights, 3.0), 0.7 * kd_loss(logits_s, logits_t, 3.0)
    torch.testing.assert_close(losses["loss_kd"], balanced if weighted else plain)
    torch.testing.assert_close(losses["loss_ce"], logit_adjusted_ce(logits_s, target, None, 0.0))  # instance-balanced
    assert differs(balanced, plain)  # the weights change the term
    assert differs(balanced, 0.7 * bkd_loss(logits_s, logits_t, class_balanced_weights(counts, 0.9999), 3.0))


# --- DKD -----------------------------------------------------------------------------------------

def test_dkd_follows_alpha_beta_temperature(compose_toy, tmp_path: Path):
    _, distiller = build(compose_toy, tmp_path, "loss=dkd", "loss.alpha=0.7", "loss.beta=3",
                         "loss.temperature=2", "loss.warmup_epochs=0")
    losses, (logits_s, _, logits_t, _, target) = losses_at(distiller, epoch=1)
    expected = dkd_loss(logits_s, logits_t, target, 0.7, 3.0, 2.0)
    torch.testing.assert_close(losses["loss_kd"], expected)
    assert differs(expected, dkd_loss(logits_s, logits_t, target, 3.0, 0.7, 2.0))  # α and β swapped


def test_dkd_beta_comes_from_the_loss_s_file_for_the_pair(compose_toy, tmp_path: Path):
    _, distiller = build(compose_toy, tmp_path, "loss=dkd", "pair=wrn_40_2_wrn_16_2", "loss.warmup_epochs=0",
                           "teacher.arch=resnet8", "student.arch=resnet8")
    losses, (logits_s, _, logits_t, _, target) = losses_at(distiller, epoch=1)
    torch.testing.assert_close(losses["loss_kd"], dkd_loss(logits_s, logits_t, target, 1.0, 6.0, 4.0))


@pytest.mark.parametrize(("overrides", "epoch", "factor"), [
    (("loss=dkd",), 5, 0.25), (("loss=dkd",), 20, 1.0), (("loss=dkd",), 30, 1.0), (("loss=ltkd",), 1, 0.05),
    (("loss=reviewkd",), 10, 0.5),
    (("loss=kd", "loss.warmup_epochs=4"), 2, 0.5),  # KD's preset has none; the setting still applies
])
def test_the_presets_warm_up_over_20_epochs(overrides: tuple, epoch: int, factor: float, compose_toy, tmp_path: Path):
    _, warm = build(compose_toy, tmp_path, *overrides)
    _, flat = build(compose_toy, tmp_path, *overrides, "loss.warmup_epochs=0")
    ramped, _ = losses_at(warm, epoch)
    full, _ = losses_at(flat, epoch)
    torch.testing.assert_close(ramped["loss_kd"], factor * full["loss_kd"])
    torch.testing.assert_close(ramped["loss_ce"], full["loss_ce"])


# --- LTKD ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "alpha", "beta", "temperature", "rebalance", "reweight"), [
    ((), 1.0, 8.0, 4.0, True, True),  # the preset
    (("loss.alpha=2", "loss.beta=0.5", "loss.temperature=3"), 2.0, 0.5, 3.0, True, True),
    (("loss.rebalance=none",), 1.0, 8.0, 4.0, False, True),
    (("loss.reweight=false",), 1.0, 8.0, 4.0, True, False),
    (("loss.rebalance=none", "loss.reweight=false"), 1.0, 8.0, 4.0, False, False),
])
def test_ltkd_follows_every_setting(overrides, alpha, beta, temperature, rebalance, reweight, compose_toy,
                                    tmp_path: Path):
    _, distiller = build(compose_toy, tmp_path, "loss=ltkd", "loss.warmup_epochs=0", *overrides)
    losses, (logits_s, _, logits_t, _, _) = losses_at(distiller, epoch=1)

    def reference(**changes) -> Tensor:
        args = dict(alpha=alpha, beta=beta, temperature=temperature, rebalance=rebalance, reweight=reweight)
        return ltkd_loss(logits_s, logits_t, THREE_GROUPS, **(args | changes))

    expected = reference()
    torch.testing.assert_close(losses["loss_kd"], expected)
    # each wrong setting would give another number: never rebalancing, ignoring reweight, T = 1
    assert differs(expected, reference(rebalance=not rebalance))
    assert differs(expected, reference(reweight=not reweight))
    assert differs(expected, reference(temperature=1.0))


def test_ltkd_group_fractions_define_the_groups(compose_toy, tmp_path: Path):
    _, distiller = build(compose_toy, tmp_path, "loss=ltkd", "loss.warmup_epochs=0", "loss.group_fractions=[0.5,0.5]")
    assert torch.equal(distiller.class_to_group, TWO_GROUPS) and distiller.num_groups == 2
    losses, (logits_s, _, logits_t, _, _) = losses_at(distiller, epoch=1)
    expected = ltkd_loss(logits_s, logits_t, TWO_GROUPS, 1.0, 8.0, 4.0)
    torch.testing.assert_close(losses["loss_kd"], expected)
    assert differs(expected, ltkd_loss(logits_s, logits_t, THREE_GROUPS, 1.0, 8.0, 4.0))


def test_ltkd_ema_statistics_follow_the_momentum(compose_toy, tmp_path: Path):
    _, distiller = build(compose_toy, tmp_path, "loss=ltkd", "loss.warmup_epochs=0", "loss.rebalance=ema",
                         "loss.ema_momentum=0.6", "loss.beta=0")  # β = 0: only the rebalanced term counts
    first, (logits_s1, _, logits_t1, _, _) = losses_at(distiller, epoch=1, seed=1)
    second, (logits_s2, _, logits_t2, _, _) = losses_at(distiller, epoch=1, seed=2, scale=30.0)
    means = [teacher_group_mean(t, THREE_GROUPS, 4.0) for t in (logits_t1, logits_t2)]
    # the first step starts the average at the batch mean
    torch.testing.assert_close(first["loss_kd"], ltkd_loss(logits_s1, logits_t1, THREE_GROUPS, 1.0, 0.0, 4.0))
    ema = 0.6 * means[0] + 0.4 * means[1]
    torch.testing.assert_close(distiller.group_mean_ema, ema)
    expected = ltkd_loss(logits_s2, logits_t2, THREE_GROUPS, 1.0, 0.0, 4.0, group_stats=ema)
    torch.testing.assert_close(second["loss_kd"], expected)
    assert differs(expected, ltkd_loss(logits_s2, logits_t2, THREE_GROUPS, 1.0, 0.0, 4.0))  # the batch's own


@pytest.mark.parametrize(("world_size", "global_stats", "reduced"), [
    (1, True, False), (2, True, True), (2, False, False),
])
def test_ltkd_statistics_are_reduced_over_ranks_only_with_global_stats(world_size: int, global_stats: bool,
                                                                       reduced: bool, compose_toy, tmp_path: Path):
    cfg = load_config(compose_toy("loss=ltkd", f"loss.global_stats={str(global_stats).lower()}"))
    ctx = context(cfg, tmp_path, DistInfo(world_size=world_size))
    distiller = student_distiller(ctx, biased_teacher(cfg))
    assert distiller.stats_reducer is (mean_over_ranks if reduced else None)


# --- ReviewKD ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "alpha", "student_key"), [
    ((), 5.0, "feats"),
    (("loss.alpha=1.5", "loss.preact=true"), 1.5, "preact_feats"),
])
def test_reviewkd_follows_alpha_and_preact(overrides, alpha: float, student_key: str, compose_toy, tmp_path: Path):
    _, distiller = build(compose_toy, tmp_path, "loss=reviewkd", "loss.warmup_epochs=0", *overrides)
    images, target = batch()
    _, losses = distiller(images, target, 1)
    _, feats_s, _, feats_t = outputs(distiller, images)

    def levels(features: dict, key: str) -> list[Tensor]:
        return [*features[key][1:], features["pooled_feat"][:, :, None, None]]

    teacher_levels = levels(feats_t, "preact_feats")
    expected = alpha * hcl_loss(distiller.fuse(levels(feats_s, student_key), teacher_levels), teacher_levels)
    torch.testing.assert_close(losses["loss_kd"], expected)
    other = "feats" if student_key == "preact_feats" else "preact_feats"
    wrong = alpha * hcl_loss(distiller.fuse(levels(feats_s, other), teacher_levels), teacher_levels)
    assert differs(expected, wrong)


# --- the CE term of every method -----------------------------------------------------------------

@pytest.mark.parametrize("loss", list(METHODS))
def test_ce_term_follows_weight_and_logit_adjustment(loss: str, compose_toy, tmp_path: Path):
    cfg, distiller = build(compose_toy, tmp_path, f"loss={loss}", "loss.ce_weight=0.4", "loss.logit_adjust_tau=1.5")
    images, target = batch()
    _, losses = distiller(images, target, 1)
    logits_s, _ = distiller.student(images)
    counts = context(cfg, tmp_path).data.train_counts
    expected = 0.4 * logit_adjusted_ce(logits_s, target, class_log_prior(counts), 1.5)
    torch.testing.assert_close(losses["loss_ce"], expected)
    assert differs(expected, 0.4 * logit_adjusted_ce(logits_s, target, None, 0.0))


# --- what every method of the table keeps (a method added to METHODS is covered here) ------------

@pytest.mark.parametrize("loss", list(METHODS))
def test_every_method_passes_the_check_step_and_resumes_from_its_student_state(loss: str, compose_toy,
                                                                               tmp_path: Path):
    """The run's check step (one training step on a dummy batch, before stage 1) passes, a real step's losses
    are finite scalars with gradients, and the student state a stage checkpoint stores loads back exactly."""
    cfg = load_config(compose_toy(f"loss={loss}"))
    ctx = context(cfg, tmp_path)
    check_method(ctx)
    distiller = student_distiller(ctx, biased_teacher(cfg)).train()
    _, losses = distiller(*batch(), 1)
    assert set(losses) == ({"loss_ce"} if not METHODS[loss].uses_teacher else {"loss_ce", "loss_kd"})
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in distiller.student.parameters())
    state = distiller.student_state_dict()
    assert not any(k.startswith("teacher.") for k in state)
    fresh = copy.deepcopy(distiller)
    with torch.no_grad():
        for p in fresh.trainable_parameters():
            p.add_(1.0)
    fresh.load_student_state_dict(state)
    assert all(torch.equal(v, state[k]) for k, v in fresh.student_state_dict().items())
