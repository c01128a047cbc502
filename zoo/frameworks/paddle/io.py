"""Paddle checkpoint files in and out.

``.pdparams`` is a pickle: it is read with zoo's numpy-only unpickler, never with
``paddle.load`` on an untrusted file. Our own ``.pdparams`` are written with ``paddle.save`` so
``paddle.load`` + ``set_state_dict`` take them with nothing missing or unexpected.
"""

from __future__ import annotations

from pathlib import Path

import paddle

from ...converters.read import read_canonical
from .._common import checked_native_state

FRAMEWORK = "paddle"


def load_state(model, state: dict, *, reset_head: bool = False, model_name: str = "",
               allow_non_finite: bool = False) -> None:
    """Load a canonical state (official names, torch layouts) strictly."""
    native = checked_native_state(model, state, FRAMEWORK, reset_head=reset_head, model_name=model_name,
                                  allow_non_finite=allow_non_finite)
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in native.items()})


def load_weights(model, path: str | Path, *, reset_head: bool = False, model_name: str = "",
                 allow_non_finite: bool = False):
    load_state(model, read_canonical(path, model.spec), reset_head=reset_head, model_name=model_name,
               allow_non_finite=allow_non_finite)
    return model


# --- worker commands (see zoo.worker) ---------------------------------------------------------


def save_native(native: dict, path) -> None:
    """The .pdparams format: the protocol-4 pickle of name -> ndarray that paddle.save writes
    for a state dict, which paddle.load + set_state_dict read back. Written here rather than by
    paddle.save, which copies the dict and keeps every array's bytes alive while pickling
    (twice the file in memory)."""
    from ...converters.safe_pickle import dump_numpy_pickle

    with open(path, "wb") as f:
        dump_numpy_pickle(native, f)
