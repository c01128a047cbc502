"""Paddle Inference: the static graph saved by ``paddle.jit.save`` (``inference.json`` with PIR,
``inference.pdmodel`` before it, plus ``inference.pdiparams``) and run by ``paddle.inference``,
with oneDNN on the CPU."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np
import paddle

from ...errors import UsageError

PREFIX = "inference"
INPUT_NAME = "images"


def export(model, fmt: str, directory: Path, example: np.ndarray, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` (eval mode) into ``directory``; batch, height and width stay free."""
    model.eval()
    spec = paddle.static.InputSpec([None, example.shape[1], None, None], "float32", name=INPUT_NAME)
    static = paddle.jit.to_static(model, input_spec=[spec], full_graph=True)
    with contextlib.redirect_stdout(sys.stderr):
        paddle.jit.save(static, str(Path(directory) / PREFIX))
    return Path(directory)


def _graph_file(directory: Path) -> Path:
    for suffix in (".json", ".pdmodel"):
        if (directory / f"{PREFIX}{suffix}").is_file():
            return directory / f"{PREFIX}{suffix}"
    raise FileNotFoundError(f"{directory}: no {PREFIX}.json or {PREFIX}.pdmodel")


def load(fmt: str, directory: Path, device: str = "cpu"):
    """The saved graph in a Paddle Inference predictor: a function from a float32 NCHW batch to
    the list of outputs."""
    from paddle import inference

    directory = Path(directory)
    config = inference.Config(str(_graph_file(directory)), str(directory / f"{PREFIX}.pdiparams"))
    if device == "gpu":
        if not paddle.device.is_compiled_with_cuda():
            raise UsageError("this paddle build has no CUDA support; use --device cpu")
        config.enable_use_gpu(256, 0)
    elif device == "ascend":
        raise UsageError("paddle's Ascend support is a separate build; use --device cpu or gpu")
    else:
        config.disable_gpu()
        config.enable_mkldnn()  # oneDNN: the CPU speed of Paddle Inference
        config.set_cpu_math_library_num_threads(os.cpu_count() or 1)
    config.disable_glog_info()
    with contextlib.redirect_stdout(sys.stderr):
        predictor = inference.create_predictor(config)
    (input_name,) = predictor.get_input_names()
    output_names = predictor.get_output_names()

    def run(batch: np.ndarray) -> list[np.ndarray]:
        handle = predictor.get_input_handle(input_name)
        handle.reshape(list(batch.shape))
        handle.copy_from_cpu(batch)
        predictor.run()
        return [predictor.get_output_handle(n).copy_to_cpu() for n in output_names]

    return run
