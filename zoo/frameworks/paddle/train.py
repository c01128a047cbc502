"""Training with Paddle's own BatchNorm and optimizer, in torch's semantics.

``paddle.optimizer.Momentum`` is torch's SGD as it stands: its velocity starts at zero, so the
first step gives ``g + wd * p`` as torch's buffer does; its L2 decay is fused into the update,
i.e. coupled; Nesterov is torch's formula. Parameter groups carry their own ``weight_decay``
(a float is L2Decay); zoo's convolutions set no ``ParamAttr`` regularizer, which would override
the optimizer's. BatchNorm's momentum and running variance are the model's (model.py).
"""

from __future__ import annotations

import contextlib

import numpy as np
import paddle
import paddle.nn.functional as F

from ...training import KINK_WINDOW, SGD, Kinks, StepOutput, max_offsets, offset_masks, window_slices


def create_optimizer(model: paddle.nn.Layer, sgd: SGD) -> paddle.optimizer.Momentum:
    trainable = [p for p in model.parameters() if not p.stop_gradient]
    groups = [{"params": params, "weight_decay": decay} for params, decay in sgd.param_groups(trainable)]
    return paddle.optimizer.Momentum(learning_rate=sgd.lr, momentum=sgd.momentum, parameters=groups,
                                     use_nesterov=sgd.nesterov, weight_decay=sgd.weight_decay)


class Trainer:
    """A model, its optimizer and the training step, numpy in and out (native names)."""

    def __init__(self, model: paddle.nn.Layer, sgd: SGD, device: str = "cpu", label_smoothing: float = 0.0,
                 collective=None, sync_bn: bool = False):
        """``collective`` (the launcher's ranks): gradients averaged over them before each step;
        ``sync_bn``: BatchNorm statistics of the global batch rather than each rank's."""
        paddle.set_device("gpu" if device == "gpu" else "cpu")
        if collective is not None and sync_bn:
            from .parallel import sync_batchnorm

            sync_batchnorm(model)
        self.model = model
        self.world_size = collective.world_size if collective is not None else 1
        self.model.train()
        self.optimizer = create_optimizer(model, sgd)
        self.label_smoothing = label_smoothing

    @contextlib.contextmanager
    def _kinks(self, kinks: Kinks):
        """Record every ReLU call's ``input > 0`` and every max pool's choice per window into
        ``kinks``, or follow its decisions where this run's own lie within rounding of them
        (zoo.training.KINK_WINDOW)."""
        def relu(layer, inputs, output):
            if not kinks.following:
                kinks.record(output > 0)
                return None
            z = inputs[0]
            other = paddle.to_tensor(kinks.take(z.shape))
            near = z.abs() <= KINK_WINDOW * z.abs().max()
            kinks.followed += int((near & (other != (z > 0))).astype("int64").sum())
            return paddle.where(near, z * other.astype(z.dtype), output)

        def pool(layer, inputs, output):
            x, k, s, p = inputs[0], layer.ksize, layer.stride, layer.padding
            if not kinks.following:
                kinks.record(max_offsets(x.numpy(), k, s, p))
                return None
            masks = offset_masks(kinks.take(tuple(output.shape), "max pool"), k)
            padded = F.pad(x, [p] * 4) if p else x  # zeros: a followed choice never lies there
            chosen = sum(paddle.to_tensor(m) * w for m, w in zip(masks, window_slices(padded, k, s)))
            gap = (output - chosen).detach()
            kinks.follow_pool(float(gap.max()), int((gap > 0).astype("int64").sum()), float(x.abs().max()))
            return chosen

        layers = self.model.sublayers()
        handles = [m.register_forward_post_hook(relu) for m in layers if isinstance(m, paddle.nn.ReLU)]
        handles += [m.register_forward_post_hook(pool) for m in layers if isinstance(m, paddle.nn.MaxPool2D)]
        try:
            yield
            kinks.done()
        finally:
            for h in handles:
                h.remove()

    def step(self, images: np.ndarray, labels: np.ndarray, *, inspect: bool = False, record_kinks: bool = False,
             kinks: list[np.ndarray] | None = None) -> StepOutput:
        x = paddle.to_tensor(images)
        y = paddle.to_tensor(labels.astype(np.int64))
        seen = Kinks(kinks)
        with self._kinks(seen) if record_kinks or kinks is not None else contextlib.nullcontext():
            features = self.model.forward_features(x)
            loss = F.cross_entropy(self.model.forward_head(features[-1]), y, label_smoothing=self.label_smoothing)
        loss.backward()
        if self.world_size > 1:
            from .parallel import average_gradients

            average_gradients(self.model.parameters(), self.world_size)
        out = StepOutput(float(loss), kinks=seen.arrays(lambda k: k.numpy()),
                         followed=seen.followed)
        if inspect:
            out.features = [f.numpy() for f in features]
            out.grads = {n: p.grad.numpy() for n, p in self.model.named_parameters() if p.grad is not None}
        self.optimizer.step()
        # None rather than zeros: a parameter that gets no gradient next time shows as such
        self.optimizer.clear_grad(set_to_zero=False)
        return out

    @paddle.no_grad()
    def predict(self, images: np.ndarray) -> np.ndarray:
        """Eval-mode logits (running statistics), the model back in train mode after."""
        self.model.eval()
        try:
            return self.model(paddle.to_tensor(images)).numpy()
        finally:
            self.model.train()

    def named_state(self) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self.model.state_dict().items()}

    def momentum_buffers(self) -> dict[str, np.ndarray]:
        state = self.optimizer.state_dict()  # velocities under "<internal name>_velocity_0"
        return {n: state[f"{p.name}_velocity_0"].numpy() for n, p in self.model.named_parameters()
                if f"{p.name}_velocity_0" in state}

    def load_state(self, state: dict[str, np.ndarray], momentum: dict[str, np.ndarray]) -> None:
        """Parameters, BatchNorm statistics and momentum buffers (native names) from another run."""
        own = self.model.state_dict()
        with paddle.no_grad():
            for name, value in state.items():
                own[name].set_value(value)
        velocities = {f"{p.name}_velocity_0": paddle.to_tensor(momentum[n]) for n, p in self.model.named_parameters()
                      if n in momentum}
        self.optimizer.set_state_dict(velocities)

    def set_lr(self, lr: float) -> None:
        self.optimizer.set_lr(lr)
