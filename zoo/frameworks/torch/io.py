"""PyTorch checkpoint files in and out.

``.pth``/``.pt``/``.bin`` are pickles: they are read with ``torch.load(weights_only=True)``,
which refuses any global that is not a tensor or plain container, so a hostile file cannot run
code. ``.safetensors`` is read by its own parser. The format is decided by the file's first
bytes, not its extension.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ...converters import match_layout, unwrap
from ...converters.formats import sniff_format
from ...errors import CheckpointFormatError, UnsafeCheckpointError


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Flat name -> tensor mapping of an official/timm ``.pth`` or a ``.safetensors`` file."""
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own SafetensorError and OSError
            raise CheckpointFormatError(f"{path}: not a valid safetensors file ({exc})") from exc
    if fmt not in ("torch-zip", "pickle"):
        raise CheckpointFormatError(f"{path}: a {fmt} file cannot be read as a PyTorch checkpoint")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "disallowed content"
        raise UnsafeCheckpointError(
            f"{path}: refused, the pickle asks to run code or load objects other than tensors ({first})"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointFormatError(f"{path}: damaged or truncated PyTorch checkpoint ({exc})") from exc
    return unwrap(obj)


def load_weights(model: torch.nn.Module, path: str | Path, *, reset_head: bool = False,
                 model_name: str = "", allow_non_finite: bool = False) -> torch.nn.Module:
    """Load a checkpoint into a model built by :func:`build_model`, strictly."""
    state = read_checkpoint(path)
    load_state(model, state, reset_head=reset_head, model_name=model_name, allow_non_finite=allow_non_finite)
    return model


def load_state(model: torch.nn.Module, state: dict, *, reset_head: bool = False, model_name: str = "",
               allow_non_finite: bool = False) -> None:
    kept, _ = match_layout(state, model.spec, model_name=model_name, features_only=model.features_only,
                           reset_head=reset_head, allow_non_finite=allow_non_finite)
    tensors = {k: torch.as_tensor(v) for k, v in kept.items()}
    result = model.load_state_dict(tensors, strict=False)
    # match_layout vouched for every parameter; what torch still misses can only be buffers
    # we did not require (num_batches_tracked) or the head we were told to reset.
    leftover = [k for k in result.missing_keys
                if not k.endswith("num_batches_tracked") and not (reset_head and k.startswith("fc."))]
    if leftover or result.unexpected_keys:
        raise RuntimeError(f"internal layout mismatch: {leftover} {result.unexpected_keys}")


# --- worker commands (see zoo.worker) ---------------------------------------------------------


def read_native(src: str) -> dict:
    """A PyTorch file as numpy (float32), with torch's own weights_only reader."""
    import sys

    import numpy as np

    arrays, converted = {}, set()
    for name, value in read_checkpoint(src).items():
        if value.is_floating_point() and value.dtype != torch.float32:
            converted.add(str(value.dtype).replace("torch.", ""))
            value = value.float()
        arrays[name] = np.ascontiguousarray(value.detach().cpu().numpy())
    if converted:
        print(f"note: {src}: {', '.join(sorted(converted))} tensors converted to float32", file=sys.stderr)
    return arrays


def save_native(native: dict, path) -> None:
    """torch.save of the state dict, as the official release writes it: with
    ``num_batches_tracked``, so the official code and timm load it with strict=True too."""
    state = {}
    for name, value in native.items():
        state[name] = torch.from_numpy(value)
        if name.endswith(".running_var"):
            state[name[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0)
    torch.save(state, path)


def calibrate_jobs(jobs: list[dict]) -> None:
    """Write realistic random weights (see calibrate.py) as canonical safetensors, and
    optionally as an official-style ``.pth`` (with ``num_batches_tracked``)."""
    from safetensors.numpy import save_file

    from .._common import job_spec
    from .calibrate import realistic_model

    for job in jobs:
        label, spec = job_spec(job)
        model = realistic_model(spec, seed=job.get("seed", 0), image_size=job.get("size", 64))
        state = {k: v.numpy().copy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        save_file(state, job["out"], metadata={"zoo.model": label, "zoo.spec": spec.to_json(),
                                               "zoo.source": "realistic random weights", "zoo.flavour": "torch"})
        if job.get("pth"):
            torch.save(model.state_dict(), job["pth"])
