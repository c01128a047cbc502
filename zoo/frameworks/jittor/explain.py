"""Gradients that explain a prediction (zoo.cam), with Jittor's autograd."""

from __future__ import annotations

import jittor as jt
import numpy as np

from .._common import forward_from


def activation_and_gradient(model, images: np.ndarray, index: int, classes=None):
    """(logits, stage ``index``'s output, the gradient of each image's class logit with respect to
    it); see zoo.frameworks.torch.explain."""
    model.eval()
    with jt.no_grad():
        activation = model.forward_features(jt.array(images))[index]
    activation = activation.detach()
    logits = forward_from(model, index, activation)
    chosen = logits.argmax(1)[0] if classes is None else jt.array(np.asarray(classes, np.int32))
    gradient = jt.grad(logits.gather(1, chosen.reshape(-1, 1)).sum(), activation)
    return logits.numpy(), activation.numpy(), gradient.numpy()
