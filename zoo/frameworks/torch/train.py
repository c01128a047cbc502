"""Training with torch's own BatchNorm and SGD: the reference every other port is held to.

Every trainer can record its ReLU decisions and follow another run's where its own input lies
within rounding of the kink (see ``zoo.training.KINK_WINDOW``): ReLU is not differentiable at 0,
and fp32 rounding alone puts a few of the millions of inputs of a step on the other side
(measured: 0-4 of 3.6-4.0M at 64 px), each with a different, equally valid gradient. The same
holds for a max pool's window whose two largest inputs lie within rounding: its choice is
recorded and followed in the same way.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from ...training import KINK_WINDOW, SGD, Kinks, StepOutput, max_offsets, offset_masks, window_slices


def create_optimizer(model: torch.nn.Module, sgd: SGD) -> torch.optim.SGD:
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": params, "weight_decay": decay} for params, decay in sgd.param_groups(trainable)]
    return torch.optim.SGD(groups, lr=sgd.lr, momentum=sgd.momentum, dampening=0.0, weight_decay=sgd.weight_decay,
                           nesterov=sgd.nesterov)


class Trainer:
    """A model, its optimizer and the training step, numpy in and out (native names)."""

    def __init__(self, model: torch.nn.Module, sgd: SGD, device: str = "cpu", label_smoothing: float = 0.0,
                 collective=None, sync_bn: bool = False):
        """``collective`` (torchrun's ranks): gradients averaged over them by DistributedDataParallel;
        ``sync_bn``: BatchNorm statistics of the global batch rather than each rank's."""
        from .parallel import sync_batchnorm, training_forward

        self.device = torch.device("cuda", torch.cuda.current_device()) if device == "gpu" else torch.device("cpu")
        if device == "gpu":
            from .runner import ieee_fp32

            ieee_fp32()
        if collective is not None and sync_bn:
            sync_batchnorm(model)
        self.model = model.to(self.device).train()
        self._forward = training_forward(self.model, collective is not None, self.device)
        self.optimizer = create_optimizer(self.model, sgd)
        self.label_smoothing = label_smoothing

    @contextlib.contextmanager
    def _kinks(self, kinks: Kinks):
        """Record every ReLU call's ``input > 0`` and every max pool's choice per window into
        ``kinks``, or follow its decisions where this run's own lie within rounding of them
        (zoo.training.KINK_WINDOW)."""
        def relu(module, inputs, output):
            if not kinks.following:
                kinks.record((output > 0).cpu().numpy())
                return None
            z = inputs[0]
            other = torch.from_numpy(kinks.take(z.shape)).to(z.device)
            near = z.abs() <= KINK_WINDOW * z.abs().max()
            kinks.followed += int((near & (other != (z > 0))).sum())
            return torch.where(near, z * other.to(z.dtype), output)

        def pool(module, inputs, output):
            x, k, s, p = inputs[0], module.kernel_size, module.stride, module.padding
            if not kinks.following:
                kinks.record(max_offsets(x.detach().cpu().numpy(), k, s, p))
                return None
            masks = offset_masks(kinks.take(output.shape, "max pool"), k)
            padded = F.pad(x, (p,) * 4) if p else x  # zeros: a followed choice never lies there
            chosen = sum(torch.from_numpy(m).to(x.device) * w for m, w in zip(masks, window_slices(padded, k, s)))
            gap = (output - chosen).detach()
            kinks.follow_pool(float(gap.max()), int((gap > 0).sum()), float(x.detach().abs().max()))
            return chosen

        relus = [m for m in self.model.modules() if isinstance(m, torch.nn.ReLU)]
        pools = [m for m in self.model.modules() if isinstance(m, torch.nn.MaxPool2d)]
        inplace = [m.inplace for m in relus]
        handles = [m.register_forward_hook(pool) for m in pools]
        for m in relus:
            m.inplace = not kinks.following and m.inplace  # following needs the input the ReLU saw
            handles.append(m.register_forward_hook(relu))
        try:
            yield
            kinks.done()
        finally:
            for m, flag in zip(relus, inplace):
                m.inplace = flag
            for h in handles:
                h.remove()

    def step(self, images: np.ndarray, labels: np.ndarray, *, inspect: bool = False, record_kinks: bool = False,
             kinks: list[np.ndarray] | None = None) -> StepOutput:
        x = torch.from_numpy(images).to(self.device)
        y = torch.from_numpy(labels.astype(np.int64)).to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        seen = Kinks(kinks)
        with self._kinks(seen) if record_kinks or kinks is not None else contextlib.nullcontext():
            features, logits = self._forward(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        loss.backward()
        out = StepOutput(float(loss.detach()), kinks=seen.arrays(lambda k: k), followed=seen.followed)
        if inspect:
            out.features = [f.detach().cpu().numpy() for f in features]
            out.grads = {n: p.grad.detach().cpu().numpy() for n, p in self.model.named_parameters()
                         if p.grad is not None}
        self.optimizer.step()
        return out

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> np.ndarray:
        """Eval-mode logits (running statistics), the model back in train mode after."""
        self.model.eval()
        try:
            return self.model(torch.from_numpy(images).to(self.device)).cpu().numpy()
        finally:
            self.model.train()

    def named_state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()
                if not k.endswith("num_batches_tracked")}

    def momentum_buffers(self) -> dict[str, np.ndarray]:
        out = {}
        for name, p in self.model.named_parameters():
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                out[name] = buf.detach().cpu().numpy()
        return out

    @torch.no_grad()
    def load_state(self, state: dict[str, np.ndarray], momentum: dict[str, np.ndarray]) -> None:
        """Parameters, BatchNorm statistics and momentum buffers (native names) from another run."""
        own = self.model.state_dict()
        for name, value in state.items():
            own[name].copy_(torch.from_numpy(value))
        for name, p in self.model.named_parameters():
            if name in momentum:
                self.optimizer.state[p]["momentum_buffer"] = torch.from_numpy(momentum[name]).to(p.device).clone()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
