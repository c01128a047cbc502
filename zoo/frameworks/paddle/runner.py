"""Inference for the worker commands (``logits``, ``eval``): numpy in, numpy out."""

from __future__ import annotations

import numpy as np
import paddle

from ...errors import UsageError
from .._common import inference_model
from .._deployed import Deployed, deployed, runtime_of


class Runner:
    framework = "paddle"

    def __init__(self, device: str = "cpu", mode: str | None = None):
        if device == "gpu" and not paddle.device.is_compiled_with_cuda():
            raise UsageError("this paddle build has no CUDA support; use --device cpu")
        if device == "ascend":
            raise UsageError("paddle's Ascend support is a separate build; use --device cpu or gpu")
        paddle.set_device("gpu" if device == "gpu" else "cpu")
        self.static, self.runtime, self.device = mode == "to_static", runtime_of("paddle", mode), device

    def load(self, spec, weights, features: bool = False):
        model = inference_model("paddle", spec, weights, features)
        model.eval()
        if self.runtime:
            return deployed("paddle", model, self.runtime, self.device, features)
        if self.static:
            shape = [None, spec.in_chans, None, None]
            model = paddle.jit.to_static(model, input_spec=[paddle.static.InputSpec(shape, "float32")],
                                         full_graph=True)
        return model

    def __call__(self, model, batch: np.ndarray):
        if isinstance(model, Deployed):
            return model(batch)
        with paddle.no_grad():
            out = model(paddle.to_tensor(batch))
        if isinstance(out, (list, tuple)):
            return [o.numpy() for o in out]
        return out.numpy()
