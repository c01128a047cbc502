"""Gradients that explain a prediction (zoo.cam), with torch's autograd."""

from __future__ import annotations

import numpy as np
import torch

from .._common import forward_from


def activation_and_gradient(model, images: np.ndarray, index: int, classes=None):
    """(logits, stage ``index``'s output, the gradient of each image's class logit with respect to
    it): the class is the top-1 unless ``classes`` are given. Eval mode, so each image's score
    depends on that image alone and one backward pass of their sum gives every image's gradient."""
    model.eval()
    with torch.no_grad():
        activation = model.forward_features(torch.from_numpy(images))[index]
    activation.requires_grad_(True)
    logits = forward_from(model, index, activation)
    chosen = logits.argmax(1) if classes is None else torch.as_tensor(classes, dtype=torch.int64)
    (gradient,) = torch.autograd.grad(logits.gather(1, chosen.view(-1, 1)).sum(), activation)
    return logits.detach().numpy(), activation.detach().numpy(), gradient.numpy()
