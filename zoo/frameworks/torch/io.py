"""PyTorch checkpoint files in and out.

Every supported file is read by zoo's framework-free readers (zoo.converters.read), the same
for every framework: ``.pth`` in both of torch's formats by a numpy unpickler that admits only
tensors and plain containers, so a hostile file cannot run code, and never ``torch.load`` of a
full pickle. The arrays are then shared with torch without a copy.
"""

from __future__ import annotations

import torch

from .._common import checked_native_state

FRAMEWORK = "torch"


def native_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """The tensors a checkpoint fills (``num_batches_tracked`` is the model's own counter)."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def load_state(model: torch.nn.Module, state: dict, *, reset_head: bool = False, model_name: str = "",
               allow_non_finite: bool = False) -> None:
    """Load a canonical state strictly; the arrays are shared with torch without a copy where
    they can be."""
    native = checked_native_state(model, state, FRAMEWORK, reset_head=reset_head, model_name=model_name,
                                  allow_non_finite=allow_non_finite)
    model.load_state_dict({k: torch.as_tensor(_writable(v)) for k, v in native.items()}, strict=False)


def _writable(value):
    """torch warns on read-only numpy memory (arrays over a file's bytes); load_state_dict copies
    the values into the model's own parameters anyway, so a view is all that is needed."""
    import numpy as np

    if isinstance(value, np.ndarray) and not value.flags.writeable:
        return np.array(value)
    return value


# --- worker commands (see zoo.worker) ---------------------------------------------------------


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
    optionally as an official-style ``.pth`` (with ``num_batches_tracked``): ``pth`` in torch's
    zip format, ``legacy_pth`` in the pre-1.6 format of the official release files."""
    from safetensors.numpy import save_file

    from .._common import job_spec
    from .calibrate import realistic_model

    from ...progress import say

    for i, job in enumerate(jobs, 1):
        label, spec = job_spec(job)
        if len(jobs) > 1:
            say(f"realistic random weights: {label} ({i}/{len(jobs)})")
        model = realistic_model(spec, seed=job.get("seed", 0), image_size=job.get("size", 64))
        state = {k: v.numpy().copy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        save_file(state, job["out"], metadata={"zoo.model": label, "zoo.spec": spec.to_json(),
                                               "zoo.source": "realistic random weights", "zoo.flavour": "torch"})
        if job.get("pth"):
            torch.save(model.state_dict(), job["pth"])
        if job.get("legacy_pth"):
            torch.save(model.state_dict(), job["legacy_pth"], _use_new_zipfile_serialization=False)
