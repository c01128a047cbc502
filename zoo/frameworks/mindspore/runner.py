"""Inference for the worker commands (``logits``, ``eval``): numpy in, numpy out."""

from __future__ import annotations

import mindspore as ms
import numpy as np

_TARGETS = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}


class Runner:
    framework = "mindspore"

    def __init__(self, device: str = "cpu", mode: str | None = None):
        ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
        if device != "cpu":  # MindSpore itself says clearly when the target is not in this build
            ms.set_device(_TARGETS[device])

    def load(self, spec, weights, features: bool = False):
        from ... import create_model

        out_indices = range(len(spec.plan().features)) if features else None
        model = create_model(spec, "mindspore", weights=weights, features_only=features, out_indices=out_indices)
        model.set_train(False)
        return model

    def __call__(self, model, batch: np.ndarray):
        out = model(ms.Tensor(batch))
        if isinstance(out, (list, tuple)):
            return [o.asnumpy() for o in out]
        return out.asnumpy()
