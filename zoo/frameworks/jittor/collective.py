"""Jittor's MPI for scale-out evaluation (zoo.distributed), where Jittor is built with MPI."""

from __future__ import annotations

import jittor as jt
import numpy as np

from ...errors import UsageError


class Collective:
    def __init__(self, device: str = "cpu"):
        if not jt.in_mpi:
            raise UsageError("this Jittor has no MPI support (it builds it at first import when OpenMPI's mpicc "
                             "is installed); run zoo eval -f jittor without mpirun")
        self.rank, self.world_size = jt.rank, jt.world_size

    def sum(self, values) -> np.ndarray:
        return jt.array(np.asarray(values, np.float64)).mpi_all_reduce("add").numpy()

    def gather(self, array: np.ndarray) -> np.ndarray:
        # no all-gather in Jittor's MPI ops: each rank fills its own row, the sum joins them
        rows = np.zeros((self.world_size, *array.shape), np.float64)
        rows[self.rank] = array
        return jt.array(rows).mpi_all_reduce("add").numpy().astype(array.dtype)

    def close(self) -> None:
        pass
