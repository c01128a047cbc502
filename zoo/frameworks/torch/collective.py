"""torch.distributed for scale-out evaluation (zoo.distributed): gloo on CPU, NCCL on GPU."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


class Collective:
    def __init__(self, device: str = "cpu"):
        self.device = torch.device("cuda", torch.cuda.current_device()) if device == "gpu" else torch.device("cpu")
        dist.init_process_group("nccl" if device == "gpu" else "gloo")  # env:// from torchrun
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def sum(self, values) -> np.ndarray:
        t = torch.tensor(np.asarray(values, np.float64), device=self.device)
        dist.all_reduce(t)
        return t.cpu().numpy()

    def gather(self, array: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t)
        return np.stack([o.cpu().numpy() for o in out])

    def close(self) -> None:
        dist.destroy_process_group()
