"""The distillers: loss names, gradients reach the student (and ABF) but never the frozen teacher, warm-up,
LTKD's EMA statistics, student-only state, `build_distiller`, and ReviewKD on every CIFAR pair."""

from __future__ import annotations

import itertools
import re
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn

from ltkd.distillers import (
    BKD,
    CE,
    DKD,
    KD,
    LTKD,
    METHODS,
    CrossEntropyTerm,
    Distiller,
    LossConfig,
    Method,
    ReviewKD,
    build_distiller,
    warmup_factor,
)
from ltkd.distillers.reviewkd import ABF, MAX_MID_CHANNELS
from ltkd.losses import class_log_prior, hcl_loss, logit_adjusted_ce, teacher_group_mean
from ltkd.models import available_models, create_model

NUM_CLASSES = 6
SIZE = 8
GROUPS = torch.tensor([0, 0, 1, 1, 2, 2])
COUNTS = [40, 30, 12, 8, 3, 1]
CIFAR_PAIRS = [("resnet32x4", "resnet8x4"), ("wrn_40_2", "wrn_16_2"), ("vgg13", "vgg8"),
               ("resnet50", "mobilenetv2"), ("wrn_40_2", "shufflev1"), ("resnet32x4", "shufflev2")]


class TinyNet(nn.Module):
    """A stand-in following the models' contract: (logits, {"feats", "preact_feats", "pooled_feat"})."""

    def __init__(self, widths: tuple[int, ...] = (4, 8), stem: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1), nn.BatchNorm2d(stem))
        chans = (stem, *widths)
        self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b))
                                    for a, b in itertools.pairwise(chans))
        self.fc = nn.Linear(chans[-1], NUM_CLASSES)

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        x = F.relu(self.stem(x))
        feats, preacts = [x], [x]
        for stage in self.stages:
            pre = stage(x)
            x = F.relu(pre)
            feats.append(x)
            preacts.append(pre)
        pooled = x.mean(dim=(2, 3))
        return self.fc(pooled), {"feats": feats, "preact_feats": preacts, "pooled_feat": pooled}


def _cfg(name: str, **overrides: Any) -> SimpleNamespace:
    fields = dict(name=name, temperature=4.0, ce_weight=1.0, alpha=1.0, beta=8.0, warmup_epochs=0,
                  rebalance="batch", ema_momentum=0.9, reweight=True, logit_adjust_tau=0.0, preact=False,
                  global_stats=True, beta_cb=0.9999, defer_epoch=0)
    return SimpleNamespace(**(fields | overrides))


def _build(name: str, student: nn.Module | None = None, teacher: nn.Module | None = None,
           **overrides: Any) -> Distiller:
    torch.manual_seed(0)
    student = TinyNet() if student is None else student
    teacher = TinyNet(widths=(6, 8, 12)) if teacher is None else teacher
    return build_distiller(_cfg(name, **overrides), student, None if name == "ce" else teacher,
                           class_to_group=GROUPS, train_counts=COUNTS, input_size=SIZE)


def _batch(seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, SIZE, SIZE, generator=gen), torch.tensor([0, 2, 4, 5])


@pytest.mark.parametrize("name", list(METHODS))
def test_forward_losses_and_gradients(name: str) -> None:
    distiller = _build(name).train()
    images, target = _batch()
    logits, losses = distiller(images, target, 1)
    assert logits.shape == (4, NUM_CLASSES)
    assert set(losses) == ({"loss_ce", "loss_kd"} if METHODS[name].uses_teacher else {"loss_ce"})
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in distiller.student.parameters())
    if name == "reviewkd":
        assert all(p.grad is not None for p in distiller.abfs.parameters())
    if distiller.teacher is not None:
        assert all(p.grad is None and not p.requires_grad for p in distiller.teacher.parameters())


def test_build_dispatch_and_unknown_name() -> None:
    kinds = {"ce": CE, "kd": KD, "dkd": DKD, "reviewkd": ReviewKD, "bkd": BKD, "ltkd": LTKD}
    for name, cls in kinds.items():
        assert type(_build(name)) is cls
    for name, entry in METHODS.items():  # every method of the table: its own module's distiller
        assert type(_build(name)).__module__ == entry.build.__module__, name
    with pytest.raises(ValueError, match=r"unknown method 'fitnet'; available: ce, kd"):
        _build("fitnet")
    with pytest.raises(ValueError, match=r"^rebalance: 'global'; allowed: batch, ema, none$"):
        _build("ltkd", rebalance="global")
    dict_cfg = OmegaConf.create(vars(_cfg("dkd", alpha=2.0, beta=0.5)))
    dkd = build_distiller(dict_cfg, TinyNet(), TinyNet(), class_to_group=GROUPS, train_counts=COUNTS,
                          input_size=SIZE)
    assert isinstance(dkd, DKD) and (dkd.alpha, dkd.beta) == (2.0, 0.5)


def test_the_builder_gives_a_teacher_only_to_methods_that_use_one(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"^build_distiller: loss 'kd' needs a teacher$"):
        build_distiller(_cfg("kd"), TinyNet(), None, class_to_group=GROUPS, train_counts=COUNTS, input_size=SIZE)
    given = []

    def build(cfg, student, teacher, ce, inputs) -> Distiller:
        given.append((teacher, inputs.train_counts, inputs.num_classes, inputs.input_size))
        return CE(student, ce)

    monkeypatch.setitem(METHODS, "probe", Method("probe", LossConfig, build, uses_teacher=False))
    build_distiller(_cfg("probe"), TinyNet(), TinyNet(), class_to_group=GROUPS, train_counts=COUNTS,
                    input_size=SIZE)
    assert given == [(None, tuple(COUNTS), NUM_CLASSES, SIZE)]  # the run's facts reach the method


def test_teacher_frozen_and_excluded() -> None:
    distiller = _build("reviewkd")
    distiller.train()
    assert distiller.training and distiller.student.training and not distiller.teacher.training
    assert all(not m.training for m in distiller.teacher.modules())
    trainable = {id(p) for p in distiller.trainable_parameters()}
    assert trainable.isdisjoint(id(p) for p in distiller.teacher.parameters())
    assert trainable == {id(p) for p in [*distiller.student.parameters(), *distiller.abfs.parameters()]}
    teacher_state = {k: v.clone() for k, v in distiller.teacher.state_dict().items()}
    distiller(*_batch(), 1)
    for k, v in distiller.teacher.state_dict().items():
        assert torch.equal(v, teacher_state[k]), k  # BN running statistics untouched


def test_warmup() -> None:
    assert warmup_factor(1, 20) == pytest.approx(0.05)
    assert warmup_factor(20, 20) == warmup_factor(35, 20) == warmup_factor(1, 0) == 1.0
    distiller = _build("dkd", warmup_epochs=4).train()
    images, target = _batch()
    early = distiller(images, target, 1)[1]
    late = distiller(images, target, 10)[1]
    torch.testing.assert_close(early["loss_kd"], late["loss_kd"] / 4)
    torch.testing.assert_close(early["loss_ce"], late["loss_ce"])


def test_logit_adjusted_ce_term() -> None:
    distiller = _build("kd", ce_weight=0.1, logit_adjust_tau=1.0)
    images, target = _batch()
    logits, losses = distiller(images, target, 1)
    expected = 0.1 * logit_adjusted_ce(logits, target, class_log_prior(COUNTS), 1.0)
    torch.testing.assert_close(losses["loss_ce"], expected)
    with pytest.raises(ValueError, match="log_prior"):
        CrossEntropyTerm(tau=1.0)


def test_ltkd_ema_statistics() -> None:
    distiller = _build("ltkd", rebalance="ema", ema_momentum=0.75).train()
    assert distiller.ema_updates == 0 and torch.all(distiller.group_mean_ema == 0)
    first, second = _batch(1), _batch(2)
    means = []
    for images, target in (first, second):
        with torch.no_grad():
            means.append(teacher_group_mean(distiller.teacher(images)[0], GROUPS, 4.0))
        distiller(images, target, 1)
    assert distiller.ema_updates == 2
    torch.testing.assert_close(distiller.group_mean_ema, 0.75 * means[0] + 0.25 * means[1])
    state = distiller.student_state_dict()
    assert {"group_mean_ema", "ema_updates"} <= set(state)
    distiller.eval()
    distiller(*first, 1)
    assert distiller.ema_updates == 2  # not updated outside training
    restored = _build("ltkd", rebalance="ema", ema_momentum=0.75)
    restored.load_student_state_dict(state)
    torch.testing.assert_close(restored.group_mean_ema, distiller.group_mean_ema)


def test_ltkd_stats_reducer_is_applied() -> None:
    seen: list[Tensor] = []

    def reducer(stats: Tensor) -> Tensor:
        seen.append(stats)
        return torch.full_like(stats, 1.0 / stats.numel())

    images, target = _batch()
    reduced = _build("ltkd")
    reduced.stats_reducer = reducer
    _, losses = reduced(images, target, 1)
    assert len(seen) == 1 and seen[0].shape == (3,)
    unbalanced = _build("ltkd", rebalance="none")
    torch.testing.assert_close(losses["loss_kd"], unbalanced(images, target, 1)[1]["loss_kd"])


def test_student_state_excludes_teacher_and_loads_back() -> None:
    distiller = _build("reviewkd")
    state = distiller.student_state_dict()
    assert state and not any(k.startswith("teacher.") for k in state)
    assert any(k.startswith("abfs.") for k in state) and any(k.startswith("student.") for k in state)
    fresh = _build("reviewkd", student=TinyNet())
    with torch.no_grad():
        for p in fresh.trainable_parameters():
            p.add_(1.0)
    fresh.load_student_state_dict(state)
    for k, v in fresh.student_state_dict().items():
        assert torch.equal(v, state[k]), k
    with pytest.raises(RuntimeError, match="missing keys"):
        fresh.load_student_state_dict({k: v for k, v in state.items() if not k.startswith("abfs.")})


def test_reviewkd_pairs_levels_from_the_end_and_probe_keeps_bn_stats() -> None:
    student, teacher = TinyNet(widths=(4, 8)), TinyNet(widths=(6, 8, 12))
    before = student.stem[1].running_mean.clone()
    distiller = _build("reviewkd", student=student, teacher=teacher, preact=True)
    assert torch.equal(student.stem[1].running_mean, before)
    # student levels: 2 stages + pooled; teacher: 3 stages + pooled -> the last 3 of each
    assert [abf.conv1[0].in_channels for abf in distiller.abfs] == [4, 8, 8]
    assert [abf.conv2[0].out_channels for abf in distiller.abfs] == [8, 12, 12]
    assert [abf.att_conv is not None for abf in distiller.abfs] == [True, True, False]


@pytest.mark.slow
@pytest.mark.parametrize(("teacher_name", "student_name"), CIFAR_PAIRS)
def test_reviewkd_cifar_pairs(teacher_name: str, student_name: str) -> None:
    assert {teacher_name, student_name} <= set(available_models())
    torch.manual_seed(0)
    teacher, student = create_model(teacher_name, 100), create_model(student_name, 100)
    distiller = ReviewKD(student, teacher, alpha=1.0, input_size=16)
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        _, features_s = student(images)
        _, features_t = teacher(images)
        teacher_levels = distiller.teacher_levels(features_t)
        fused = distiller.fuse(distiller.student_levels(features_s), teacher_levels)
        loss = hcl_loss(fused, teacher_levels)
    assert len(fused) == min(len(features_s["feats"]), len(features_t["feats"]))
    assert [f.shape for f in fused] == [t.shape for t in teacher_levels]
    assert teacher_levels[-1].shape == (2, features_t["pooled_feat"].shape[1], 1, 1)
    assert torch.isfinite(loss)


def _abf_reference(abf: ABF, x: Tensor, residual: Tensor | None, out_shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """ReviewKD's ABF written out from the paper with the module's own weights (eval mode): a 1x1 conv + BN,
    then (when fused) a two-channel sigmoid attention over [x, nearest-resized residual] mixing the two,
    a nearest resize to the teacher's map, and a 3x3 conv + BN."""
    def conv_bn(seq: nn.Sequential, t: Tensor, padding: int) -> Tensor:
        conv, bn = seq[0], seq[1]
        t = F.conv2d(t, conv.weight, None, padding=padding)
        return F.batch_norm(t, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)

    x = conv_bn(abf.conv1, x, padding=0)
    if residual is not None:
        y = F.interpolate(residual, size=tuple(x.shape[2:]), mode="nearest")
        att = torch.sigmoid(F.conv2d(torch.cat([x, y], dim=1), abf.att_conv[0].weight, abf.att_conv[0].bias))
        x = x * att[:, 0:1] + y * att[:, 1:2]
    x = F.interpolate(x, size=out_shape, mode="nearest")
    return conv_bn(abf.conv2, x, padding=1), x


@pytest.mark.parametrize("fuse", [True, False])
def test_abf_matches_the_papers_fusion(fuse: bool) -> None:
    torch.manual_seed(0)
    abf = ABF(in_channels=5, mid_channels=6, out_channels=7, fuse=fuse).eval()
    for bn in (abf.conv1[1], abf.conv2[1]):  # BN that is not the identity
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        nn.init.uniform_(bn.weight, 0.5, 2)
        nn.init.uniform_(bn.bias, -1, 1)
    x, residual = torch.randn(2, 5, 4, 4), (torch.randn(2, 6, 2, 2) if fuse else None)
    with torch.no_grad():
        out, passed_on = abf(x, residual, (8, 8))
        ref_out, ref_passed_on = _abf_reference(abf, x, residual, (8, 8))
    assert abf.conv1[0].bias is None and abf.conv2[0].bias is None  # BN follows: a conv bias is redundant
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(passed_on, ref_passed_on)


def test_abf_convs_start_from_reviewkds_kaiming_uniform_a1() -> None:
    """kaiming_uniform_(a=1): weights uniform in ±sqrt(3 / fan_in) (a=0, torch's ReLU default, is ±sqrt(6/fan_in))."""
    torch.manual_seed(0)
    abf = ABF(in_channels=64, mid_channels=64, out_channels=64, fuse=True)
    for conv in (abf.conv1[0], abf.conv2[0]):
        fan_in = conv.weight[0].numel()
        bound = (3 / fan_in) ** 0.5
        assert 0.98 * bound < conv.weight.abs().max().item() <= bound


def test_reviewkd_mid_channels_follow_the_students_pooled_feature() -> None:
    torch.manual_seed(0)
    student, teacher = create_model("resnet8x4", 100), create_model("resnet32x4", 100)
    distiller = ReviewKD(student, teacher, alpha=1.0, input_size=8)
    pooled = student(torch.zeros(1, 3, 8, 8))[1]["pooled_feat"].shape[1]
    assert {abf.conv1[0].out_channels for abf in distiller.abfs} == {min(MAX_MID_CHANNELS, pooled)}
    assert len({abf.conv1[0].in_channels for abf in distiller.abfs}) > 1  # levels of different widths


def test_reviewkd_fuse_refuses_levels_that_do_not_pair_up() -> None:
    distiller = _build("reviewkd")
    images, _ = _batch()
    with torch.no_grad():
        _, features_s = distiller.student(images)
        _, features_t = distiller.teacher(images)
    student_levels, teacher_levels = distiller.student_levels(features_s), distiller.teacher_levels(features_t)
    with pytest.raises(ValueError, match=r"zip\(\) argument \d+ is (shorter|longer) than argument"):
        distiller.fuse(student_levels[1:], teacher_levels)


def test_a_distiller_without_its_own_ce_term_uses_plain_cross_entropy() -> None:
    torch.manual_seed(0)
    student = TinyNet()
    images, target = _batch()
    logits, losses = Distiller(student)(images, target, epoch=1)
    torch.testing.assert_close(losses["loss_ce"], F.cross_entropy(logits, target))
    assert set(losses) == {"loss_ce"}
    assert Distiller(student).trainable_parameters() == list(student.parameters())


def test_a_distiller_with_a_teacher_but_no_distill_loss_says_which() -> None:
    class Incomplete(Distiller):
        pass

    images, target = _batch()
    with pytest.raises(NotImplementedError, match="Incomplete has a teacher but no distill_loss"):
        Incomplete(TinyNet(), TinyNet())(images, target, epoch=1)


def test_a_student_state_that_does_not_fit_names_the_distiller_and_the_keys() -> None:
    distiller = _build("ltkd")
    state = distiller.student_state_dict()
    missing = next(iter(state))
    with pytest.raises(RuntimeError, match=rf"student state of LTKD: missing keys \['{re.escape(missing)}'\]"):
        distiller.load_student_state_dict({k: v for k, v in state.items() if k != missing})


@pytest.mark.parametrize("rebalance", ["batch", "ema", "none"])
def test_ltkd_step_statistics_are_the_batch_mass_and_the_applied_factors(rebalance: str):
    distiller = _build("ltkd", rebalance=rebalance, ema_momentum=0.5).train()
    means = []
    for seed in (1, 2):
        images, target = _batch(seed)
        with torch.no_grad():
            means.append(teacher_group_mean(distiller.teacher(images)[0], GROUPS, 4.0))
        distiller(images, target, 1)
    stats = distiller.step_statistics()
    mass = torch.tensor([stats[f"ltkd/teacher_mass_{g}"] for g in ("head", "medium", "tail")])
    factors = torch.tensor([stats[f"ltkd/rebalance_factor_{g}"] for g in ("head", "medium", "tail")])
    torch.testing.assert_close(mass, 100 * means[1])
    applied = {"batch": means[1], "ema": 0.5 * means[0] + 0.5 * means[1], "none": None}[rebalance]
    expected = torch.ones(3) if applied is None else (1 / 3) / applied
    torch.testing.assert_close(factors, expected)
    recorded = {k: float(v) for k, v in stats.items()}
    distiller.eval()
    distiller(*_batch(3), 1)  # evaluation steps are not training statistics
    assert {k: float(v) for k, v in distiller.step_statistics().items()} == recorded


def test_ltkd_step_statistics_name_groups_g1_g2_when_there_are_not_three() -> None:
    two_groups = torch.tensor([0, 0, 0, 1, 1, 1])
    distiller = build_distiller(_cfg("ltkd"), TinyNet(), TinyNet(widths=(6, 8, 12)), class_to_group=two_groups,
                                train_counts=COUNTS, input_size=SIZE).train()
    distiller(*_batch(1), 1)
    stats = distiller.step_statistics()
    assert sorted(stats) == ["ltkd/rebalance_factor_g1", "ltkd/rebalance_factor_g2", "ltkd/teacher_mass_g1",
                             "ltkd/teacher_mass_g2"]
    assert abs(float(stats["ltkd/teacher_mass_g1"] + stats["ltkd/teacher_mass_g2"]) - 100.0) < 1e-3
