"""Paddle checkpoint files in and out.

``.pdparams`` is a pickle: it is read with zoo's numpy-only unpickler, never with
``paddle.load`` on an untrusted file. Our own ``.pdparams`` are the pickle ``paddle.save`` writes
(converters/native_files.py), so ``paddle.load`` + ``set_state_dict`` take them with nothing missing
or unexpected.
"""

from __future__ import annotations

import paddle

from .._common import checked_native_state

FRAMEWORK = "paddle"


def native_shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_state(model, state: dict, *, reset_head: bool = False, model_name: str = "",
               allow_non_finite: bool = False) -> None:
    """Load a canonical state (official names, torch layouts) strictly."""
    native = checked_native_state(model, state, FRAMEWORK, reset_head=reset_head, model_name=model_name,
                                  allow_non_finite=allow_non_finite)
    tensors = {k: paddle.to_tensor(v) for k, v in native.items()}
    # A new head keeps its fresh initialisation: hand it back to set_state_dict, which would
    # otherwise warn "Skip loading for fc.weight" about a head left out on purpose.
    tensors.update({k: v for k, v in model.state_dict().items() if k not in tensors})
    model.set_state_dict(tensors)


# --- worker commands (see zoo.worker) ---------------------------------------------------------


def save_native(native: dict, path) -> None:
    """The .pdparams format, written by numpy (converters/native_files.py)."""
    from ...converters.native_files import write_pdparams

    write_pdparams(native, path)
