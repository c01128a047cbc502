"""Inference for the worker commands (``logits``, ``eval``): numpy in, numpy out."""

from __future__ import annotations

import numpy as np
import torch

from ...errors import UsageError
from .._common import inference_model
from .._deployed import Deployed, deployed, runtime_of


def ieee_fp32() -> None:
    """Full float32 on CUDA in this (worker) process: cuDNN convolutions default to TF32 on
    Ampere and later, a 10-bit mantissa, which moves logits by ~1e-3 of their range and would be
    taken for a port error by the 1e-4 parity limit. zoo's numbers are fp32 numbers."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


class Runner:
    framework = "torch"

    def __init__(self, device: str = "cpu", mode: str | None = None):
        if device == "gpu" and not torch.cuda.is_available():
            raise UsageError("no CUDA device is available to torch; use --device cpu")
        if device == "ascend":
            raise UsageError("torch has no Ascend backend here; use --device cpu or gpu")
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        if device == "gpu":
            ieee_fp32()
        self.device_name, self.runtime = device, runtime_of("torch", mode)
        if self.runtime:  # refuse a missing runtime before any model is built
            from .deploy import require_onnx

            require_onnx(runtime=True)

    def load(self, spec, weights, features: bool = False):
        model = inference_model("torch", spec, weights, features)
        if self.runtime:
            return deployed("torch", model.eval(), self.runtime, self.device_name, features)
        return model.eval().to(self.device)

    @torch.no_grad()
    def __call__(self, model, batch: np.ndarray):
        if isinstance(model, Deployed):
            return model(batch)
        out = model(torch.from_numpy(batch).to(self.device))
        if isinstance(out, (list, tuple)):
            return [o.cpu().numpy() for o in out]
        return out.cpu().numpy()
