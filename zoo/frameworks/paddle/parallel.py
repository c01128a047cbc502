"""Data-parallel training under ``python -m paddle.distributed.launch`` (zoo.distributed): the
gradients all-reduced and averaged between backward and the optimizer's step;
``sync_batchnorm`` makes every BatchNorm normalise with the statistics of the global batch.

Paddle's own ``nn.SyncBatchNorm`` runs on GPU only; the layer here does the same on any device,
through an all-reduce whose backward all-reduces the gradient.
"""

from __future__ import annotations

import numpy as np
import paddle
import paddle.distributed as dist

from .model import BatchNorm2D


class _AllReduceSum(paddle.autograd.PyLayer):
    @staticmethod
    def forward(ctx, x):
        total = x.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad):
        total = grad.clone()
        dist.all_reduce(total)
        return total


class SyncBatchNorm2D(BatchNorm2D):
    """BatchNorm whose train-mode statistics are those of every rank's batch together: the mean,
    then the biased variance about it; the running variance torch stores (unbiased)."""

    def forward(self, x):
        if not self.training or self._use_global_stats:
            return super().forward(x)
        count = int(np.prod(x.shape)) // x.shape[1] * dist.get_world_size()
        mean = _AllReduceSum.apply(x.sum([0, 2, 3])) / count
        centred = x - mean.reshape([1, -1, 1, 1])
        var = _AllReduceSum.apply((centred * centred).sum([0, 2, 3])) / count
        scale = paddle.rsqrt(var + self._epsilon) * self.weight
        with paddle.no_grad():
            keep = self._momentum
            self._mean.set_value(keep * self._mean + (1 - keep) * mean.detach())
            self._variance.set_value(keep * self._variance + (1 - keep) * var.detach() * (count / max(count - 1, 1)))
        return centred * scale.reshape([1, -1, 1, 1]) + self.bias.reshape([1, -1, 1, 1])


def sync_batchnorm(layer: paddle.nn.Layer) -> paddle.nn.Layer:
    """``layer`` with each BatchNorm2D replaced by a SyncBatchNorm2D holding its state."""
    for name, child in list(layer.named_children()):
        if type(child) is BatchNorm2D:
            synced = SyncBatchNorm2D(child._num_features, momentum=child._momentum, epsilon=child._epsilon)
            synced.set_state_dict(child.state_dict())
            setattr(layer, name, synced)
        else:
            sync_batchnorm(child)
    return layer


def average_gradients(parameters, world_size: int) -> None:
    """Each gradient replaced by its mean over the ranks, in place, in one all-reduce."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = paddle.concat([g.reshape([-1]) for g in grads])
    dist.all_reduce(flat)
    flat = flat / world_size
    offset = 0
    for g in grads:
        n = int(np.prod(g.shape))
        g.set_value(flat[offset:offset + n].reshape(g.shape))
        offset += n
