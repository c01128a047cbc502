"""Training with Jittor's own BatchNorm and optimizer, in torch's semantics.

``jittor.optim.SGD`` keeps ``v = m * v + (1 - dampening) * (g + wd * p)`` from a zero buffer: with
dampening 0 (set here explicitly) its first step equals torch's, its weight decay is coupled and its
Nesterov step is torch's. Gradients are Jittor's ``optimizer.backward``; the parameters handed to
the optimizer are the trainable ones only (Jittor's ``parameters()`` also lists the BatchNorm
statistics, which it would then carry momentum buffers for). BatchNorm's running variance is the
model's (model.py).
"""

from __future__ import annotations

import contextlib

import jittor as jt
import numpy as np

from ...training import KINK_WINDOW, SGD, Kinks, StepOutput, max_offsets, offset_masks
from .pooling import MaxPool2d, pool_windows


def _trainable(model: jt.Module) -> list[tuple[str, jt.Var]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def create_optimizer(model: jt.Module, sgd: SGD) -> jt.optim.SGD:
    trainable = [p for _, p in _trainable(model)]
    groups = [{"params": params, "weight_decay": decay} for params, decay in sgd.param_groups(trainable)]
    return jt.optim.SGD(groups, lr=sgd.lr, momentum=sgd.momentum, weight_decay=sgd.weight_decay, dampening=0.0,
                        nesterov=sgd.nesterov)


class Trainer:
    """A model, its optimizer and the training step, numpy in and out (native names)."""

    def __init__(self, model: jt.Module, sgd: SGD, device: str = "cpu", label_smoothing: float = 0.0,
                 collective=None, sync_bn: bool = False):
        """Under mpirun Jittor's optimizer itself averages the gradients over the ranks (its
        ``pre_step``), so ``collective`` needs nothing more; ``sync_bn`` turns on the ``sync`` of
        zoo's BatchNorm (statistics of the global batch, ``model.BatchNorm2d``)."""
        from .model import BatchNorm2d

        if device == "gpu":
            jt.flags.use_cuda = 1
        if collective is not None and sync_bn:
            for m in model.modules():
                if isinstance(m, BatchNorm2d):
                    m.sync = True
        self.model = model
        self.model.train()
        self.optimizer = create_optimizer(model, sgd)
        self.label_smoothing = label_smoothing

    def _loss(self, logits: jt.Var, labels: jt.Var) -> jt.Var:
        # torch's cross-entropy with label smoothing: (1 - e) * nll + e * mean over classes of -log p
        logp = jt.nn.log_softmax(logits, dim=1)
        nll = -logp.gather(1, labels.reshape(-1, 1)).reshape(-1)
        if not self.label_smoothing:
            return nll.mean()
        return ((1.0 - self.label_smoothing) * nll - self.label_smoothing * logp.mean(dim=1)).mean()

    @contextlib.contextmanager
    def _kinks(self, kinks: Kinks):
        """Record every ReLU call's ``input > 0`` and every max pool's choice per window into
        ``kinks``, or follow its decisions where this run's own lie within rounding of them
        (zoo.training.KINK_WINDOW). Jittor keeps one forward hook per module, removed by deleting it."""
        def relu(module, inputs, output):
            if not kinks.following:
                kinks.record((output > 0).stop_grad())
                return None
            z = inputs[0]
            other = jt.array(kinks.take(z.shape))
            near = (z.abs() <= KINK_WINDOW * z.abs().max()).stop_grad()
            kinks.followed += int((near & (other != (z > 0))).sum().numpy())
            return jt.ternary(near, z * other.float32(), output)

        def pool(module, inputs, output):
            x, k, s, p = inputs[0], module.k, module.stride, module.pad
            if not kinks.following:
                kinks.record(max_offsets(x.numpy(), k, s, p))
                return None
            masks = offset_masks(kinks.take(tuple(output.shape), "max pool"), k)
            chosen = sum(jt.array(m) * w for m, w in zip(masks, pool_windows(x, k, s, p)))
            gap = (output - chosen).stop_grad()
            kinks.follow_pool(float(gap.max().numpy()), int((gap > 0).sum().numpy()), float(x.abs().max().numpy()))
            return chosen

        hooked = [(m, relu) for m in self.model.modules() if isinstance(m, jt.nn.ReLU)]
        hooked += [(m, pool) for m in self.model.modules() if isinstance(m, MaxPool2d)]
        for m, hook in hooked:
            m.register_forward_hook(hook)
        try:
            yield
            kinks.done()
        finally:
            for m, _ in hooked:
                m.__dict__.pop("__fhook__", None)

    def step(self, images: np.ndarray, labels: np.ndarray, *, inspect: bool = False, record_kinks: bool = False,
             kinks: list[np.ndarray] | None = None) -> StepOutput:
        seen = Kinks(kinks)
        with self._kinks(seen) if record_kinks or kinks is not None else contextlib.nullcontext():
            features = self.model.forward_features(jt.array(images))
            loss = self._loss(self.model.forward_head(features[-1]), jt.array(labels.astype(np.int32)))
        self.optimizer.backward(loss)
        out = StepOutput(float(loss.numpy()), kinks=seen.arrays(lambda k: k.numpy()),
                         followed=seen.followed)
        if inspect:
            out.features = [f.numpy() for f in features]
            out.grads = {n: p.opt_grad(self.optimizer).numpy() for n, p in _trainable(self.model)}
        self.optimizer.step()
        return out

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Eval-mode logits (running statistics), the model back in train mode after."""
        self.model.eval()
        try:
            with jt.no_grad():
                return self.model(jt.array(images)).numpy()
        finally:
            self.model.train()

    def named_state(self) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self.model.state_dict().items()}

    def momentum_buffers(self) -> dict[str, np.ndarray]:
        name_of = {id(p): n for n, p in _trainable(self.model)}
        return {name_of[id(p)]: v.numpy() for group in self.optimizer.param_groups
                for p, v in zip(group["params"], group["values"])}

    def load_state(self, state: dict[str, np.ndarray], momentum: dict[str, np.ndarray]) -> None:
        """Parameters, BatchNorm statistics and momentum buffers (native names) from another run."""
        own = self.model.state_dict()
        for name, value in state.items():
            own[name].update(jt.array(value))
        name_of = {id(p): n for n, p in _trainable(self.model)}
        for group in self.optimizer.param_groups:
            for p, v in zip(group["params"], group["values"]):
                if name_of[id(p)] in momentum:
                    v.update(jt.array(momentum[name_of[id(p)]]))

    def set_lr(self, lr: float) -> None:
        self.optimizer.lr = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
