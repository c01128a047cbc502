"""Gradients that explain a prediction (zoo.cam), with MindSpore's autograd (PYNATIVE mode)."""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import ops

from .._common import forward_from


def activation_and_gradient(model, images: np.ndarray, index: int, classes=None):
    """(logits, stage ``index``'s output, the gradient of each image's class logit with respect to
    it); see zoo.frameworks.torch.explain."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    model.set_train(False)
    activation = model.forward_features(ms.Tensor(images))[index]
    logits = forward_from(model, index, activation)
    chosen = logits.argmax(1) if classes is None else ms.Tensor(np.asarray(classes, np.int32))
    chosen = chosen.astype(ms.int32).reshape(-1, 1)

    def score(a):
        return ops.gather_elements(forward_from(model, index, a), 1, chosen).sum()

    gradient = ms.grad(score)(activation)
    return logits.asnumpy(), activation.asnumpy(), gradient.asnumpy()
