"""Training recipes as data: the optimizer, schedule, epochs and batch of ``zoo train --recipe``.

``paper`` is the Res2Net paper's ImageNet training (SGD, lr 0.1 divided by 10 every 30 epochs,
100 epochs, batch 256, weight decay 1e-4, momentum 0.9); ``mindcv`` and ``paddleclas`` are the
peers' published Res2Net-50 recipes (MindCV's configs/res2net/res2net_50_ascend.yaml, PaddleClas'
ppcls/configs/ImageNet/Res2Net/Res2Net50_26w_4s.yaml), with what zoo's pipeline does not do named
in ``left_out``; ``finetune`` (the default) adapts released weights to a new, small data set.
The learning rate is a pure function of the step, so a resumed run needs no scheduler state.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from .errors import UsageError
from .training import SGD


@dataclass(frozen=True)
class Recipe:
    name: str
    lr: float
    epochs: int
    batch_size: int
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    decay_norm_and_bias: bool = True
    schedule: str = "cosine"        # "cosine" (to min_lr) or "step" (x step_gamma every step_epochs)
    step_epochs: int = 30
    step_gamma: float = 0.1
    warmup_epochs: float = 0.0      # linear from 0, per step
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    left_out: str = ""              # what the published recipe also does that zoo's pipeline does not
    source: str = ""

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "step"):
            raise UsageError(f"recipe {self.name}: schedule must be cosine or step, not {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise UsageError(f"recipe {self.name}: epochs and batch size must be at least 1")
        if not 0 <= self.label_smoothing < 1:
            raise UsageError(f"recipe {self.name}: label smoothing must lie in [0, 1)")
        self.sgd()  # SGD's own checks: lr > 0, momentum in [0, 1), ...

    def sgd(self) -> SGD:
        return SGD(self.lr, self.momentum, self.weight_decay, self.nesterov, self.decay_norm_and_bias)

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        epoch = step / steps_per_epoch
        warmup = self.warmup_epochs * steps_per_epoch
        if warmup and step < warmup:
            return self.lr * (step + 1) / warmup
        if self.schedule == "step":
            return self.lr * self.step_gamma ** int(epoch // self.step_epochs)
        total = self.epochs * steps_per_epoch - warmup
        progress = (step - warmup) / max(1.0, total)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))

    def describe(self) -> str:
        sched = (f"step x{self.step_gamma:g} every {self.step_epochs} epochs" if self.schedule == "step"
                 else f"cosine to {self.min_lr:g}")
        extra = f", warm-up {self.warmup_epochs:g} epochs" if self.warmup_epochs else ""
        smooth = f", label smoothing {self.label_smoothing:g}" if self.label_smoothing else ""
        return (f"{self.name}: {self.sgd().describe()}, {sched}{extra}{smooth}, {self.epochs} epochs, "
                f"batch {self.batch_size}")

    def as_dict(self) -> dict:
        return asdict(self)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("finetune", lr=0.01, epochs=10, batch_size=32, warmup_epochs=0.0,
           source="zoo: released weights adapted to a new data set"),
    Recipe("paper", lr=0.1, epochs=100, batch_size=256, schedule="step", step_epochs=30, step_gamma=0.1,
           source="Res2Net (TPAMI 2021), ImageNet training"),
    Recipe("mindcv", lr=0.1, epochs=200, batch_size=256, warmup_epochs=4, label_smoothing=0.1,
           left_out="colour jitter 0.4, random erasing 0.5, O3 mixed precision; batch 256 is its 8 x 32",
           source="MindCV configs/res2net/res2net_50_ascend.yaml"),
    Recipe("paddleclas", lr=0.1, epochs=200, batch_size=256, label_smoothing=0.1,
           left_out="mixup 0.2; batch 256 is its 4 x 64",
           source="PaddleClas ppcls/configs/ImageNet/Res2Net/Res2Net50_26w_4s.yaml"),
)}


def get_recipe(name: str, **overrides) -> Recipe:
    """A named recipe with ``overrides`` (None values are ignored) applied."""
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return replace(RECIPES[name], **changes) if changes else RECIPES[name]
