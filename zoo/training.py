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
    """The decisions of one step at the two kinds of kink, call by call: each ReLU's ``input > 0``
    (a boolean array) and each max pool's choice in every window (``max_offsets``: a uint8 array).
    Recorded, or followed from another run's (``follow``: those arrays, in call order). The
    backends' hooks do the framework's part; the bookkeeping is here."""

    def __init__(self, follow: list[np.ndarray] | None = None):
        self._pending = iter(follow) if follow is not None else None
        self.seen: list = []
        self.followed = 0   # ReLU inputs or pool windows within rounding that took the other run's side

    @property
    def following(self) -> bool:
        return self._pending is not None

    def record(self, decided) -> None:
        self.seen.append(decided)

    def take(self, shape, kind: str = "ReLU") -> np.ndarray:
        """The followed run's decisions for this call: a ReLU's whose input has ``shape``, or a max
        pool's whose output has ``shape``."""
        decided = next(self._pending, None)
        expected = np.bool_ if kind == "ReLU" else np.uint8
        if decided is None or tuple(decided.shape) != tuple(shape) or decided.dtype != expected:
            theirs = None if decided is None else (("ReLU" if decided.dtype == np.bool_ else "max pool"),
                                                   tuple(decided.shape))
            raise KinksDiffer(f"call {len(self.seen) + 1} is a {kind} of {tuple(shape)} here, the followed run's "
                              f"{theirs}")
        self.seen.append(decided)
        return decided

    def follow_pool(self, largest_gap: float, moved: int, peak: float) -> None:
        """A max pool took the followed run's element in every window: allowed where each lies
        within rounding (KINK_WINDOW of the input's largest value) below this run's maximum."""
        if largest_gap > KINK_WINDOW * peak:
            raise KinksDiffer(f"max pool call {len(self.seen)}: the followed run took an element "
                              f"{largest_gap:.3g} below this run's maximum ({peak:.3g} the largest input)")
        self.followed += moved

    def done(self) -> None:
        if self.following and next(self._pending, None) is not None:
            raise KinksDiffer(f"the followed run made more ReLU and max-pool calls than the {len(self.seen)} here")

    def arrays(self, to_numpy) -> list[np.ndarray]:
        return [k if isinstance(k, np.ndarray) else to_numpy(k) for k in self.seen]


def window_slices(padded, kernel: int, stride: int) -> list:
    """The ``kernel**2`` strided slices of an already padded (N, C, H, W) array whose elementwise
    maximum is max pooling (floor mode), in the row-major order of the window. Plain slicing:
    the same code for numpy arrays and the frameworks' tensors."""
    oh, ow = (padded.shape[2] - kernel) // stride + 1, (padded.shape[3] - kernel) // stride + 1
    return [padded[:, :, a:a + (oh - 1) * stride + 1:stride, b:b + (ow - 1) * stride + 1:stride]
            for a in range(kernel) for b in range(kernel)]


def pool_windows(x: np.ndarray, kernel: int, stride: int, padding: int, fill: float = -np.inf) -> list[np.ndarray]:
    """``window_slices`` of ``x`` padded with ``fill``."""
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=fill)
    return window_slices(x, kernel, stride)


def max_offsets(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Which element of its window each max-pool output took (0 .. kernel**2 - 1, row-major),
    the first of equal maxima as torch's kernel takes it; padding never wins."""
    return np.argmax(np.stack(pool_windows(x, kernel, stride, padding)), axis=0).astype(np.uint8)


def offset_masks(offsets: np.ndarray, kernel: int) -> list[np.ndarray]:
    """One float32 0/1 mask per window element: where the followed run took that element."""
    return [(offsets == j).astype(np.float32) for j in range(kernel * kernel)]


class KinksDiffer(ValueError):
    """The followed run made other ReLU or max-pool calls (another count or shape): a port bug the stage
    outputs will show; the comparison then goes on without following."""


def unbiased_running_var(new: np.ndarray | float, old, keep: float, count: int):
    """The running variance torch would store, from what a framework stored with the *biased*
    batch variance: ``new = keep * old + (1 - keep) * biased``, torch stores
    ``keep * old + (1 - keep) * biased * n / (n - 1)``. Exact up to one rounding of ``new``, and
    written for numpy and for the frameworks' tensors alike."""
    return new + (new - keep * old) / (count - 1)
