"""Inference for the worker commands (``logits``, ``eval``): numpy in, numpy out."""

from __future__ import annotations

import numpy as np
import torch

from ...errors import UsageError


class Runner:
    framework = "torch"

    def __init__(self, device: str = "cpu", mode: str | None = None):
        if device == "gpu" and not torch.cuda.is_available():
            raise UsageError("no CUDA device is available to torch; use --device cpu")
        if device == "ascend":
            raise UsageError("torch has no Ascend backend here; use --device cpu or gpu")
        self.device = torch.device("cuda" if device == "gpu" else "cpu")

    def load(self, spec, weights, features: bool = False):
        from ... import create_model

        out_indices = range(len(spec.plan().features)) if features else None
        model = create_model(spec, "torch", weights=weights, features_only=features, out_indices=out_indices)
        return model.eval().to(self.device)

    @torch.no_grad()
    def __call__(self, model, batch: np.ndarray):
        out = model(torch.from_numpy(batch).to(self.device))
        if isinstance(out, (list, tuple)):
            return [o.cpu().numpy() for o in out]
        return out.cpu().numpy()
