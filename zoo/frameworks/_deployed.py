"""A model run through its framework's deployment runtime (the ``onnxruntime``, ``inference`` and
``mindir`` modes of verify/eval): exported once per input size (height, width) with a dynamic
batch dimension into a private directory, loaded by the runtime, then called like the eager
model. Framework-free; the backends' ``deploy`` modules supply the export and the runtime."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

Exporter = Callable[[Path, np.ndarray], None]      # (directory, example batch) -> artefact written
Loader = Callable[[Path], Callable[[np.ndarray], list[np.ndarray]]]


def example_batch(batch: np.ndarray) -> np.ndarray:
    """Two samples to trace with: a batch of one lets tracers fix the batch dimension at 1."""
    return np.ascontiguousarray(np.concatenate([batch[:1], batch[:1]]))


class Deployed:
    def __init__(self, export: Exporter, load: Loader, *, features: bool):
        self._export, self._load, self.features = export, load, features
        self._dir = tempfile.TemporaryDirectory(prefix="zoo-runtime-")
        self._runs: dict[tuple[int, ...], Callable[[np.ndarray], list[np.ndarray]]] = {}

    def __call__(self, batch: np.ndarray):
        key = tuple(batch.shape[1:])
        if key not in self._runs:
            directory = Path(self._dir.name) / f"{len(self._runs)}"
            directory.mkdir()
            self._export(directory, example_batch(batch))
            self._runs[key] = self._load(directory)
        outputs = self._runs[key](np.ascontiguousarray(batch, dtype=np.float32))
        return outputs if self.features else outputs[0]


def runtime_of(framework: str, mode: str | None) -> str:
    """The export format the mode's deployment runtime runs ("" for the framework's own execution)."""
    from . import FRAMEWORKS

    return FRAMEWORKS[framework].mode(mode).runtime if mode else ""


def deployed(framework: str, model, fmt: str, device: str, features: bool) -> Deployed:
    """``model`` (in eval mode) run through the runtime of ``fmt``, by the backend's ``deploy``."""
    from . import FRAMEWORKS

    deploy = FRAMEWORKS[framework].backend("deploy")
    return Deployed(lambda d, x: deploy.export(model, fmt, d, x), lambda d: deploy.load(fmt, d, device),
                    features=features)
