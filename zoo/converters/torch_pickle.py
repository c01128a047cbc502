"""What both PyTorch checkpoint formats share: a pickle whose tensors point at storages kept
outside it, read with numpy alone.

The unpickler admits exactly what a state dict needs — torch's tensor-rebuild functions, the
typed-storage markers, ``torch.Size`` and ``OrderedDict`` — and maps them to numpy; anything
else is refused before it runs, whether or not torch is installed. This is the set of objects
``torch.load(weights_only=True)`` accepts for a state dict. A tensor becomes a placeholder while
the pickle is read (the legacy format stores the bytes *after* the pickle) and an array once
its storage is known: :func:`materialize`.
"""

from __future__ import annotations

import io
import pickle
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import CheckpointFormatError
from .safe_pickle import ForeignGlobalError

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,  # raw bits, widened to float32 once rebuilt
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass(frozen=True)
class StorageRef:
    """A storage named by the pickle: ``key`` in the file, ``offset``/``numel`` elements of it
    (the legacy format could pickle views of a storage)."""

    key: str
    type: StorageType
    numel: int
    offset: int = 0


@dataclass(frozen=True)
class PendingTensor:
    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    if not isinstance(storage, StorageRef):
        raise CheckpointFormatError("a tensor is rebuilt from something that is not a storage (damaged file)")
    return PendingTensor(storage, int(offset), tuple(int(n) for n in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data, *_ignored):
    return data  # requires_grad and hooks mean nothing to a weights file


_ALLOWED: dict[tuple[str, str], Callable] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,       # torch < 0.4
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("collections", "OrderedDict"): OrderedDict,
}


class TorchUnpickler(pickle.Unpickler):
    """Unpickles a torch object graph without torch; tensors come out as PendingTensor."""

    def __init__(self, data: bytes | io.BufferedIOBase):
        super().__init__(io.BytesIO(data) if isinstance(data, bytes) else data)
        self.storages: dict[str, StorageRef] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        raise ForeignGlobalError(module, name)

    def persistent_load(self, pid):
        # zip: ('storage', type, key, location, numel); legacy adds view metadata (key, offset, numel).
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[4], int)):
            raise ForeignGlobalError("persistent_id", str(pid)[:40])
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        root = self.storages.setdefault(key, StorageRef(key, storage_type, numel))
        if root.type != storage_type or root.numel != numel:
            raise CheckpointFormatError(f"storage {key} is named with two types or sizes (damaged file)")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return root
        view_key, offset, view_numel = view
        if offset < 0 or offset + view_numel > numel:
            raise CheckpointFormatError(f"storage view {view_key} reaches past its storage (damaged file)")
        return StorageRef(key, storage_type, int(view_numel), int(offset))


def _contiguous_strides(size) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(size):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _tensor(pending: PendingTensor, storage: np.ndarray) -> np.ndarray:
    """The array torch would build: ``size``/``stride`` elements from ``offset`` of the storage
    (or of the view). Shared storages give independent copies, as torch.load's tensors would be
    once written to; the common case — one tensor per storage — is not copied."""
    ref, size, stride = pending.storage, pending.size, pending.stride
    base = storage[ref.offset: ref.offset + ref.numel]
    numel = int(np.prod(size)) if size else 1
    if size and any(n == 0 for n in size):
        return np.zeros(size, storage.dtype)
    needed = pending.offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if pending.offset < 0 or any(s < 0 for s in stride) or needed > base.size:
        raise CheckpointFormatError("a tensor reaches past the end of its storage (damaged file)")
    if pending.offset == 0 and numel == base.size and stride == _contiguous_strides(size):
        return base.reshape(size)
    if not size:
        return base[pending.offset: pending.offset + 1].reshape(()).copy()
    view = np.lib.stride_tricks.as_strided(base[pending.offset:], shape=size,
                                           strides=tuple(s * base.itemsize for s in stride))
    return np.array(view)


def materialize(obj: object, load_storage: Callable[[StorageRef], np.ndarray], path) -> object:
    """Replace every PendingTensor in ``obj`` by its numpy array. ``load_storage`` gives a root
    storage (offset 0, full numel) as a flat array of its dtype. bfloat16 is widened to float32
    exactly (it is the upper half of a float32) and said so on stderr."""
    cache: dict[str, np.ndarray] = {}
    widened = 0

    def array(pending: PendingTensor) -> np.ndarray:
        nonlocal widened
        key = pending.storage.key
        if key not in cache:
            cache[key] = load_storage(pending.storage)
        value = _tensor(pending, cache[key])
        if pending.storage.type.name == "BFloat16Storage":
            widened += 1
            value = (value.astype(np.uint32) << 16).view(np.float32)
        return value

    def convert(value):
        if isinstance(value, PendingTensor):
            return array(value)
        if isinstance(value, OrderedDict):
            return OrderedDict((k, convert(v)) for k, v in value.items())
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        return value

    out = convert(obj)
    if widened:
        print(f"note: {path}: {widened} bfloat16 tensors converted to float32", file=sys.stderr)
    return out


def storage_array(raw: bytes | memoryview, ref: StorageRef, byteorder: str = "little") -> np.ndarray:
    """The bytes of a root storage as a flat array; checks that they are all there."""
    dtype = ref.type.dtype.newbyteorder("<" if byteorder == "little" else ">")
    if len(raw) != ref.numel * dtype.itemsize:
        raise CheckpointFormatError(f"storage {ref.key} holds {len(raw)} bytes, expected "
                                    f"{ref.numel * dtype.itemsize} (damaged or truncated file)")
    array = np.frombuffer(raw, dtype=dtype)
    return array.astype(array.dtype.newbyteorder("=")) if byteorder != "little" else array


READ_ERRORS = (EOFError, pickle.UnpicklingError, ValueError, KeyError, OSError, TypeError, IndexError,
               AttributeError, OverflowError)
