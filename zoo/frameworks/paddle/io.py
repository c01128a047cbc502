"""Paddle checkpoint files in and out.

``.pdparams`` is a pickle: it is read with zoo's numpy-only unpickler, never with
``paddle.load`` on an untrusted file. Our own ``.pdparams`` are written with ``paddle.save`` so
``paddle.load`` + ``set_state_dict`` take them with nothing missing or unexpected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle

from ...converters.read import read_raw
from ...converters.state import match_layout
from ...converters.tables import from_native, to_native

FRAMEWORK = "paddle"


def load_state(model, state: dict, *, reset_head: bool = False, model_name: str = "") -> None:
    """Load a canonical state (official names, torch layouts) strictly."""
    kept, _ = match_layout(state, model.spec, model_name=model_name,
                           features_only=model.features_only, reset_head=reset_head)
    native = to_native(kept, model.spec, FRAMEWORK, features_only=model.features_only)
    own = model.state_dict()
    missing = [k for k in own if k not in native and not (reset_head and k.startswith("fc."))]
    unexpected = [k for k in native if k not in own]
    if missing or unexpected:
        raise RuntimeError(f"internal layout mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.set_state_dict({k: paddle.to_tensor(np.ascontiguousarray(v, dtype=np.float32)) for k, v in native.items()})


def load_weights(model, path: str | Path, *, reset_head: bool = False, model_name: str = ""):
    raw = read_raw(path)
    state = from_native(raw.tensors, model.spec, raw.flavour) if raw.flavour != "torch" else raw.tensors
    load_state(model, state, reset_head=reset_head, model_name=model_name)
    return model


# --- worker commands (see zoo.worker) ---------------------------------------------------------


def write_native(state_path: str, out: str) -> None:
    from ...atomic import atomic_output
    from .._common import load_canonical_file
    from .model import build_model

    label, spec, state = load_canonical_file(state_path)
    model = build_model(spec)
    load_state(model, state, model_name=label)
    with atomic_output(out) as tmp:
        paddle.save(model.state_dict(), str(tmp))


def read_to_safetensors(src: str, out: str) -> None:
    from ...errors import UsageError

    raise UsageError(".pdparams files are read without paddle; no worker needed")


def run_jobs(jobs: list[dict]) -> None:
    from ... import create_model
    from .._common import job_spec

    for job in jobs:
        _, spec = job_spec(job)
        model = create_model(spec, FRAMEWORK, weights=job.get("weights"))
        model.eval()
        if job.get("static"):
            model = paddle.jit.to_static(
                model, input_spec=[paddle.static.InputSpec([None, spec.in_chans, None, None], "float32")],
                full_graph=True)
        with paddle.no_grad():
            logits = model(paddle.to_tensor(np.load(job["input"])))
        np.save(job["output"], logits.numpy())
