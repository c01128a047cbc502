"""Inference for the worker commands (``logits``, ``eval``): numpy in, numpy out."""

from __future__ import annotations

import jittor as jt
import numpy as np

from ...errors import UsageError
from .._common import inference_model


class Runner:
    framework = "jittor"

    def __init__(self, device: str = "cpu", mode: str | None = None):
        if device == "gpu":
            if not jt.has_cuda:
                raise UsageError("jittor found no usable CUDA; use --device cpu")
            jt.flags.use_cuda = 1
        elif device == "ascend":
            raise UsageError("jittor has no Ascend backend; use --device cpu or gpu")
        jt.flags.lazy_execution = 0 if mode == "eager" else 1

    def load(self, spec, weights, features: bool = False):
        model = inference_model("jittor", spec, weights, features)
        model.eval()
        return model

    def __call__(self, model, batch: np.ndarray):
        with jt.no_grad():
            out = model(jt.array(batch))
        if isinstance(out, (list, tuple)):
            return [o.numpy() for o in out]
        return out.numpy()
