"""Inference for the worker commands (``logits``, ``eval``): numpy in, numpy out."""

from __future__ import annotations

import numpy as np
import torch

from ...errors import UsageError
from .._deployed import Deployed


def deployed(model, fmt: str, device: str, features: bool) -> Deployed:
    from . import deploy

    return Deployed(lambda d, x: deploy.export(model, fmt, d, x), lambda d: deploy.load(fmt, d, device),
                    features=features)


class Runner:
    framework = "torch"

    def __init__(self, device: str = "cpu", mode: str | None = None):
        if device == "gpu" and not torch.cuda.is_available():
            raise UsageError("no CUDA device is available to torch; use --device cpu")
        if device == "ascend":
            raise UsageError("torch has no Ascend backend here; use --device cpu or gpu")
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        self.device_name, self.runtime = device, mode == "onnxruntime"
        if self.runtime:  # refuse a missing runtime before any model is built
            from .deploy import require_onnx

            require_onnx(runtime=True)

    def load(self, spec, weights, features: bool = False):
        from ... import create_model

        out_indices = range(len(spec.plan().features)) if features else None
        model = create_model(spec, "torch", weights=weights, features_only=features, out_indices=out_indices)
        if self.runtime:
            return deployed(model.eval(), "onnx", self.device_name, features)
        return model.eval().to(self.device)

    @torch.no_grad()
    def __call__(self, model, batch: np.ndarray):
        if isinstance(model, Deployed):
            return model(batch)
        out = model(torch.from_numpy(batch).to(self.device))
        if isinstance(out, (list, tuple)):
            return [o.cpu().numpy() for o in out]
        return out.cpu().numpy()
