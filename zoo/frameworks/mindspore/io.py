"""MindSpore checkpoint files in and out.

``.ckpt`` is protobuf, not a pickle: it is read by zoo's own parser (converters/mindspore_ckpt.py,
which needs no MindSpore) and written with ``save_checkpoint``, so ``load_checkpoint`` +
``load_param_into_net`` take our files with nothing left unloaded.
"""

from __future__ import annotations

import mindspore as ms

from .._common import checked_native_state

FRAMEWORK = "mindspore"


def native_shapes(model) -> dict[str, tuple[int, ...]]:
    return {p.name: tuple(p.shape) for p in model.get_parameters()}


def load_state(model, state: dict, *, reset_head: bool = False, model_name: str = "",
               allow_non_finite: bool = False) -> None:
    """Load a canonical state (official names, torch layouts) strictly."""
    native = checked_native_state(model, state, FRAMEWORK, reset_head=reset_head, model_name=model_name,
                                  allow_non_finite=allow_non_finite)
    ms.load_param_into_net(model, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in native.items()},
                           strict_load=True)


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
