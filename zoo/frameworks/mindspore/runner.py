"""Inference for the worker commands (``logits``, ``eval``): numpy in, numpy out."""

from __future__ import annotations

import mindspore as ms
import numpy as np

from .._common import inference_model
from .._deployed import Deployed, deployed, runtime_of

_TARGETS = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}


class Runner:
    framework = "mindspore"

    def __init__(self, device: str = "cpu", mode: str | None = None):
        ms.set_context(mode=ms.GRAPH_MODE if mode in ("graph", "mindir") else ms.PYNATIVE_MODE)
        self.runtime, self.device = runtime_of("mindspore", mode), device
        if device != "cpu":  # MindSpore itself says clearly when the target is not in this build
            ms.set_device(_TARGETS[device])

    def load(self, spec, weights, features: bool = False):
        model = inference_model("mindspore", spec, weights, features)
        model.set_train(False)
        if self.runtime:
            return deployed("mindspore", model, self.runtime, self.device, features)
        return model

    def __call__(self, model, batch: np.ndarray):
        if isinstance(model, Deployed):
            return model(batch)
        out = model(ms.Tensor(batch))
        if isinstance(out, (list, tuple)):
            return [o.asnumpy() for o in out]
        return out.asnumpy()
