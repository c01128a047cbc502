"""Inference for the worker commands (``logits``, ``eval``): numpy in, numpy out."""

from __future__ import annotations

import mindspore as ms
import numpy as np

from .._deployed import Deployed

_TARGETS = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}


class Runner:
    framework = "mindspore"

    def __init__(self, device: str = "cpu", mode: str | None = None):
        ms.set_context(mode=ms.GRAPH_MODE if mode in ("graph", "mindir") else ms.PYNATIVE_MODE)
        self.runtime, self.device = mode == "mindir", device
        if device != "cpu":  # MindSpore itself says clearly when the target is not in this build
            ms.set_device(_TARGETS[device])

    def load(self, spec, weights, features: bool = False):
        from ... import create_model

        out_indices = range(len(spec.plan().features)) if features else None
        model = create_model(spec, "mindspore", weights=weights, features_only=features, out_indices=out_indices)
        model.set_train(False)
        if self.runtime:
            from . import deploy

            return Deployed(lambda d, x: deploy.export(model, "mindir", d, x),
                            lambda d: deploy.load("mindir", d, self.device), features=features)
        return model

    def __call__(self, model, batch: np.ndarray):
        if isinstance(model, Deployed):
            return model(batch)
        out = model(ms.Tensor(batch))
        if isinstance(out, (list, tuple)):
            return [o.asnumpy() for o in out]
        return out.asnumpy()
