"""What "trains like the reference" means, without any framework.

The reference is PyTorch's own training step: BatchNorm in train mode (normalize with the biased
batch variance, store the *unbiased* one in ``running_var``, momentum 0.1 on the new value),
cross-entropy averaged over the batch, and ``torch.optim.SGD`` (the first step sets the momentum
buffer to the gradient, no dampening, weight decay coupled: added to the gradient). Every
backend's ``train`` module builds that step from its framework's own layers and optimizer; where
a framework's convention differs, its record (``zoo.frameworks.FRAMEWORKS[...].training``) says
how and the backend translates it there, once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class SGD:
    """SGD with momentum in torch's semantics: ``v = momentum * v + (g + weight_decay * p)``
    (``v = g + weight_decay * p`` at the first step), ``p -= lr * v`` or, with Nesterov,
    ``p -= lr * (g + weight_decay * p + momentum * v)``. ``decay_norm_and_bias=False`` leaves the
    1-d parameters (BatchNorm weights and biases, every bias) out of the weight decay, as timm
    and many fine-tuning recipes do."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    decay_norm_and_bias: bool = True

    def __post_init__(self) -> None:
        from .errors import UsageError

        if self.lr <= 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise UsageError(f"SGD needs lr > 0, 0 <= momentum < 1 and weight_decay >= 0 (got lr {self.lr}, "
                             f"momentum {self.momentum}, weight_decay {self.weight_decay})")
        if self.nesterov and self.momentum == 0:
            raise UsageError("Nesterov momentum needs momentum > 0")

    def decays(self, ndim: int) -> bool:
        """Whether a parameter of this rank gets weight decay (1-d: norms and biases)."""
        return self.decay_norm_and_bias or ndim > 1

    def param_groups(self, params: list) -> list[tuple[list, float]]:
        """(parameters, weight decay) groups for a framework's optimizer (anything with ``.shape``)."""
        decay = [p for p in params if self.decays(len(p.shape))]
        rest = [p for p in params if not self.decays(len(p.shape))]
        return [(decay, self.weight_decay)] + ([(rest, 0.0)] if rest else [])

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        decay = "" if self.decay_norm_and_bias else ", no decay on norms and biases"
        return (f"SGD lr {self.lr:g}, momentum {self.momentum:g}{' (Nesterov)' if self.nesterov else ''}, "
                f"weight decay {self.weight_decay:g} coupled{decay}")


@dataclass
class StepOutput:
    """One training step seen from outside: the loss; with ``inspect``, also the stage outputs of
    the train-mode forward and the gradient of every parameter (native names) before the update,
    and with ``record_kinks`` the side of the kink every ReLU input fell on (``input > 0``, one
    boolean array per ReLU call, in call order). ``followed`` counts the ReLU inputs within
    ``KINK_WINDOW`` of 0 that took another run's side (``kinks=``). A parameter that received no
    gradient is absent from ``grads``."""

    loss: float
    features: list[np.ndarray] = field(default_factory=list)
    grads: dict[str, np.ndarray] = field(default_factory=dict)
    kinks: list[np.ndarray] = field(default_factory=list)
    followed: int = 0


# A ReLU input this close to 0 (relative to the largest input of that call) lies within rounding
# of the kink: a port may take either side, each with a valid gradient. Real differences between
# ports move inputs by far more (the parity limit is 1e-4 of the largest value).
KINK_WINDOW = 1e-4


class Kinks:
    """The ReLU decisions of one step, call by call: recorded (the framework's ``input > 0``), or
    followed from another run's (``follow``: one boolean array per call, in call order). The
    backends' ReLU hooks do the framework's part; the bookkeeping is here."""

    def __init__(self, follow: list[np.ndarray] | None = None):
        self._pending = iter(follow) if follow is not None else None
        self.seen: list = []
        self.followed = 0   # inputs within KINK_WINDOW of 0 that took the other run's side

    @property
    def following(self) -> bool:
        return self._pending is not None

    def record(self, decided) -> None:
        self.seen.append(decided)

    def take(self, shape) -> np.ndarray:
        """The followed run's decisions for this call, whose input has ``shape``."""
        mask = next(self._pending, None)
        if mask is None or tuple(mask.shape) != tuple(shape):
            raise KinksDiffer(f"ReLU call {len(self.seen) + 1} has input {tuple(shape)}, the followed run's "
                              f"{None if mask is None else tuple(mask.shape)}")
        self.seen.append(mask)
        return mask

    def done(self) -> None:
        if self.following and next(self._pending, None) is not None:
            raise KinksDiffer(f"the followed run made more ReLU calls than the {len(self.seen)} made here")

    def arrays(self, to_numpy) -> list[np.ndarray]:
        return [k if isinstance(k, np.ndarray) else to_numpy(k) for k in self.seen]


class KinksDiffer(ValueError):
    """The followed run made other ReLU calls (another count or shape): a port bug the stage
    outputs will show; the comparison then goes on without following."""


def unbiased_running_var(new: np.ndarray | float, old, keep: float, count: int):
    """The running variance torch would store, from what a framework stored with the *biased*
    batch variance: ``new = keep * old + (1 - keep) * biased``, torch stores
    ``keep * old + (1 - keep) * biased * n / (n - 1)``. Exact up to one rounding of ``new``, and
    written for numpy and for the frameworks' tensors alike."""
    return new + (new - keep * old) / (count - 1)
