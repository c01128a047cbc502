"""Scale-out evaluation and training under each framework's own launcher.

``zoo eval`` run by ``torchrun``, ``python -m paddle.distributed.launch`` or ``msrun`` (Jittor:
``mpirun``, where Jittor is built with MPI) finds its rank in the launcher's environment and
evaluates a disjoint, contiguous shard of the dataset: rank r of W takes images
``[r*n//W, (r+1)*n//W)``, so no image is dropped or counted twice whatever n is (distributed
samplers pad the last shard with repeated images; that is not inherited). Counts are summed
over the ranks and the predictions gathered in dataset order with the framework's own
collectives (``collective.py`` of each backend); rank 0 alone reports.

``zoo train`` under the same launchers is data-parallel: each rank takes its contiguous share of
every global batch, the gradients are averaged over the ranks before the optimizer's step (torch
through DistributedDataParallel, the others through their all-reduce), and rank 0 alone writes
RUNDIR (``zoo.train_loop``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import UsageError
from .frameworks import FRAMEWORKS


@dataclass(frozen=True)
class Launch:
    launcher: str
    framework: str
    rank: int
    world_size: int
    # msrun also runs the command as the cluster's scheduler process: it serves the ranks and
    # evaluates nothing
    scheduler: bool = False


def detect() -> Launch | None:
    """The launcher this process runs under, if it started more than one rank."""
    env = os.environ
    for framework, fw in FRAMEWORKS.items():
        if fw.launcher is None:
            continue
        launcher, rank_var, size_var = fw.launcher.name, fw.launcher.rank_var, fw.launcher.size_var
        if launcher == "msrun" and env.get("MS_ROLE") in ("MS_WORKER", "MS_SCHED"):
            if env["MS_ROLE"] == "MS_SCHED":
                return Launch(launcher, framework, -1, int(env.get("MS_WORKER_NUM", "1")), scheduler=True)
            rank = env.get("RANK_ID", env.get("MS_NODE_ID", "0"))
            size = env.get("RANK_SIZE", env.get("MS_WORKER_NUM", "1"))
        elif rank_var in env and size_var in env:
            rank, size = env[rank_var], env[size_var]
        else:
            continue
        try:
            launch = Launch(launcher, framework, int(rank), int(size))
        except ValueError:
            continue
        return launch if launch.world_size > 1 else None
    return None


def check(framework: str, command: str = "eval") -> Launch | None:
    """The launch for ``zoo COMMAND -f FRAMEWORK``; each framework under its own launcher."""
    import shutil

    launch = detect()
    if launch is None:
        return None
    own = FRAMEWORKS[framework].launcher
    if launch.framework == framework and own.needs_program and shutil.which(own.needs_program) is None:
        raise UsageError(f"{FRAMEWORKS[framework].title} runs under {own.name} only where {own.needs_hint} is "
                         f"installed, and there is none here: run zoo {command} -f {framework} without {own.name}")
    if launch.framework != framework:
        if own is None:
            raise UsageError(f"zoo {command} -f {framework} has no launcher; run it in one process")
        raise UsageError(f"zoo {command} -f {framework} runs under {own.name}, not {launch.launcher} "
                         f"(found its rank variables); start it with {own.name}")
    return launch


def shard(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[begin, end) of rank's contiguous share of n items; shares differ by at most one."""
    return rank * n // world_size, (rank + 1) * n // world_size


