"""MindIR: ``mindspore.export`` of the graph with a dynamic batch dimension, run as a
``nn.GraphCell`` (the same file MindSpore Lite and Ascend serving load)."""

from __future__ import annotations

from pathlib import Path

import mindspore as ms
import numpy as np

ARTEFACT = "model.mindir"


def export(model, fmt: str, directory: Path, example: np.ndarray, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` (eval mode) into ``directory``; the batch dimension stays free, height and
    width are those of ``example`` (MindSpore exports one spatial size)."""
    model.set_train(False)
    shape = [None, *example.shape[1:]]
    path = Path(directory) / ARTEFACT
    # export compiles the graph: it needs GRAPH mode whatever the caller runs in
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        ms.export(model, ms.Tensor(shape=shape, dtype=ms.float32), file_name=str(path.with_suffix("")),
                  file_format="MINDIR")
    finally:
        ms.set_context(mode=previous)
    return path


def load(fmt: str, directory: Path, device: str = "cpu"):
    """The MindIR file as a GraphCell: a function from a float32 NCHW batch to the list of outputs."""
    ms.set_context(mode=ms.GRAPH_MODE)
    cell = ms.nn.GraphCell(ms.load(str(Path(directory) / ARTEFACT)))

    def run(batch: np.ndarray) -> list[np.ndarray]:
        out = cell(ms.Tensor(batch))
        return [o.asnumpy() for o in (out if isinstance(out, (list, tuple)) else [out])]

    return run
