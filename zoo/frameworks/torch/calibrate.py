"""Realistic random weights for parity checks.

Zero-mean unit-variance BatchNorm statistics hide swapped or dropped statistics, and naive random
statistics make the residual stream explode (logits of 1e4-1e10, where fp32 rounding alone
exceeds any tolerance). So: random BN affine parameters, then one train-mode pass with BN
momentum 1 on a random batch, so every running mean/variance is a real batch statistic of the
activations it normalizes; then the classifier is scaled so logits are of order 1-10, as in a
trained model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...spec import Res2NetSpec
from .model import build_model

TARGET_MAX_LOGIT = 8.0


@torch.no_grad()
def realistic_model(spec: Res2NetSpec, *, seed: int = 0, image_size: int = 64, batch: int = 4) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model(spec)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    # Trained residual nets keep the last BN of each residual branch small, which keeps the
    # residual stream bounded over 60+ blocks; the other gammas stay near 1.
    branch_ends = {id(m.bn3) for m in model.modules() if hasattr(m, "bn3")}
    for bn in bns:
        low, span = (0.05, 0.25) if id(bn) in branch_ends else (0.6, 0.8)
        bn.weight.copy_(torch.rand(bn.weight.shape, generator=gen) * span + low)
        bn.bias.copy_(torch.randn(bn.bias.shape, generator=gen) * 0.2)
        bn.momentum = 1.0
    images = torch.randn(batch, spec.in_chans, image_size, image_size, generator=gen)
    model.train()
    model(images)
    for bn in bns:
        bn.momentum = 0.1
        bn.num_batches_tracked.zero_()
    model.eval()
    if model.fc is not None:
        model.fc.bias.copy_(torch.randn(model.fc.bias.shape, generator=gen) * 0.1)
        logits = model(images)
        centred = (logits - model.fc.bias).abs().max().clamp_min(1e-12)
        model.fc.weight.mul_(TARGET_MAX_LOGIT / centred)
    return model


def realistic_state(spec: Res2NetSpec, **kwargs) -> dict[str, np.ndarray]:
    """Canonical state (numpy, official names) of :func:`realistic_model`."""
    model = realistic_model(spec, **kwargs)
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}
