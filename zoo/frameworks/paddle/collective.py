"""paddle.distributed for scale-out evaluation (zoo.distributed): gloo on CPU, NCCL on GPU."""

from __future__ import annotations

import numpy as np
import paddle
import paddle.distributed as dist


class Collective:
    def __init__(self, device: str = "cpu"):
        dist.init_parallel_env()  # from paddle.distributed.launch's environment
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def sum(self, values) -> np.ndarray:
        t = paddle.to_tensor(np.asarray(values, np.float64))
        dist.all_reduce(t)
        return t.numpy()

    def gather(self, array: np.ndarray) -> np.ndarray:
        out = []
        dist.all_gather(out, paddle.to_tensor(np.ascontiguousarray(array)))
        return np.stack([o.numpy() for o in out])

    def close(self) -> None:
        pass
