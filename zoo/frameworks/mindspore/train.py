"""Training with MindSpore's own BatchNorm and optimizer, in torch's semantics (PYNATIVE mode).

``nn.Momentum`` is torch's SGD with ``v = m * v + g`` from a zero buffer (so its first step equals
torch's) and weight decay added to the gradient (coupled). One trap is translated here: given a
plain parameter list, MindSpore applies no weight decay to any parameter whose name contains
"beta" or "gamma" (its BatchNorm leaves), where torch decays every parameter; zoo always passes
parameter groups, each with its own decay, so what decays is what ``SGD.decays`` says. A second
one: MindSpore 2.10's ``ApplyMomentum(use_nesterov=True)`` takes the plain momentum step on the CPU
(measured: two steps on a 2x2 weight give exactly the non-Nesterov result), so with Nesterov the
step is written out in MindSpore ops (``NesterovMomentum``). The loss scale stays 1 (MindSpore
multiplies the weight decay by it).
"""

from __future__ import annotations

import contextlib

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from ...training import KINK_WINDOW, SGD, Kinks, StepOutput, max_offsets
from .model import PaddedMaxPool


class NesterovMomentum(nn.Momentum):
    """``nn.Momentum`` whose Nesterov step is torch's, ``v = m * v + g``, ``p -= lr * (g + m * v)``,
    with MindSpore's own weight decay, gradient handling and learning-rate schedule."""

    def construct(self, gradients):
        gradients = self.scale_grad(self.gradients_centralization(self.decay_weight(gradients)))
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        for param, moment, grad in zip(self.params, self.moments, gradients):
            ops.assign(moment, self.momentum * moment + grad)
            ops.assign(param, param - lr * (grad + self.momentum * moment))
        return True


def create_optimizer(model: nn.Cell, sgd: SGD) -> nn.Momentum:
    trainable = model.trainable_params()
    groups = [{"params": params, "weight_decay": decay} for params, decay in sgd.param_groups(trainable)]
    if sgd.nesterov:
        return NesterovMomentum(groups, learning_rate=sgd.lr, momentum=sgd.momentum)
    return nn.Momentum(groups, learning_rate=sgd.lr, momentum=sgd.momentum)


class Trainer:
    """A model, its optimizer and the training step, numpy in and out (native names)."""

    def __init__(self, model: nn.Cell, sgd: SGD, device: str = "cpu", label_smoothing: float = 0.0,
                 collective=None, sync_bn: bool = False):
        """``collective`` (msrun's ranks): gradients averaged over them before each step;
        ``sync_bn``: BatchNorm statistics of the global batch rather than each rank's."""
        from .parallel import gradient_reducer, sync_batchnorm

        ms.set_context(mode=ms.PYNATIVE_MODE)
        if device != "cpu":
            ms.set_device({"gpu": "GPU", "ascend": "Ascend"}[device])
        if collective is not None and sync_bn:
            sync_batchnorm(model)
        self.model = model
        self.model.set_train(True)
        self.optimizer = create_optimizer(model, sgd)
        self._reduce = None
        if collective is not None:
            self._reduce = gradient_reducer(self.optimizer.parameters, collective.world_size)

        def forward(x, y):
            features = model.forward_features(x)
            loss = ops.cross_entropy(model.forward_head(features[len(features) - 1]), y,
                                     label_smoothing=label_smoothing)
            return (loss,) + tuple(features)

        self._value_and_grad = ms.value_and_grad(forward, None, self.optimizer.parameters, has_aux=True)

    @contextlib.contextmanager
    def _kinks(self, kinks: Kinks):
        """Record every ReLU call's ``input > 0`` and every max pool's choice per window into
        ``kinks``, or follow its decisions where this run's own lie within rounding of them
        (zoo.training.KINK_WINDOW)."""
        def relu(cell, inputs, output):
            if not kinks.following:
                kinks.record(output > 0)
                return None
            z = inputs[0]
            other = ms.Tensor(kinks.take(z.shape))
            near = z.abs() <= KINK_WINDOW * z.abs().max()
            kinks.followed += int(ops.logical_and(near, other != (z > 0)).sum().asnumpy())
            return ops.where(near, z * other.astype(z.dtype), output)

        def pool(cell, inputs, output):
            x, (k, s, p) = inputs[0], _geometry(cell)
            if not kinks.following:
                kinks.record(max_offsets(x.asnumpy(), k, s, p))
                return None
            chosen = _chosen(x, kinks.take(tuple(output.shape), "max pool"), k, s, p)
            gap = ops.stop_gradient(output - chosen)
            kinks.follow_pool(float(gap.max().asnumpy()), int((gap > 0).sum().asnumpy()),
                              float(x.abs().max().asnumpy()))
            return chosen

        cells = [c for _, c in self.model.cells_and_names()]
        inner = {id(c.pool) for c in cells if isinstance(c, PaddedMaxPool)}  # hooked as their PaddedMaxPool
        handles = [c.register_forward_hook(relu) for c in cells if isinstance(c, nn.ReLU)]
        handles += [c.register_forward_hook(pool) for c in cells
                    if isinstance(c, PaddedMaxPool) or (isinstance(c, nn.MaxPool2d) and id(c) not in inner)]
        try:
            yield
            kinks.done()
        finally:
            for h in handles:
                h.remove()

    def step(self, images: np.ndarray, labels: np.ndarray, *, inspect: bool = False, record_kinks: bool = False,
             kinks: list[np.ndarray] | None = None) -> StepOutput:
        seen = Kinks(kinks)
        with self._kinks(seen) if record_kinks or kinks is not None else contextlib.nullcontext():
            outputs, grads = self._value_and_grad(ms.Tensor(images), ms.Tensor(labels.astype(np.int32)))
        if self._reduce is not None:
            grads = self._reduce(grads)
        out = StepOutput(float(outputs[0].asnumpy()), kinks=seen.arrays(lambda k: k.asnumpy()), followed=seen.followed)
        if inspect:
            out.features = [f.asnumpy() for f in outputs[1:]]
            out.grads = {p.name: g.asnumpy() for p, g in zip(self.optimizer.parameters, grads)}
        self.optimizer(grads)
        return out

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Eval-mode logits (running statistics), the model back in train mode after."""
        self.model.set_train(False)
        try:
            return self.model(ms.Tensor(images)).asnumpy()
        finally:
            self.model.set_train(True)

    def named_state(self) -> dict[str, np.ndarray]:
        return {p.name: p.asnumpy() for p in self.model.get_parameters()}

    def momentum_buffers(self) -> dict[str, np.ndarray]:
        return {p.name: m.asnumpy() for p, m in zip(self.optimizer.parameters, self.optimizer.moments)}

    def load_state(self, state: dict[str, np.ndarray], momentum: dict[str, np.ndarray]) -> None:
        """Parameters, BatchNorm statistics and momentum buffers (native names) from another run.
        Written in place (``ops.assign``): after ``set_data`` the optimizer's next step was measured
        to update the old momentum values."""
        for p in self.model.get_parameters():
            if p.name in state:
                ops.assign(p, ms.Tensor(state[p.name]))
        for p, m in zip(self.optimizer.parameters, self.optimizer.moments):
            if p.name in momentum:
                ops.assign(m, ms.Tensor(momentum[p.name]))

    def set_lr(self, lr: float) -> None:
        ops.assign(self.optimizer.learning_rate, ms.Tensor(lr, ms.float32))


def _geometry(cell) -> tuple[int, int, int]:
    """(kernel, stride, padding) of a zoo max pool: a PaddedMaxPool, or a "valid" nn.MaxPool2d."""
    pool, padding = (cell.pool, cell.padding[0]) if isinstance(cell, PaddedMaxPool) else (cell, 0)
    return _int(pool.kernel_size), _int(pool.stride), padding


def _int(value) -> int:
    return value if isinstance(value, int) else int(value[-1])


def _chosen(x: ms.Tensor, offsets: np.ndarray, kernel: int, stride: int, padding: int) -> ms.Tensor:
    """The element ``offsets`` names in every window, as one gather from the zero-padded input
    (MindSpore 2.10's gradient of strided slices fails on CPU: "StridedSliceGrad ... out of
    bounds"); zero padding, since a followed choice never lies there."""
    x = ops.pad(x, (padding,) * 4) if padding else x
    n, c, h, w = x.shape
    oh, ow = offsets.shape[2:]
    row = np.arange(oh)[:, None] * stride + offsets // kernel
    col = np.arange(ow)[None, :] * stride + offsets % kernel
    index = ms.Tensor((row * w + col).reshape(n, c, -1).astype(np.int32))
    return ops.gather_elements(x.reshape(n, c, h * w), 2, index).reshape(n, c, oh, ow)
