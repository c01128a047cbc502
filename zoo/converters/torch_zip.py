"""Read PyTorch zip checkpoints (``torch.save`` since 1.6) with numpy alone.

A zip checkpoint is ``data.pkl``, a pickle that names each tensor's storage by key, plus the
raw bytes of every storage under ``data/<key>``. The unpickler below admits exactly what a
state dict needs (torch's tensor-rebuild function, the typed-storage markers, OrderedDict) and
maps them to numpy; anything else is refused before it runs. This is the same set of objects as
``torch.load(weights_only=True)`` accepts for a state dict, without importing torch: converting
a ``.pth`` to another framework then costs that framework's import, not torch's as well.
Checkpoints holding other objects (optimizer state, ``torch.Size`` ...) fall back to a torch
worker that uses ``weights_only=True``.
"""

from __future__ import annotations

import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import CheckpointFormatError
from .safe_pickle import ForeignGlobalError

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,  # widened to float32 after the rebuild
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _BF16(np.ndarray):
    """Marks arrays rebuilt from bfloat16 storage (raw uint16 bits)."""


def _contiguous_strides(size) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(size):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    itemsize = storage.dtype.itemsize
    numel = int(np.prod(size)) if size else 1
    if size and offset == 0 and numel == storage.size and tuple(stride) == _contiguous_strides(size):
        return storage.reshape(tuple(size))  # the usual case, one tensor per storage: no copy
    if not size:
        array = storage[offset: offset + 1].reshape(())
    else:
        needed = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
        if needed > storage.size:
            raise CheckpointFormatError("a tensor reaches past the end of its storage (damaged file)")
        array = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                                strides=tuple(s * itemsize for s in stride))
    array = np.array(array)  # own, contiguous copy
    return array.view(_BF16) if isinstance(storage, _BF16) else array


def _rebuild_parameter(data, requires_grad=False, hooks=None, *rest):
    return data


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        import io

        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.byteorder = archive, prefix, byteorder
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise ForeignGlobalError(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise ForeignGlobalError("persistent_id", str(pid)[:40])
        storage_type, key = pid[1], str(pid[2])
        if key not in self.storages:
            try:
                raw = self.archive.read(f"{self.prefix}/data/{key}")
            except KeyError:
                raise CheckpointFormatError(f"storage {key} is missing from the archive (damaged file)") from None
            dtype = storage_type.dtype.newbyteorder("<" if self.byteorder == "little" else ">")
            array = np.frombuffer(raw, dtype=dtype)
            if self.byteorder != "little":
                array = array.astype(array.dtype.newbyteorder("="))
            self.storages[key] = array.view(_BF16) if storage_type.name == "BFloat16Storage" else array
        return self.storages[key]


def _widen(value):
    if isinstance(value, _BF16):
        return (np.asarray(value).astype(np.uint32) << 16).view(np.float32)
    return value


def read_torch_zip(path: str | Path) -> object:
    """The unpickled object of a zip checkpoint, tensors as numpy arrays."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pickles:
                raise CheckpointFormatError(f"{path}: a zip archive without data.pkl is not a PyTorch checkpoint")
            prefix = pickles[0][: -len("/data.pkl")] if "/" in pickles[0] else ""
            byteorder_name = f"{prefix}/byteorder" if prefix else "byteorder"
            byteorder = archive.read(byteorder_name).decode().strip() if byteorder_name in names else "little"
            obj = _Unpickler(archive.read(pickles[0]), archive, prefix, byteorder).load()
    except (ForeignGlobalError, CheckpointFormatError):
        raise
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, KeyError, OSError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointFormatError(f"{path}: damaged or truncated PyTorch checkpoint ({first})") from exc
    widened = 0

    def convert(value):
        nonlocal widened
        if isinstance(value, dict):
            return type(value)((k, convert(v)) for k, v in value.items()) if isinstance(value, OrderedDict) \
                else {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        if isinstance(value, _BF16):
            widened += 1
            return _widen(value)
        return value

    obj = convert(obj)
    if widened:
        print(f"note: {path}: {widened} bfloat16 tensors converted to float32", file=sys.stderr)
    return obj
