"""Data-parallel training under torchrun (zoo.distributed): DistributedDataParallel averages the
gradients over the ranks; ``sync_batchnorm`` makes every BatchNorm normalise with the statistics
of the global batch.

torch's own ``nn.SyncBatchNorm`` runs on CUDA only; the layer here does the same on any device
through an all-reduce whose backward all-reduces the gradient, so the global batch's statistics
are differentiated as one process would differentiate them.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks; the gradient of every rank's input is the sum of the ranks' gradients
    (torch.distributed.nn.functional.all_reduce does this too, but is deprecated)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        total = x.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose train-mode statistics are those of every rank's batch together: the mean,
    then the biased variance about it (two passes, as one process computes them); torch's running
    update with the unbiased variance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        count = x.numel() // x.shape[1] * dist.get_world_size()
        mean = all_reduce(x.sum((0, 2, 3))) / count
        centred = x - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum((0, 2, 3))) / count
        scale = torch.rsqrt(var + self.eps) * self.weight
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * (count / max(count - 1, 1)), self.momentum)
            self.num_batches_tracked += 1
        return centred * scale[None, :, None, None] + self.bias[None, :, None, None]


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with each BatchNorm2d replaced by a SyncBatchNorm2d holding its state."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = SyncBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
            synced.load_state_dict(child.state_dict())
            setattr(module, name, synced.to(child.weight.device))
        else:
            sync_batchnorm(child)
    return module


class _FeaturesAndLogits(nn.Module):
    """The training forward as one module call, which DistributedDataParallel needs to see."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        features = self.model.forward_features(x)
        return features, self.model.forward_head(features[-1])


def training_forward(model: nn.Module, distributed: bool, device: torch.device) -> nn.Module:
    """``x -> (features, logits)``; under torchrun wrapped in DistributedDataParallel."""
    forward = _FeaturesAndLogits(model)
    if not distributed:
        return forward
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)
