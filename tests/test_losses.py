"""The pure losses: exact identities, limits, gradients, rebalancing, DKD vs the published formula, HCL by
hand, and finiteness for extreme logits in float32 and under bfloat16 autocast."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from ltkd.losses import (
    bkd_loss,
    class_balanced_weights,
    class_log_prior,
    dkd_loss,
    hcl_loss,
    kd_loss,
    kl_decomposition,
    logit_adjusted_ce,
    ltkd_loss,
    rebalance_factors,
    teacher_group_mean,
)

F64 = torch.float64
GROUPINGS = {
    2: [0, 0, 0, 1, 1, 1, 1],
    3: [0, 1, 1, 2, 2, 2, 0],  # group 0 = {0, 6}
    5: [0, 1, 1, 2, 3, 3, 4],  # singletons 0, 3, 6
}


def _logits(*shape: int, scale: float = 2.0, dtype: torch.dtype = F64, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=gen, dtype=F64)).to(dtype)


def _kl_reference(logits_s: Tensor, logits_t: Tensor, temperature: float) -> Tensor:
    """Per-sample KL(softmax(zᵀ/T) ‖ softmax(zˢ/T)) by torch's kl_div."""
    return F.kl_div(F.log_softmax(logits_s / temperature, 1), F.log_softmax(logits_t / temperature, 1),
                    reduction="none", log_target=True).sum(1)


def _dkd_reference(logits_s: Tensor, logits_t: Tensor, target: Tensor, alpha: float, beta: float,
                   temperature: float) -> Tensor:
    """mdistiller's dkd_loss, literally (the -1000 target mask and the summed masked softmax)."""
    gt_mask = torch.zeros_like(logits_s).scatter_(1, target.unsqueeze(1), 1).bool()
    other_mask = ~gt_mask

    def cat_mask(t: Tensor) -> Tensor:
        return torch.cat([(t * gt_mask).sum(1, keepdims=True), (t * other_mask).sum(1, keepdims=True)], dim=1)

    pred_student = cat_mask(F.softmax(logits_s / temperature, dim=1))
    pred_teacher = cat_mask(F.softmax(logits_t / temperature, dim=1))
    tckd = F.kl_div(torch.log(pred_student), pred_teacher, reduction="sum") * temperature**2 / target.shape[0]
    pred_teacher_part2 = F.softmax(logits_t / temperature - 1000.0 * gt_mask, dim=1)
    log_pred_student_part2 = F.log_softmax(logits_s / temperature - 1000.0 * gt_mask, dim=1)
    nckd = (F.kl_div(log_pred_student_part2, pred_teacher_part2, reduction="sum") * temperature**2
            / target.shape[0])
    return alpha * tckd + beta * nckd


def _group_probs(logits: Tensor, class_to_group: Tensor, temperature: float, k: int) -> Tensor:
    """b_G = Σ_{i∈G} softmax(z/T)_i, directly in probability space (float64)."""
    p = F.softmax(logits / temperature, dim=1)
    return torch.stack([p[:, class_to_group == g].sum(1) for g in range(k)], dim=1)


def _rebalanced_teacher(logits_t: Tensor, class_to_group: Tensor,
                        group_stats: Tensor | None = None) -> Tensor:
    """b̂ᵀ recovered from the public loss: with singleton groups, T = 1, β = 0 and a uniform student, the
    gradient of α·KL(b̂ᵀ‖bˢ) w.r.t. the student logits is (bˢ - b̂ᵀ) / N."""
    n, c = logits_t.shape
    logits_s = torch.zeros(n, c, dtype=logits_t.dtype, requires_grad=True)
    ltkd_loss(logits_s, logits_t, class_to_group, 1.0, 0.0, 1.0, group_stats=group_stats).backward()
    return 1.0 / c - n * logits_s.grad


# --- identities ----------------------------------------------------------------------------------

@pytest.mark.parametrize("k", sorted(GROUPINGS))
def test_decomposition_is_exact(k: int) -> None:
    groups = torch.tensor(GROUPINGS[k])
    s, t = _logits(6, 7, seed=1), _logits(6, 7, seed=2)
    d = kl_decomposition(s, t, groups, 2.0)
    assert d.cross.shape == (6,) and d.within.shape == (6, k) and d.teacher_group_probs.shape == (6, k)
    torch.testing.assert_close(d.cross + (d.teacher_group_probs * d.within).sum(1), _kl_reference(s, t, 2.0),
                               rtol=0, atol=1e-10)
    torch.testing.assert_close(d.teacher_group_probs, _group_probs(t, groups, 2.0, k), rtol=0, atol=1e-12)
    singletons = [g for g in range(k) if (groups == g).sum() == 1]
    assert torch.all(d.within[:, singletons] == 0)


@pytest.mark.parametrize("k", sorted(GROUPINGS))
def test_ltkd_without_rebalance_or_reweight_is_kd(k: int) -> None:
    s, t = _logits(5, 7, seed=3), _logits(5, 7, seed=4)
    loss = ltkd_loss(s, t, torch.tensor(GROUPINGS[k]), 1.0, 1.0, 3.0, rebalance=False, reweight=False)
    torch.testing.assert_close(loss, kd_loss(s, t, 3.0), rtol=0, atol=1e-10)


def test_kd_matches_kl_div_reference() -> None:
    s, t = _logits(8, 10, seed=5), _logits(8, 10, seed=6)
    torch.testing.assert_close(kd_loss(s, t, 4.0), 16.0 * _kl_reference(s, t, 4.0).mean(), rtol=1e-12, atol=0)


def test_ltkd_parts_are_the_decomposition_terms() -> None:
    groups = torch.tensor(GROUPINGS[3])
    s, t = _logits(5, 7, seed=7), _logits(5, 7, seed=8)
    d = kl_decomposition(s, t, groups, 2.0)
    reweighted = ltkd_loss(s, t, groups, 0.5, 3.0, 2.0, rebalance=False, reweight=True)
    expected = 4.0 * (0.5 * d.cross + 3.0 * d.within.mean(1)).mean()
    torch.testing.assert_close(reweighted, expected, rtol=1e-12, atol=0)


def test_ltkd_on_a_hand_worked_example() -> None:
    """Teacher p = (.4, .2 | .3, .1), student uniform, groups {0, 1} {2, 3}, T = 2, α = 2, β = 5, written out."""
    ln = math.log
    t = 2.0 * torch.tensor([[0.4, 0.2, 0.3, 0.1]], dtype=torch.float64).log()  # softmax(t / 2) = p
    s = torch.zeros(1, 4, dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 1])
    cross = 0.6 * ln(0.6 / 0.5) + 0.4 * ln(0.4 / 0.5)  # KL(bᵀ = (.6, .4) ‖ bˢ = (.5, .5))
    within = (2 / 3 * ln(4 / 3) + 1 / 3 * ln(2 / 3),  # KL((2/3, 1/3) ‖ (1/2, 1/2))
              0.75 * ln(1.5) + 0.25 * ln(0.5))  # KL((3/4, 1/4) ‖ (1/2, 1/2))
    mass_weighted = 4.0 * (2.0 * cross + 5.0 * (0.6 * within[0] + 0.4 * within[1]))
    uniform_weighted = 4.0 * (2.0 * cross + 5.0 * (within[0] + within[1]) / 2)
    for reweight, expected in ((False, mass_weighted), (True, uniform_weighted)):
        loss = ltkd_loss(s, t, groups, 2.0, 5.0, 2.0, rebalance=False, reweight=reweight)
        assert loss.item() == pytest.approx(expected, rel=1e-12), reweight


def test_dkd_matches_reference_formula() -> None:
    s, t = _logits(16, 10, scale=3.0, seed=9), _logits(16, 10, scale=3.0, seed=10)
    target = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(0))
    for alpha, beta, temperature in [(1.0, 8.0, 4.0), (0.5, 0.5, 1.0), (2.0, 0.0, 2.0)]:
        torch.testing.assert_close(dkd_loss(s, t, target, alpha, beta, temperature),
                                   _dkd_reference(s, t, target, alpha, beta, temperature), rtol=1e-6, atol=0)


def test_teacher_group_mean() -> None:
    groups = torch.tensor(GROUPINGS[3])
    t = _logits(9, 7, seed=11)
    torch.testing.assert_close(teacher_group_mean(t, groups, 2.0), _group_probs(t, groups, 2.0, 3).mean(0))
    torch.testing.assert_close(teacher_group_mean(t, groups, 2.0, num_groups=4)[:3],
                               teacher_group_mean(t, groups, 2.0))


# --- limits --------------------------------------------------------------------------------------

def test_identical_logits_give_zero() -> None:
    z = _logits(6, 7, seed=12)
    groups = torch.tensor(GROUPINGS[3])
    target = torch.arange(6)
    assert kd_loss(z, z, 4.0).abs() < 1e-12
    assert dkd_loss(z, z, target, 1.0, 8.0, 4.0).abs() < 1e-12
    for reweight in (False, True):
        assert ltkd_loss(z, z, groups, 1.0, 8.0, 4.0, rebalance=False, reweight=reweight).abs() < 1e-12
    d = kl_decomposition(z, z, groups, 4.0)
    assert d.cross.abs().max() < 1e-12 and d.within.abs().max() < 1e-12


def test_temperature_scaling() -> None:
    s, t = _logits(6, 7, seed=13), _logits(6, 7, seed=14)
    target = torch.arange(6)
    groups = torch.tensor(GROUPINGS[2])
    torch.testing.assert_close(kd_loss(s, t, 4.0), 16.0 * kd_loss(s / 4, t / 4, 1.0))
    torch.testing.assert_close(dkd_loss(s, t, target, 1.0, 2.0, 4.0),
                               16.0 * dkd_loss(s / 4, t / 4, target, 1.0, 2.0, 1.0))
    torch.testing.assert_close(ltkd_loss(s, t, groups, 1.0, 2.0, 4.0),
                               16.0 * ltkd_loss(s / 4, t / 4, groups, 1.0, 2.0, 1.0))


# --- gradients -----------------------------------------------------------------------------------

def test_gradcheck_kd_and_dkd() -> None:
    s = _logits(3, 5, seed=15).requires_grad_()
    t = _logits(3, 5, seed=16).requires_grad_()
    target = torch.tensor([0, 3, 4])
    assert torch.autograd.gradcheck(lambda a, b: kd_loss(a, b, 2.0), (s, t))
    assert torch.autograd.gradcheck(lambda a, b: dkd_loss(a, b, target, 1.0, 4.0, 2.0), (s, t))


@pytest.mark.parametrize("rebalance", [False, True])
@pytest.mark.parametrize("reweight", [False, True])
def test_gradcheck_ltkd(rebalance: bool, reweight: bool) -> None:
    groups = torch.tensor(GROUPINGS[3])
    s = _logits(4, 7, seed=17).requires_grad_()
    t = _logits(4, 7, seed=18)
    assert torch.autograd.gradcheck(
        lambda a: ltkd_loss(a, t, groups, 1.0, 4.0, 2.0, rebalance=rebalance, reweight=reweight), (s,))


def test_no_gradient_through_rebalancing_statistics() -> None:
    groups = torch.tensor(GROUPINGS[3])
    s = _logits(6, 7, seed=19)

    def teacher_grad(stats_from: str) -> Tensor:
        t = _logits(6, 7, seed=20).requires_grad_()
        stats = {"batch": None, "attached": teacher_group_mean(t, groups, 2.0),
                 "constant": teacher_group_mean(t.detach(), groups, 2.0)}[stats_from]
        ltkd_loss(s, t, groups, 1.0, 4.0, 2.0, group_stats=stats).backward()
        return t.grad

    constant = teacher_grad("constant")
    assert constant.abs().max() > 0
    torch.testing.assert_close(teacher_grad("batch"), constant, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(teacher_grad("attached"), constant, rtol=1e-12, atol=1e-14)


# --- rebalancing ---------------------------------------------------------------------------------

def test_uniform_group_teacher_is_unchanged() -> None:
    groups = torch.arange(3)
    rows = torch.tensor([[0.6, 0.3, 0.1], [0.3, 0.1, 0.6], [0.1, 0.6, 0.3]], dtype=F64)  # batch mean uniform
    t = rows.log()
    torch.testing.assert_close(_rebalanced_teacher(t, groups), rows)
    s = _logits(3, 3, seed=21)
    torch.testing.assert_close(ltkd_loss(s, t, groups, 1.0, 1.0, 1.0),
                               ltkd_loss(s, t, groups, 1.0, 1.0, 1.0, rebalance=False))
    uniform = torch.full((3,), 1 / 3, dtype=F64)
    skewed = _logits(3, 3, seed=22)
    torch.testing.assert_close(ltkd_loss(s, skewed, groups, 1.0, 1.0, 1.0, group_stats=uniform),
                               ltkd_loss(s, skewed, groups, 1.0, 1.0, 1.0, rebalance=False))


def test_rebalancing_moves_the_batch_mean_toward_uniform() -> None:
    groups = torch.arange(3)
    head_biased = torch.tensor([4.0, 1.0, 0.0], dtype=F64) + _logits(8, 3, scale=0.5, seed=23)
    before = F.softmax(head_biased, 1)
    after = _rebalanced_teacher(head_biased, groups)
    torch.testing.assert_close(after.sum(1), torch.ones(8, dtype=F64))
    expected = before / before.mean(0)
    torch.testing.assert_close(after, expected / expected.sum(1, keepdim=True))
    uniform = torch.full((3,), 1 / 3, dtype=F64)
    assert (after.mean(0) - uniform).abs().max() < 0.5 * (before.mean(0) - uniform).abs().max()


def test_rebalancing_uses_given_group_stats() -> None:
    groups = torch.arange(3)
    t = _logits(5, 3, seed=24)
    stats = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
    expected = F.softmax(t, 1) / stats
    after = _rebalanced_teacher(t, groups, stats)
    torch.testing.assert_close(after, expected / expected.sum(1, keepdim=True))
    assert (after - _rebalanced_teacher(t, groups)).abs().max() > 1e-3


# --- HCL -----------------------------------------------------------------------------------------

def test_hcl_by_hand() -> None:
    one = (torch.tensor([3.0]).view(1, 1, 1, 1), torch.tensor([1.0]).view(1, 1, 1, 1))  # levels all skipped
    assert hcl_loss([one[0]], [one[1]]).item() == pytest.approx(4.0)
    two = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)  # only level 1: (7.5 + 6.25 / 2) / 1.5
    assert hcl_loss([two], [torch.zeros_like(two)]).item() == pytest.approx((7.5 + 6.25 / 2) / 1.5)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1.0  # pools to 0 at 4, 2, 1
    eight = checker.view(1, 1, 8, 8).repeat(2, 3, 1, 1)
    assert hcl_loss([eight], [torch.zeros_like(eight)]).item() == pytest.approx(1.0 / 1.875)
    constant = torch.full((2, 3, 8, 8), 2.0)  # every level has MSE 4
    assert hcl_loss([constant], [torch.zeros_like(constant)]).item() == pytest.approx(4.0)
    pairs = hcl_loss([one[0], two, eight], [one[1], torch.zeros_like(two), torch.zeros_like(eight)])
    assert pairs.item() == pytest.approx(4.0 + (7.5 + 3.125) / 1.5 + 1.0 / 1.875)


def test_hcl_identical_features_give_zero() -> None:
    feats = [_logits(2, 4, 8, 8, seed=25), _logits(2, 6, 1, 1, seed=26)]
    assert hcl_loss(feats, feats).item() == 0.0


# --- extreme logits ------------------------------------------------------------------------------

def _hcl_on_maps(s: Tensor, t: Tensor) -> Tensor:
    n, c = s.shape
    return hcl_loss([s.view(n, c, 1, 1).expand(n, c, 4, 4)], [t.view(n, c, 1, 1).expand(n, c, 4, 4)])


def _target(s: Tensor) -> Tensor:
    return torch.arange(s.shape[0]) % s.shape[1]


THREE = torch.tensor(GROUPINGS[3])
SPARSE = torch.tensor([0, 0, 1, 1, 1, 3, 3])  # of 4 groups; group 2 is empty
NO_HEAD = torch.tensor([0.0, 0.5, 0.5])  # group statistics with a zero
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "kd": lambda s, t: kd_loss(s, t, 4.0),
    "bkd": lambda s, t: bkd_loss(s, t, class_balanced_weights([500, 120, 40, 12, 7, 5, 1], 0.9999), 2.0),
    "dkd": lambda s, t: dkd_loss(s, t, _target(s), 1.0, 8.0, 4.0),
    "ltkd": lambda s, t: ltkd_loss(s, t, THREE, 1.0, 8.0, 1.0),
    "ltkd_mass_weights": lambda s, t: ltkd_loss(s, t, THREE, 1.0, 8.0, 4.0, reweight=False),
    "ltkd_empty_group": lambda s, t: ltkd_loss(s, t, SPARSE, 1.0, 8.0, 4.0, num_groups=4),
    "ltkd_zero_stats": lambda s, t: ltkd_loss(s, t, THREE, 1.0, 8.0, 1.0, group_stats=NO_HEAD),
    "decomposition": lambda s, t: sum(x.sum() for x in kl_decomposition(s, t, SPARSE, 1.0, num_groups=4)),
    "hcl": _hcl_on_maps,
    "ce": lambda s, t: logit_adjusted_ce(s, _target(s), class_log_prior(range(1, s.shape[1] + 1)), 1.0),
}
STUDENT_ONLY = {"ce"}


def _extreme_pair(dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """A maximally confident, wrong student and teacher: logit gaps of 1e4 in opposite directions."""
    s = torch.tensor([[1e4, -1e4, 0, 0, -1e4, 0, 1e4], [-1e4] * 6 + [1e4], [0.0] * 7, [1e4] + [-1e4] * 6])
    t = torch.tensor([[-1e4, 1e4, 0, 0, 1e4, 0, -1e4], [1e4] + [-1e4] * 6, [1e4] * 7, [-1e4] * 6 + [1e4]])
    return s.to(dtype).requires_grad_(), t.to(dtype).requires_grad_()


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bf16-autocast"])
def test_extreme_logits_give_finite_values_and_gradients(autocast: bool) -> None:
    for name, loss_fn in LOSSES.items():
        s, t = _extreme_pair(torch.bfloat16 if autocast else torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(s, t)
        assert loss.dtype == torch.float32 and torch.isfinite(loss), name
        loss.backward()
        for grad in (s.grad,) if name in STUDENT_ONLY else (s.grad, t.grad):
            assert grad is not None and torch.isfinite(grad).all(), name


def test_underflowing_group_mass_is_finite() -> None:
    groups = torch.tensor(GROUPINGS[3])
    # groups 1 and 2 hold ~e^-400 of the teacher's mass: 0 in float32
    t = torch.tensor([[200.0, -200, -200, -200, -200, -200, 200]] * 3, requires_grad=True)
    s = _logits(3, 7, dtype=torch.float32, seed=27).requires_grad_()
    d = kl_decomposition(s, t, groups, 1.0)
    assert (d.teacher_group_probs[:, 1:] == 0).all()
    loss = ltkd_loss(s, t, groups, 1.0, 8.0, 1.0) + d.cross.sum() + d.within.sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all() and torch.isfinite(t.grad).all()


# --- BKD -----------------------------------------------------------------------------------------

def _effective_number_weights(counts: list[int], beta: float) -> list[float]:
    """Cui et al.'s class-balanced weights, written out: (1 − β) / (1 − β^n), scaled to sum to C."""
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    return [w * len(counts) / sum(raw) for w in raw]


def _bkd_reference(logits_s: Tensor, logits_t: Tensor, weights: list[float], temperature: float) -> Tensor:
    """T² · mean over images of Σ_c w_c pᵀ_c (log pᵀ_c − log pˢ_c), class by class in probability space."""
    p_s, p_t = F.softmax(logits_s / temperature, 1), F.softmax(logits_t / temperature, 1)
    per_image = sum(w * p_t[:, c] * (p_t[:, c].log() - p_s[:, c].log()) for c, w in enumerate(weights))
    return temperature**2 * per_image.mean()


def test_class_balanced_weights_follow_the_effective_number() -> None:
    counts = [500, 120, 40, 12, 7, 5, 1]
    weights = class_balanced_weights(counts, 0.9999)
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights.double(), torch.tensor(_effective_number_weights(counts, 0.9999), dtype=F64))
    assert math.isclose(float(weights.sum()), len(counts), rel_tol=1e-6)
    assert bool((weights.diff() > 0).all())  # rarer classes weigh more
    # (1 − β)·n ≪ 1: the effective number is about n, so the weights are about ∝ 1/n (inverse frequency)
    torch.testing.assert_close(class_balanced_weights([1, 2, 4], 1 - 1e-8), torch.tensor([1, 0.5, 0.25]) * 3 / 1.75)


@pytest.mark.parametrize(("counts", "beta"), [([30] * 7, 0.9999), ([500, 120, 40, 12, 7, 5, 1], 0.0),
                                              ([500, 120, 40, 12, 7, 5, 1], 1e-12)],
                         ids=["equal-counts", "beta-0", "beta-to-0"])
def test_bkd_is_kd_with_equal_counts_or_beta_0(counts: list[int], beta: float) -> None:
    s, t = _logits(5, 7, seed=40), _logits(5, 7, seed=41)
    weights = class_balanced_weights(counts, beta)
    torch.testing.assert_close(weights, torch.ones(7))
    torch.testing.assert_close(bkd_loss(s, t, weights, 2.0), kd_loss(s, t, 2.0))
    torch.testing.assert_close(bkd_loss(s, t, None, 2.0), kd_loss(s, t, 2.0))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_bkd_matches_the_weighted_kl_written_out(temperature: float) -> None:
    counts = [500, 120, 40, 12, 7, 5, 1]
    s, t = _logits(6, 7, seed=42), _logits(6, 7, seed=43)
    weights = _effective_number_weights(counts, 0.9999)
    expected = _bkd_reference(s, t, weights, temperature)
    torch.testing.assert_close(bkd_loss(s, t, torch.tensor(weights, dtype=F64), temperature), expected)
    assert abs(float(expected - kd_loss(s, t, temperature))) > 1e-3 * float(expected)  # the weights matter
    # not the public code's form (teacher probabilities scaled by w and renormalised, then plain KL)
    p_t = F.softmax(t / temperature, 1) * torch.tensor(weights, dtype=F64)
    renormalised = F.kl_div(F.log_softmax(s / temperature, 1), p_t / p_t.sum(1, keepdim=True), reduction="batchmean")
    assert abs(float(expected - temperature**2 * renormalised)) > 1e-3 * float(expected)


def test_gradcheck_bkd() -> None:
    s = _logits(3, 5, seed=44).requires_grad_()
    t = _logits(3, 5, seed=45).requires_grad_()
    weights = class_balanced_weights([50, 20, 10, 5, 1], 0.99).double()
    assert torch.autograd.gradcheck(lambda a, b: bkd_loss(a, b, weights, 2.0), (s, t))


@pytest.mark.parametrize(("counts", "beta", "message"), [
    ([5, 0, 3], 0.9999, r"^class_balanced_weights: class 1 has no training images$"),
    ([5, 3], 1.0, r"^class_balanced_weights: beta=1; must be in \[0, 1\)$"),
    ([5, 3], -0.1, r"^class_balanced_weights: beta=-0.1; must be in \[0, 1\)$"),
])
def test_class_balanced_weights_refuse_an_empty_class_and_a_beta_outside_0_1(counts, beta, message) -> None:
    with pytest.raises(ValueError, match=message):
        class_balanced_weights(counts, beta)


# --- logit-adjusted CE ---------------------------------------------------------------------------

def test_logit_adjusted_ce() -> None:
    logits = _logits(6, 5, seed=28)
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    log_prior = class_log_prior([50, 20, 10, 5, 1]).double()
    torch.testing.assert_close(class_log_prior([3, 1]), torch.tensor([math.log(0.75), math.log(0.25)]))
    plain = F.cross_entropy(logits, target)
    torch.testing.assert_close(logit_adjusted_ce(logits, target, log_prior, 0.0), plain)
    torch.testing.assert_close(logit_adjusted_ce(logits, target, None, 0.0), plain)
    torch.testing.assert_close(logit_adjusted_ce(logits, target, log_prior, 1.5),
                               F.cross_entropy(logits + 1.5 * log_prior, target))
    torch.testing.assert_close(logit_adjusted_ce(logits, target, log_prior + 3.0, 1.5),
                               logit_adjusted_ce(logits, target, log_prior, 1.5))  # a shared shift cancels
    with pytest.raises(ValueError, match="log_prior"):
        logit_adjusted_ce(logits, target, None, 1.0)


def test_ltkd_defaults_are_the_papers_rebalance_and_reweight() -> None:
    s, t, groups = _logits(4, 7), _logits(4, 7, seed=1), torch.tensor(GROUPINGS[3])
    torch.testing.assert_close(ltkd_loss(s, t, groups, 1.0, 8.0, 4.0),
                               ltkd_loss(s, t, groups, 1.0, 8.0, 4.0, rebalance=True, reweight=True))


def test_given_num_groups_counts_an_empty_last_group() -> None:
    """K given (as the distiller does) is used even when the last group has no class: its columns stay, and
    the reweighted within-group term averages over all K."""
    s, t, groups = _logits(4, 7), _logits(4, 7, seed=1), torch.tensor(GROUPINGS[3])
    parts = kl_decomposition(s, t, groups, 4.0, num_groups=4)
    assert parts.within.shape == parts.teacher_group_probs.shape == (4, 4)
    assert teacher_group_mean(t, groups, 4.0, num_groups=4).shape == (4,)
    within_only = ltkd_loss(s, t, groups, 0.0, 1.0, 4.0, num_groups=4)
    torch.testing.assert_close(within_only, 16.0 * parts.within.sum(dim=1).mean() / 4)


def test_hcl_refuses_unpaired_feature_lists() -> None:
    feats = [torch.ones(2, 3, 4, 4), torch.ones(2, 3, 2, 2)]
    with pytest.raises(ValueError, match="zip"):
        hcl_loss(feats, feats[:1])


def test_rebalance_factors_scale_each_group_to_1_over_k_and_leave_a_group_without_mass_unscaled():
    factors = rebalance_factors(torch.tensor([0.75, 0.25, 0.0]))
    torch.testing.assert_close(factors, torch.tensor([(1 / 3) / 0.75, (1 / 3) / 0.25, 1 / 3]))
    torch.testing.assert_close(rebalance_factors(torch.full((4,), 0.25)), torch.ones(4))
