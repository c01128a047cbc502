"""MindSpore checkpoint files in and out.

``.ckpt`` is protobuf, not a pickle: it is read by zoo's own parser (converters/mindspore_ckpt.py,
which needs no MindSpore) and written with ``save_checkpoint``, so ``load_checkpoint`` +
``load_param_into_net`` take our files with nothing left unloaded.
"""

from __future__ import annotations

from pathlib import Path

import mindspore as ms

from ...converters.read import read_canonical
from ...converters.tables import native_state

FRAMEWORK = "mindspore"


def load_state(model, state: dict, *, reset_head: bool = False, model_name: str = "",
               allow_non_finite: bool = False) -> None:
    """Load a canonical state (official names, torch layouts) strictly."""
    native = native_state(state, model.spec, FRAMEWORK, model_name=model_name,
                          features_only=model.features_only, reset_head=reset_head,
                          allow_non_finite=allow_non_finite)
    params = {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in native.items()}
    not_loaded, unused = ms.load_param_into_net(model, params, strict_load=True)
    not_loaded = [k for k in not_loaded if not (reset_head and k.startswith("fc."))]
    if not_loaded or unused:
        raise RuntimeError(f"internal layout mismatch: not loaded {not_loaded[:5]}, unused {unused[:5]}")


def load_weights(model, path: str | Path, *, reset_head: bool = False, model_name: str = "",
                 allow_non_finite: bool = False):
    load_state(model, read_canonical(path, model.spec), reset_head=reset_head, model_name=model_name,
               allow_non_finite=allow_non_finite)
    return model


# --- worker commands (see zoo.worker) ---------------------------------------------------------


def save_native(native: dict, path) -> None:
    """MindSpore's own save_checkpoint, so load_checkpoint + load_param_into_net take it."""
    import os

    params = [{"name": k, "data": ms.Tensor.from_numpy(v)} for k, v in native.items()]
    target = str(path)
    if target.endswith(".ckpt"):
        ms.save_checkpoint(params, target)
        return
    # save_checkpoint appends ".ckpt" to any other name: write there, then move into place.
    try:
        ms.save_checkpoint(params, target + ".ckpt")
        os.replace(target + ".ckpt", target)
    finally:
        if os.path.exists(target + ".ckpt"):
            os.unlink(target + ".ckpt")
