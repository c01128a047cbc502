"""Gradients that explain a prediction (zoo.cam), with Paddle's autograd."""

from __future__ import annotations

import numpy as np
import paddle

from .._common import forward_from


def activation_and_gradient(model, images: np.ndarray, index: int, classes=None):
    """(logits, stage ``index``'s output, the gradient of each image's class logit with respect to
    it); see zoo.frameworks.torch.explain."""
    model.eval()
    with paddle.no_grad():
        activation = model.forward_features(paddle.to_tensor(images))[index]
    activation = activation.detach()
    activation.stop_gradient = False
    logits = forward_from(model, index, activation)
    chosen = logits.argmax(1) if classes is None else paddle.to_tensor(np.asarray(classes, np.int64))
    (gradient,) = paddle.grad(paddle.take_along_axis(logits, chosen.reshape([-1, 1]), 1).sum(), activation)
    return logits.numpy(), activation.numpy(), gradient.numpy()
