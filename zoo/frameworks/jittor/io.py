"""Jittor checkpoint files in and out.

A Jittor ``.pkl`` is a pickle: it is read with zoo's numpy-only unpickler. Jittor's own
``load_parameters`` only logs unknown keys and wrong shapes and never raises, so the key set and
shapes are checked against the canonical layout before anything is loaded.
"""

from __future__ import annotations

from .._common import checked_native_state

FRAMEWORK = "jittor"


def native_shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_state(model, state: dict, *, reset_head: bool = False, model_name: str = "",
               allow_non_finite: bool = False) -> None:
    """Load a canonical state (official names, torch layouts) strictly."""
    # Jittor's load_parameters only logs mismatches: everything is checked before loading.
    model.load_parameters(checked_native_state(model, state, FRAMEWORK, reset_head=reset_head, model_name=model_name,
                                               allow_non_finite=allow_non_finite))


# --- worker commands (see zoo.worker) ---------------------------------------------------------


def save_native(native: dict, path) -> None:
    """Jittor's file format, written by numpy (converters/native_files.py)."""
    from ...converters.native_files import write_jittor_pkl

    write_jittor_pkl(native, path)
