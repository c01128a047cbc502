"""Framework-free helpers shared by the backends' worker commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..converters.read import read_safetensors
from ..errors import CheckpointFormatError
from ..spec import Res2NetSpec, get_spec, resolve_name


def load_canonical_file(path: str | Path) -> tuple[str, Res2NetSpec, dict[str, np.ndarray]]:
    """A canonical safetensors file written by ``zoo convert`` (its spec is in the metadata)."""
    raw = read_safetensors(Path(path))
    if "zoo.spec" in raw.metadata:
        spec = Res2NetSpec.from_json(raw.metadata["zoo.spec"])
        return raw.metadata.get("zoo.model", "custom spec"), spec, raw.tensors
    if raw.metadata.get("zoo.model"):
        name = resolve_name(raw.metadata["zoo.model"])
        return name, get_spec(name), raw.tensors
    raise CheckpointFormatError(f"{path}: no zoo.spec metadata; write it with `zoo convert`")


def job_spec(job: dict) -> tuple[str, Res2NetSpec]:
    """The model of a worker job: a registered name or a spec given as JSON."""
    if job.get("spec"):
        return "custom spec", Res2NetSpec.from_json(job["spec"])
    name = resolve_name(job["model"])
    return name, get_spec(name)


def runner_class(framework: str):
    """The backend's Runner (imports the backend package first, which configures e.g. Jittor)."""
    import importlib

    from . import resolve_framework

    return importlib.import_module(f"{resolve_framework(framework).backend_module}.runner").Runner


def run_jobs(framework: str, jobs: list[dict]) -> None:
    """Worker command ``logits``: each job runs one model on one ``.npy`` batch and saves the
    logits (``.npy``), or with ``features`` every stage output too (``.npz``)."""
    runner_cls = runner_class(framework)
    for job in jobs:
        runner = runner_cls(job.get("device", "cpu"), job.get("mode"))
        _, spec = job_spec(job)
        batch = np.load(job["input"])
        logits = runner(runner.load(spec, job.get("weights")), batch)
        if job.get("features"):
            feats = runner(runner.load(spec, job.get("weights"), features=True), batch)
            np.savez(job["output"], logits=logits, **{f"feature{i}": f for i, f in enumerate(feats)})
        else:
            np.save(job["output"], logits)
