"""ReviewKD (Chen et al., CVPR 2021): attention-based fusion (ABF) of student features, matched to the
teacher's features by the hierarchical context loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltkd.checks import check_non_negative
from ltkd.distillers.base import CrossEntropyTerm, Distiller, DistillerInputs, Features, LossConfig, Method
from ltkd.losses import hcl_loss

MAX_MID_CHANNELS = 512


@dataclass(frozen=True)
class ReviewKDConfig(LossConfig):
    alpha: float  # weight of the HCL term
    preact: bool  # the student's pre-activation features (the ImageNet setting)

    def check(self, num_classes: int) -> None:
        super().check(num_classes)
        check_non_negative("loss", self, "alpha")


class ABF(nn.Module):
    """Attention-based fusion: a 1x1 projection of one student level, fused (when `fuse`) with the
    residual from the deeper level by a two-way spatial attention, resized to the teacher's map, 3x3 conv."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, mid_channels, kernel_size=1, bias=False),
                                   nn.BatchNorm2d(mid_channels))
        self.conv2 = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels))
        self.att_conv = (nn.Sequential(nn.Conv2d(2 * mid_channels, 2, kernel_size=1), nn.Sigmoid())
                         if fuse else None)
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x: Tensor, residual: Tensor | None,
                out_shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """(output at `out_shape`, the fused map passed to the next shallower level)."""
        x = self.conv1(x)
        if self.att_conv is not None:
            y = F.interpolate(residual, size=x.shape[-2:], mode="nearest")
            z = self.att_conv(torch.cat([x, y], dim=1))
            x = x * z[:, :1] + y * z[:, 1:]
        if tuple(x.shape[-2:]) != out_shape:
            x = F.interpolate(x, size=out_shape, mode="nearest")
        return self.conv2(x), x


def _levels(features: Features, key: str) -> list[Tensor]:
    """The maps of `key` after the stem, plus the pooled feature as a 1x1 map."""
    return [*features[key][1:], features["pooled_feat"][:, :, None, None]]


@torch.no_grad()
def _probe(model: nn.Module, input_size: int) -> Features:
    """The features of one forward of `model` in eval mode (BN statistics untouched) on a zero image."""
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    _, features = model(torch.zeros(1, 3, input_size, input_size, device=param.device, dtype=param.dtype))
    model.train(was_training)
    return features


class ReviewKD(Distiller):
    """loss_kd = warm-up · α · HCL(ABF-fused student levels, teacher levels).

    Student levels: `feats[1:]` (or `preact_feats[1:]` with `preact`, the ImageNet setting) plus the
    pooled feature; teacher levels: `preact_feats[1:]` plus the pooled feature. When the two models have
    different numbers of levels they are paired from the end: the last min(len) levels of each are used.
    The ABF modules take the student's channels, output the teacher's channels and sizes (discovered by one
    probe forward of each model at `input_size`); mid channels = min(512, the student's pooled channels).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, ce: CrossEntropyTerm | None = None, *,
                 alpha: float, input_size: int, preact: bool = False, warmup_epochs: int = 0) -> None:
        super().__init__(student, teacher, ce, warmup_epochs=warmup_epochs)
        self.alpha = alpha
        self.student_key = "preact_feats" if preact else "feats"
        student_levels = _levels(_probe(student, input_size), self.student_key)
        teacher_levels = _levels(_probe(teacher, input_size), "preact_feats")
        num_levels = min(len(student_levels), len(teacher_levels))
        in_channels = [f.shape[1] for f in student_levels[-num_levels:]]
        out_channels = [f.shape[1] for f in teacher_levels[-num_levels:]]
        mid_channels = min(MAX_MID_CHANNELS, in_channels[-1])
        pairs = list(zip(in_channels, out_channels, strict=True))
        self.abfs = nn.ModuleList(ABF(c_in, mid_channels, c_out, fuse=i < len(pairs) - 1)
                                  for i, (c_in, c_out) in enumerate(pairs))
        self.abfs.to(next(student.parameters()).device)

    def student_levels(self, features_s: Features) -> list[Tensor]:
        """The student maps the ABFs read, shallow to deep (the last `len(self.abfs)`)."""
        return _levels(features_s, self.student_key)[-len(self.abfs):]

    def teacher_levels(self, features_t: Features) -> list[Tensor]:
        """The teacher maps the fused features are matched to, shallow to deep."""
        return _levels(features_t, "preact_feats")[-len(self.abfs):]

    def fuse(self, student_levels: list[Tensor], teacher_levels: list[Tensor]) -> list[Tensor]:
        """The ABF outputs, shallow to deep, each with its teacher level's channels and size; the deepest
        level is processed first and its fused map passed on to the next shallower one."""
        fused: list[Tensor] = []
        residual = None
        for x, abf, t in zip(student_levels[::-1], self.abfs[::-1], teacher_levels[::-1], strict=True):
            out, residual = abf(x, residual, tuple(t.shape[-2:]))
            fused.append(out)
        return fused[::-1]

    def distill_loss(self, logits_s: Tensor, features_s: Features, logits_t: Tensor, features_t: Features,
                     target: Tensor, epoch: int) -> Tensor:
        teacher_levels = self.teacher_levels(features_t)
        fused = self.fuse(self.student_levels(features_s), teacher_levels)
        return self.alpha * hcl_loss(fused, teacher_levels)


def build(cfg: ReviewKDConfig, student: nn.Module, teacher: nn.Module, ce: CrossEntropyTerm,
          inputs: DistillerInputs) -> ReviewKD:
    return ReviewKD(student, teacher, ce, alpha=cfg.alpha, input_size=inputs.input_size, preact=cfg.preact,
                    warmup_epochs=cfg.warmup_epochs)


METHOD = Method("reviewkd", ReviewKDConfig, build, needs_feature_pyramid=True)
