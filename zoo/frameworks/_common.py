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
