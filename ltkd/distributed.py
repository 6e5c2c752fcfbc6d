"""Multi-process training under torchrun: process group, rank helpers, cross-rank reductions.

`torchrun --nproc_per_node=N -m ltkd.train ...` sets RANK / WORLD_SIZE / LOCAL_RANK; `init_from_env`
joins the group (NCCL on GPU, gloo on CPU). Rank 0 alone writes logs, checkpoints, metrics.json and
W&B; every rank reads the same checkpoints, so resuming works as in one process.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ltkd.runtime import Runtime


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str) -> DistInfo:
    """Join the torchrun process group if the environment names one; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def place_on_local_device(runtime: Runtime, info: DistInfo) -> Runtime:
    """On GPU, each process uses the GPU of its local rank."""
    if runtime.device.type != "cuda":
        return runtime
    torch.cuda.set_device(info.local_rank)
    return dataclasses.replace(runtime, device=torch.device("cuda", info.local_rank))


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(tensor: Tensor, info: DistInfo) -> Tensor:
    """Sum over ranks (no autograd), in place; returns the tensor."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_min(tensor: Tensor, info: DistInfo) -> Tensor:
    """Minimum over ranks, in place; returns the tensor."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def mean_over_ranks(tensor: Tensor) -> Tensor:
    """Autograd-free mean over ranks of a statistic (e.g. LTKD's batch group mean); identity alone."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def broadcast_object(value: object, info: DistInfo) -> object:
    """Rank 0's value on every rank."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the global batch, for gloo (CPU) process groups,
    where torch's SyncBatchNorm is unavailable. Gradients flow through the cross-rank reduction."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        count = torch.full((1,), x.numel() / x.size(1), dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), count]))
        channels = x.size(1)
        n = stats[-1]
        mean = stats[:channels] / n
        var = stats[channels:2 * channels] / n - mean * mean
        with torch.no_grad():
            momentum = self.momentum if self.momentum is not None else 0.1
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(var.detach() * n / (n - 1), momentum)
            self.num_batches_tracked.add_(1)
        shape = (1, channels, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def convert_sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """torch's SyncBatchNorm on GPU; GlobalBatchNorm (same maths, gloo-friendly) on CPU."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, GlobalBatchNorm):
            replacement = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                          child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement)
        else:
            convert_sync_batchnorm(child, device_type)
    return module
