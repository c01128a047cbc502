"""Read any supported checkpoint into numpy without importing a framework in this process.

safetensors and the numpy pickles (Paddle, later Jittor) are read here; PyTorch files need
torch's own ``weights_only`` reader and MindSpore ``.ckpt`` (protobuf) MindSpore's parser, so
they are read by a worker process of that framework and handed over as a temporary
safetensors file.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CheckpointFormatError, UnsafeCheckpointError
from .formats import sniff_format
from .safe_pickle import ForeignGlobalError, load_numpy_pickle
from .state import unwrap

# Keys Paddle adds to saved state dicts besides the tensors.
_PADDLE_EXTRAS = ("StructuredToParameterName@@",)


@dataclass
class RawState:
    tensors: dict[str, np.ndarray]
    flavour: str                      # whose names/layouts: "torch" (canonical), "paddle", "mindspore"
    metadata: dict[str, str] = field(default_factory=dict)


def read_safetensors(path: Path) -> RawState:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # SafetensorError, OSError: header damaged, file cut short
        raise CheckpointFormatError(f"{path}: not a valid safetensors file ({exc})") from exc
    return RawState(tensors, metadata.get("zoo.flavour", "torch"), metadata)


def _flavour(tensors: dict) -> str:
    if any(k.endswith(("._mean", "._variance")) for k in tensors):
        return "paddle"
    return "torch"


def read_raw(path: str | Path) -> RawState:
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "safetensors":
        return read_safetensors(path)
    if fmt == "torch-zip":
        return _read_with_worker("torch", path)
    if fmt == "mindspore-ckpt":
        return _read_with_worker("mindspore", path)
    if fmt == "pickle":
        try:
            obj = load_numpy_pickle(path)
        except ForeignGlobalError as exc:
            if exc.module.split(".")[0] == "torch" or exc.module == "persistent_id":
                return _read_with_worker("torch", path)  # legacy torch.save format; torch reads it safely
            raise UnsafeCheckpointError(
                f"{path}: refused, the pickle asks for {exc.module}.{exc.name}, which could run code; "
                "only arrays and plain containers are loaded"
            ) from None
        if isinstance(obj, dict):
            obj = {k: v for k, v in obj.items() if k not in _PADDLE_EXTRAS}
        tensors = {k: np.asarray(v) for k, v in unwrap(obj).items()}
        return RawState(tensors, _flavour(tensors))
    raise CheckpointFormatError(f"{path}: a {fmt} file is not supported here yet")


def _read_with_worker(framework: str, path: Path) -> RawState:
    from ..worker import run_worker

    with tempfile.TemporaryDirectory(prefix="zoo-read-") as tmp:
        out = Path(tmp) / "state.safetensors"
        run_worker(framework, "read", str(path), str(out))
        raw = read_safetensors(out)
    raw.flavour = framework
    return raw


def read_canonical(path: str | Path, spec) -> dict[str, np.ndarray]:
    """Any supported file as a canonical state for ``spec`` (names and layouts of the official
    release); not yet checked against the layout."""
    from .tables import from_native

    raw = read_raw(path)
    return from_native(raw.tensors, spec, raw.flavour) if raw.flavour != "torch" else raw.tensors
