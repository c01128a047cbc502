"""Data-parallel training under msrun (zoo.distributed): MindSpore's ``DistributedGradReducer``
averages the gradients over the ranks; ``sync_batchnorm`` makes every BatchNorm normalise with the
statistics of the global batch.

MindSpore's own ``nn.SyncBatchNorm`` runs on Ascend only; the cell here does the same on any
device through ``ops.AllReduce``, whose gradient is the all-reduced gradient.
"""

from __future__ import annotations

from mindspore import nn, ops
from mindspore.communication import get_group_size


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose train-mode statistics are those of every rank's batch together: the mean,
    then the biased variance about it; the running variance torch stores (unbiased). MindSpore
    keeps ``momentum`` as the new value's weight (``1 - momentum`` given)."""

    def construct(self, x):
        if not self.training:
            return super().construct(x)
        count = x.size // x.shape[1] * get_group_size()
        mean = self._all_reduce(x.sum((0, 2, 3))) / count
        centred = x - mean.reshape(1, -1, 1, 1)
        var = self._all_reduce((centred * centred).sum((0, 2, 3))) / count
        scale = ops.rsqrt(var + self.eps) * self.gamma
        new = self.momentum
        ops.assign(self.moving_mean, (1 - new) * self.moving_mean + new * ops.stop_gradient(mean))
        unbiased = ops.stop_gradient(var) * (count / max(count - 1, 1))
        ops.assign(self.moving_variance, (1 - new) * self.moving_variance + new * unbiased)
        return centred * scale.reshape(1, -1, 1, 1) + self.beta.reshape(1, -1, 1, 1)


def sync_batchnorm(model: nn.Cell) -> nn.Cell:
    """``model`` with each BatchNorm2d synced, in place: the cell's class changes and its
    parameters stay, so their names (MindSpore's prefixes, given at construction) stay too."""
    for _, cell in model.cells_and_names():
        if type(cell) is nn.BatchNorm2d:
            cell.__class__ = SyncBatchNorm2d
            cell._all_reduce = ops.AllReduce()
    return model


def gradient_reducer(parameters, world_size: int) -> nn.Cell:
    """The gradients' mean over the ranks, as MindSpore's data-parallel training takes it."""
    return nn.DistributedGradReducer(parameters, mean=True, degree=world_size)
