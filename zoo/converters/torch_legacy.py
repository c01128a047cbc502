"""Read PyTorch's legacy checkpoint format (``torch.save`` before 1.6, or with
``_use_new_zipfile_serialization=False``) with numpy alone. Every official Res2Net release file
is in this format.

The file is five pickles back to back, then the storages' bytes:

    magic number 0x1950a86a20f9469cfc6c | protocol version 1001 | sys info (byte order, type sizes)
    | the object (its storages are persistent ids) | the list of storage keys
    | per key, in that order: int64 element count, then the raw bytes

torch writes the counts and the bytes little-endian whatever machine wrote the file (the C++
writer swaps on big-endian hosts) and reads them that way, ignoring the sys-info flag; so does
this reader. The object pickle goes through the restricted unpickler of torch_pickle.py, so a
hostile file is refused before anything in it runs.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

from ..errors import CheckpointFormatError
from .safe_pickle import ForeignGlobalError
from .torch_pickle import READ_ERRORS, StorageRef, TorchUnpickler, materialize, storage_array

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
# pickle protocol 2, then LONG1 with the ten bytes of the magic number
HEADER = b"\x80\x02\x8a\x0a" + MAGIC_NUMBER.to_bytes(10, "little")


def is_legacy_torch(head: bytes) -> bool:
    """True for the first bytes of a legacy torch file (any pickle protocol from 2 up)."""
    return len(head) >= len(HEADER) and head[:1] == b"\x80" and head[2:len(HEADER)] == HEADER[2:]


class _PlainUnpickler(pickle.Unpickler):
    """For the header pickles: numbers, strings, dicts and lists only."""

    def find_class(self, module, name):
        raise ForeignGlobalError(module, name)


def read_torch_legacy(path: str | Path) -> object:
    """The unpickled object of a legacy checkpoint, tensors as numpy arrays."""
    path = Path(path)
    data = path.read_bytes()
    f = io.BytesIO(data)
    try:
        if _PlainUnpickler(f).load() != MAGIC_NUMBER:
            raise CheckpointFormatError(f"{path}: not a PyTorch legacy checkpoint (wrong magic number)")
        version = _PlainUnpickler(f).load()
        if version != PROTOCOL_VERSION:
            raise CheckpointFormatError(f"{path}: PyTorch legacy format version {version!r} is not supported "
                                        f"(expected {PROTOCOL_VERSION})")
        sys_info = _PlainUnpickler(f).load()
        if not isinstance(sys_info, dict) or "little_endian" not in sys_info:
            raise CheckpointFormatError(f"{path}: damaged PyTorch legacy header (no system info)")
        unpickler = TorchUnpickler(f)
        obj = unpickler.load()
        keys = _PlainUnpickler(f).load()
        if not isinstance(keys, list) or set(map(str, keys)) != set(unpickler.storages):
            raise CheckpointFormatError(f"{path}: the storage list does not match the tensors (damaged file)")
        storages: dict[str, memoryview] = {}
        view, position = memoryview(data), f.tell()
        for key in map(str, keys):
            ref = unpickler.storages[key]
            if position + 8 > len(data):
                raise CheckpointFormatError(f"{path}: truncated: storage {key} is missing")
            (count,) = struct.unpack_from("<q", data, position)
            if count != ref.numel:
                raise CheckpointFormatError(f"{path}: storage {key} holds {count} elements where the tensors "
                                            f"name {ref.numel} (damaged file)")
            begin = position + 8
            position = begin + count * ref.type.dtype.itemsize
            if position > len(data):
                raise CheckpointFormatError(f"{path}: truncated: storage {key} is cut short")
            storages[key] = view[begin:position]
    except (ForeignGlobalError, CheckpointFormatError):
        raise
    except READ_ERRORS as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointFormatError(f"{path}: damaged or truncated PyTorch legacy checkpoint ({first})") from exc

    def load_storage(ref: StorageRef):
        return storage_array(storages[ref.key], StorageRef(ref.key, ref.type, unpickler.storages[ref.key].numel))

    return materialize(obj, load_storage, path)
