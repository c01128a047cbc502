"""Read any supported checkpoint into numpy without any framework.

safetensors by its own parser, PyTorch zip and legacy checkpoints (torch_zip.py,
torch_legacy.py), MindSpore ``.ckpt`` (mindspore_ckpt.py) and the numpy pickles of Paddle and
Jittor (safe_pickle.py): converting a file to one framework needs that framework alone, and a
file that would run code is refused the same way whether or not its framework is installed.
"""

from __future__ import annotations

import json
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CheckpointFormatError, UnsafeCheckpointError
from .formats import sniff_format
from .layouts import LAYOUTS, detect_layout, from_layout
from .safe_pickle import ForeignGlobalError, load_numpy_pickle
from .state import unwrap

# Keys Paddle adds to saved state dicts besides the tensors.
_PADDLE_EXTRAS = ("StructuredToParameterName@@",)


@dataclass
class RawState:
    tensors: dict[str, np.ndarray]
    # whose names/layouts: "torch" (canonical), zoo's own "paddle"/"mindspore", or a peer's
    # layout (converters/layouts.py: "paddleclas", "mindcv", "mmpretrain", "mmdet")
    flavour: str
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.flavour in ("torch", "paddle", "mindspore"):
            self.flavour = detect_layout(self.tensors) or self.flavour


def read_safetensors(path: Path) -> RawState:
    from safetensors import safe_open

    try:
        if "BF16" in _safetensors_dtypes(path):
            metadata, tensors = _read_with_bf16(path)
        else:
            with safe_open(str(path), framework="numpy") as f:
                metadata = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointFormatError:
        raise
    except Exception as exc:  # SafetensorError, OSError, ValueError: damaged header, file cut short
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointFormatError(f"{path}: not a valid safetensors file ({first})") from exc
    return RawState(tensors, metadata.get("zoo.flavour", "torch"), metadata)


def _safetensors_header(path: Path) -> dict:
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


def _safetensors_dtypes(path: Path) -> set[str]:
    return {v["dtype"] for k, v in _safetensors_header(path).items() if k != "__metadata__"}


_NUMPY_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
                 "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _read_with_bf16(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """numpy has no bfloat16, so the safetensors numpy binding refuses such files. bfloat16 is
    the upper half of a float32: widen it exactly and say so."""
    header = _safetensors_header(path)
    metadata = header.pop("__metadata__", {}) or {}
    content = path.read_bytes()
    data = content[8 + struct.unpack("<Q", content[:8])[0]:]
    tensors, widened = {}, 0
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(data):
            raise CheckpointFormatError(f"{path}: tensor {name} lies outside the file (truncated?)")
        raw = data[begin:end]
        if info["dtype"] == "BF16":
            array = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
            widened += 1
        elif info["dtype"] in _NUMPY_DTYPES:
            array = np.frombuffer(raw, _NUMPY_DTYPES[info["dtype"]])
        else:
            raise CheckpointFormatError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        tensors[name] = array.reshape(info["shape"]).copy()
    print(f"note: {path}: {widened} bfloat16 tensors converted to float32", file=sys.stderr)
    return metadata, tensors


def _flavour(tensors: dict) -> str:
    if any(k.endswith(("._mean", "._variance")) for k in tensors):
        return "paddle"
    return "torch"


def read_raw(path: str | Path) -> RawState:
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "safetensors":
        return read_safetensors(path)
    if fmt == "mindspore-ckpt":
        from .mindspore_ckpt import read_mindspore_ckpt

        return RawState(read_mindspore_ckpt(path), "mindspore")
    try:
        if fmt in ("torch-zip", "torch-legacy"):
            if fmt == "torch-zip":
                from .torch_zip import read_torch_zip as reader
            else:
                from .torch_legacy import read_torch_legacy as reader
            return RawState({k: np.asarray(v) for k, v in unwrap(reader(path)).items()}, "torch")
        obj = load_numpy_pickle(path)
    except ForeignGlobalError as exc:
        raise UnsafeCheckpointError(
            f"{path}: refused, the pickle asks for {exc.module}.{exc.name}, which could run code; "
            "only tensors, arrays and plain containers are loaded"
        ) from None
    except CheckpointFormatError as exc:
        if str(path) in str(exc):
            raise
        raise CheckpointFormatError(f"{path}: {exc}") from None
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k not in _PADDLE_EXTRAS}
    try:
        tensors = {k: np.asarray(v) for k, v in unwrap(obj).items()}
    except CheckpointFormatError as exc:
        raise CheckpointFormatError(f"{path}: {exc}") from None
    return RawState(tensors, _flavour(tensors))


def canonical_state(raw: RawState, spec, dropped: list[str] | None = None) -> dict[str, np.ndarray]:
    """``raw`` in the canonical names and layouts for ``spec``; not yet checked against it.
    Entries of a peer's file that are not weights (optimizer state ...) go to ``dropped``."""
    from .tables import from_native

    if raw.flavour in LAYOUTS:
        return from_layout(raw.tensors, spec, raw.flavour, dropped)
    return from_native(raw.tensors, spec, raw.flavour) if raw.flavour != "torch" else raw.tensors


def read_canonical(path: str | Path, spec) -> dict[str, np.ndarray]:
    """Any supported file as a canonical state for ``spec`` (names and layouts of the official
    release); not yet checked against the layout."""
    return canonical_state(read_raw(path), spec)
