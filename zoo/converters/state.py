"""Checkpoint filter and strict matching against the canonical layout.

Works on any mapping name -> array-like with a ``.shape`` (numpy arrays, torch tensors ...), so
every framework backend and converter shares one definition of "this checkpoint fits".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import CheckpointFormatError, CheckpointMismatchError, NonFiniteError
from ..spec import Res2NetSpec, TensorSpec, canonical_layout, plan, unused_official_tensors

# Keys under which training scripts nest the weights (official release: none; others vary).
_CONTAINER_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "net", "params")
# Wrappers that prefix every key: DataParallel/DDP and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_SHOWN = 8


def unwrap(checkpoint: object) -> dict:
    """The flat name -> tensor mapping inside a loaded checkpoint."""
    obj = checkpoint
    while isinstance(obj, Mapping):
        nested = [k for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)]
        if not nested or any(hasattr(v, "shape") for v in obj.values()):
            break
        obj = obj[nested[0]]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointFormatError("the file holds no tensors: expected a mapping of names to weights")
    state = dict(obj)
    for prefix in _WRAPPER_PREFIXES:
        if all(isinstance(k, str) and k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    bad = [k for k, v in state.items() if not isinstance(k, str) or not hasattr(v, "shape")]
    if bad:
        raise CheckpointFormatError(f"the file holds entries that are not named tensors: {bad[:_SHOWN]}")
    return state


def _shape(value) -> tuple[int, ...]:
    return tuple(int(d) for d in value.shape)


def _listing(items: list[str]) -> str:
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


@dataclass
class MatchReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)   # "name: file [a, b] vs model [c, d]"
    dropped: list[str] = field(default_factory=list)      # removed knowingly

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def message(self, what: str) -> str:
        parts = []
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} with wrong shape ({_listing(self.mismatched)})")
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({_listing(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({_listing(self.unexpected)})")
        return f"checkpoint does not fit {what}: " + "; ".join(parts)


def match_layout(
    state: Mapping,
    spec: Res2NetSpec,
    *,
    model_name: str = "",
    features_only: bool = False,
    reset_head: bool = False,
    allow_non_finite: bool = False,
) -> tuple[dict, MatchReport]:
    """Filter ``state`` to exactly the canonical layout of ``spec``, or raise.

    Dropped knowingly: ``num_batches_tracked`` (optional on input, unused by every framework
    here), the DLA projections the official checkpoints carry but never use (only with their
    exact names and shapes), and the classifier when the model has none (features_only) or a
    new one (reset_head, for fine-tuning on other classes).
    """
    expected: tuple[TensorSpec, ...] = canonical_layout(spec, features_only=features_only)
    droppable = {t.name: t.shape for t in unused_official_tensors(plan(spec))}
    head_names = {t.name for t in canonical_layout(spec)} - {t.name for t in canonical_layout(spec, features_only=True)}
    report = MatchReport()
    kept = {}
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        if droppable.get(name) == _shape(value):
            report.dropped.append(name)
            continue
        if (features_only or reset_head) and (name.startswith("fc.") or name in head_names):
            report.dropped.append(name)
            continue
        kept[name] = value
    for t in expected:
        if reset_head and t.name in head_names:
            continue
        if t.name not in kept:
            report.missing.append(t.name)
        elif _shape(kept[t.name]) != t.shape:
            shape = list(_shape(kept[t.name]))
            report.mismatched.append(f"{t.name}: file {shape} vs model {list(t.shape)}")
    known = {t.name for t in expected}
    report.unexpected = [k for k in kept if k not in known]
    if not report.ok:
        raise CheckpointMismatchError(report.message(model_name or "this model"))
    if not allow_non_finite:
        bad = [k for k, v in kept.items() if not np.isfinite(np.asarray(v, dtype=np.float32)).all()]
        if bad:
            raise NonFiniteError(f"{len(bad)} tensor(s) hold NaN or Inf ({_listing(bad)}); refusing them: "
                                 "pass --allow-non-finite (allow_non_finite=True) to keep them")
    return kept, report
