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

from ...training import KINK_WINDOW, SGD, KinksDiffer, StepOutput


def create_optimizer(model: paddle.nn.Layer, sgd: SGD) -> paddle.optimizer.Momentum:
    trainable = [p for p in model.parameters() if not p.stop_gradient]
    decay = [p for p in trainable if sgd.decays(len(p.shape))]
    rest = [p for p in trainable if not sgd.decays(len(p.shape))]
    groups = [{"params": decay, "weight_decay": sgd.weight_decay}]
    if rest:
        groups.append({"params": rest, "weight_decay": 0.0})
    return paddle.optimizer.Momentum(learning_rate=sgd.lr, momentum=sgd.momentum, parameters=groups,
                                     use_nesterov=sgd.nesterov, weight_decay=sgd.weight_decay)


class Trainer:
    """A model, its optimizer and the training step, numpy in and out (native names)."""

    def __init__(self, model: paddle.nn.Layer, sgd: SGD, device: str = "cpu", label_smoothing: float = 0.0):
        paddle.set_device("gpu" if device == "gpu" else "cpu")
        self.model = model
        self.model.train()
        self.optimizer = create_optimizer(model, sgd)
        self.label_smoothing = label_smoothing

    @contextlib.contextmanager
    def _relus(self, seen: list, follow: list[np.ndarray] | None, counter: list[int]):
        """Record every ReLU call's ``input > 0``; with ``follow``, take those decisions where the
        input is within rounding of 0 (see zoo.training.KINK_WINDOW)."""
        pending = iter(follow) if follow is not None else None

        def hook(layer, inputs, output):
            z = inputs[0]
            if pending is None:
                seen.append(output > 0)
                return None
            mask = next(pending, None)
            if mask is None or tuple(mask.shape) != tuple(z.shape):
                raise KinksDiffer(f"ReLU call {len(seen) + 1} has input {tuple(z.shape)}, the followed run's "
                                  f"{None if mask is None else tuple(mask.shape)}")
            seen.append(mask)
            other = paddle.to_tensor(mask)
            near = z.abs() <= KINK_WINDOW * z.abs().max()
            counter[0] += int((near & (other != (z > 0))).astype("int64").sum())
            return paddle.where(near, z * other.astype(z.dtype), output)

        relus = [m for m in self.model.sublayers() if isinstance(m, paddle.nn.ReLU)]
        handles = [m.register_forward_post_hook(hook) for m in relus]
        try:
            yield
            if pending is not None and next(pending, None) is not None:
                raise KinksDiffer(f"the followed run made more ReLU calls than the {len(seen)} made here")
        finally:
            for h in handles:
                h.remove()

    def step(self, images: np.ndarray, labels: np.ndarray, *, inspect: bool = False, record_kinks: bool = False,
             kinks: list[np.ndarray] | None = None) -> StepOutput:
        x = paddle.to_tensor(images)
        y = paddle.to_tensor(labels.astype(np.int64))
        seen: list = []
        followed = [0]
        with self._relus(seen, kinks, followed) if record_kinks or kinks is not None else contextlib.nullcontext():
            features = self.model.forward_features(x)
            loss = F.cross_entropy(self.model.forward_head(features[-1]), y, label_smoothing=self.label_smoothing)
        loss.backward()
        out = StepOutput(float(loss), kinks=[k if isinstance(k, np.ndarray) else k.numpy() for k in seen],
                         followed=followed[0])
        if inspect:
            out.features = [f.numpy() for f in features]
            out.grads = {n: p.grad.numpy() for n, p in self.model.named_parameters() if p.grad is not None}
        self.optimizer.step()
        # None rather than zeros: a parameter that gets no gradient next time shows as such
        self.optimizer.clear_grad(set_to_zero=False)
        return out

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
