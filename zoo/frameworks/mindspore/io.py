"""MindSpore checkpoint files in and out.

``.ckpt`` is protobuf, not a pickle: it is read with MindSpore's own ``load_checkpoint`` and
written with ``save_checkpoint``, so ``load_checkpoint`` + ``load_param_into_net`` take our files
with nothing left unloaded.
"""

from __future__ import annotations

from pathlib import Path

import mindspore as ms
import numpy as np

from ...converters.formats import sniff_format
from ...converters.read import read_canonical
from ...converters.tables import from_native, native_state
from ...errors import CheckpointFormatError

FRAMEWORK = "mindspore"


def read_ckpt(path: str | Path) -> dict[str, np.ndarray]:
    """MindSpore's names and layouts, as numpy."""
    try:
        params = ms.load_checkpoint(str(path))
    except (ValueError, RuntimeError, TypeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointFormatError(f"{path}: damaged or not a MindSpore checkpoint ({first})") from exc
    if not params:
        raise CheckpointFormatError(f"{path}: the MindSpore checkpoint holds no parameters")
    return {name: p.asnumpy() for name, p in params.items()}


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
    if sniff_format(path) == "mindspore-ckpt":
        state = from_native(read_ckpt(path), model.spec, FRAMEWORK)
    else:
        state = read_canonical(path, model.spec)
    load_state(model, state, reset_head=reset_head, model_name=model_name,
               allow_non_finite=allow_non_finite)
    return model


# --- worker commands (see zoo.worker) ---------------------------------------------------------


def read_to_safetensors(src: str, out: str) -> None:
    from safetensors.numpy import save_file

    save_file(read_ckpt(src), out, metadata={"zoo.flavour": FRAMEWORK})


def write_native(state_path: str, out: str) -> None:
    from ...atomic import atomic_output
    from .._common import load_canonical_file
    from .model import build_model

    label, spec, state = load_canonical_file(state_path)
    model = build_model(spec)
    # The staged file is ours: the parent already applied the user's NaN/Inf policy.
    load_state(model, state, model_name=label, allow_non_finite=True)
    with atomic_output(out) as tmp:
        ms.save_checkpoint(model, str(tmp))
