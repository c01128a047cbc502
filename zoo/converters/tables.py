"""Rename and layout rules between the canonical (official PyTorch) layout and each framework.

One table per framework, keyed by the tensor's role in the canonical layout, held by the
framework's record (``zoo.frameworks.Framework.rename``); nothing else in the code renames
tensors. A rule names the framework's leaf name (the part after the last dot) and whether the
tensor is stored transposed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..frameworks import FRAMEWORKS, Rule
from ..spec import Res2NetSpec, canonical_layout


# framework -> role -> Rule: the records' own tables, the same objects
TABLES: dict[str, Mapping[str, Rule]] = {name: fw.rename for name, fw in FRAMEWORKS.items()}


def _table(framework: str) -> Mapping[str, Rule]:
    return FRAMEWORKS[framework].rename


def native_name(name: str, rule: Rule | None) -> str:
    if rule is None or rule.leaf is None:
        return name
    return f"{name.rsplit('.', 1)[0]}.{rule.leaf}"


def to_native(state: Mapping[str, np.ndarray], spec: Res2NetSpec, framework: str,
              *, features_only: bool = False) -> dict[str, np.ndarray]:
    """Canonical state (already matched to ``spec``) -> the framework's names and layouts."""
    table = _table(framework)
    out = {}
    for t in canonical_layout(spec, features_only=features_only):
        if t.name not in state:
            continue
        rule = table.get(t.role)
        value = np.asarray(state[t.name])
        out[native_name(t.name, rule)] = np.ascontiguousarray(value.T) if rule and rule.transpose else value
    return out


def from_native(state: Mapping[str, np.ndarray], spec: Res2NetSpec, framework: str) -> dict[str, np.ndarray]:
    """The framework's names and layouts -> canonical. Names the spec does not know pass through
    unchanged, so the strict match afterwards reports them as unexpected."""
    table = _table(framework)
    canonical_of = {}
    for t in canonical_layout(spec):
        rule = table.get(t.role)
        canonical_of[native_name(t.name, rule)] = (t.name, bool(rule and rule.transpose))
    out = {}
    for name, value in state.items():
        target, transpose = canonical_of.get(name, (name, False))
        value = np.asarray(value)
        out[target] = np.ascontiguousarray(value.T) if transpose and value.ndim == 2 else value
    return out


def native_state(state: Mapping[str, np.ndarray], spec: Res2NetSpec, framework: str, *, model_name: str = "",
                 features_only: bool = False, reset_head: bool = False,
                 allow_non_finite: bool = False) -> dict[str, np.ndarray]:
    """Check a canonical state strictly against ``spec`` and return it in ``framework``'s names
    and layouts, as float32."""
    from .state import match_layout

    kept, _ = match_layout(state, spec, model_name=model_name, features_only=features_only, reset_head=reset_head,
                           allow_non_finite=allow_non_finite)
    native = to_native(kept, spec, framework, features_only=features_only)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in native.items()}


def check_native_layout(own: Mapping[str, tuple[int, ...]], native: Mapping[str, np.ndarray],
                        *, reset_head: bool = False) -> None:
    """The model's own tensors (name -> shape) against the native state about to be loaded.

    The state already passed the strict canonical check, so a difference here is a bug in a
    port (a module named unlike the layout), never the user's file: say so loudly, because
    some frameworks (Jittor) would load a mismatch silently."""
    missing = [k for k in own if k not in native and not (reset_head and k.startswith("fc."))]
    unexpected = [k for k in native if k not in own]
    wrong = [k for k in native if k in own and tuple(own[k]) != tuple(native[k].shape)]
    if missing or unexpected or wrong:
        raise RuntimeError(f"internal layout mismatch in the port: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}")
