"""Read MindSpore ``.ckpt`` files without MindSpore.

A checkpoint is one protobuf message (MindSpore's ``checkpoint.proto``, proto2)::

    Checkpoint  { repeated Value value = 1; }
    Value       { required string tag = 1; oneof { TensorProto tensor = 2; MapTensorProto maptensor = 3; } }
    TensorProto { repeated int64 dims = 1; required string tensor_type = 2; required bytes tensor_content = 3; }

``save_checkpoint`` writes one such message per parameter, back to back (which protobuf reads as
one message), splits tensors above 512 MiB into several values with the same tag whose contents
concatenate, writes the dims ``[0]`` for a scalar, and may append ``b"crc_num"`` + a 10-byte
big-endian CRC-32 of everything before it. The wire format is parsed here directly: varints and
length-delimited fields, every length checked against the bytes that are there.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np

from ..errors import CheckpointFormatError

DTYPES = {
    "Float32": np.float32, "Float16": np.float16, "Float64": np.float64,
    "Int8": np.int8, "UInt8": np.uint8, "Int16": np.int16, "UInt16": np.uint16,
    "Int32": np.int32, "UInt32": np.uint32, "Int64": np.int64, "UInt64": np.uint64, "Bool": np.bool_,
    "BFloat16": np.uint16,  # raw bits, widened to float32 below
}
_CRC_MARK = b"crc_num"
_CRC_TRAILER = len(_CRC_MARK) + 10
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class _Malformed(Exception):
    pass


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed("a number runs past its field")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, pos: int, end: int):
    """(field number, wire type, value) of one message; value is an int or (begin, end)."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
        elif wire == _BYTES:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _Malformed("a field is longer than the bytes left")
            value, pos = (pos, pos + length), pos + length
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            if pos + width > end:
                raise _Malformed("a field is longer than the bytes left")
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        else:
            raise _Malformed(f"wire type {wire} is not used by checkpoints")
        yield number, wire, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _tensor(buf: memoryview, begin: int, end: int) -> tuple[list[int], str, memoryview]:
    dims, dtype, content = [], None, None
    for number, wire, value in _fields(buf, begin, end):
        if number == 1 and wire == _VARINT:
            dims.append(_signed(value))
        elif number == 1 and wire == _BYTES:  # packed dims
            pos, stop = value
            while pos < stop:
                dim, pos = _varint(buf, pos, stop)
                dims.append(_signed(dim))
        elif number == 2 and wire == _BYTES:
            dtype = bytes(buf[value[0]:value[1]]).decode("utf-8", "replace")
        elif number == 3 and wire == _BYTES:
            content = buf[value[0]:value[1]]
    if dtype is None or content is None:
        raise _Malformed("a tensor without type or content")
    return dims, dtype, content


def read_mindspore_ckpt(path: str | Path) -> dict[str, np.ndarray]:
    """name -> array for every tensor in the checkpoint (MindSpore's names and layouts)."""
    path = Path(path)
    data = path.read_bytes()
    end = len(data)
    if end > _CRC_TRAILER and data[-_CRC_TRAILER:-10] == _CRC_MARK:
        end -= _CRC_TRAILER
        if zlib.crc32(memoryview(data)[:end]) != int.from_bytes(data[-10:], "big"):
            raise CheckpointFormatError(f"{path}: damaged MindSpore checkpoint (CRC mismatch)")
    buf = memoryview(data)
    pieces: dict[str, list] = {}
    skipped = []
    try:
        for number, wire, value in _fields(buf, 0, end):
            if number != 1 or wire != _BYTES:
                raise _Malformed(f"unexpected top-level field {number}")
            tag, tensor = None, None
            for inner, inner_wire, inner_value in _fields(buf, *value):
                if inner == 1 and inner_wire == _BYTES:
                    tag = bytes(buf[inner_value[0]:inner_value[1]]).decode("utf-8")
                elif inner == 2 and inner_wire == _BYTES:
                    tensor = _tensor(buf, *inner_value)
            if tag is None:
                raise _Malformed("a value without a name")
            if tensor is None:  # a MapTensor (embedding tables of recommender models)
                skipped.append(tag)
                continue
            pieces.setdefault(tag, []).append(tensor)
    except (_Malformed, UnicodeDecodeError) as exc:
        raise CheckpointFormatError(f"{path}: damaged, encrypted or not a MindSpore checkpoint ({exc})") from None
    if not pieces:
        raise CheckpointFormatError(f"{path}: the MindSpore checkpoint holds no tensors")
    tensors = {}
    widened = 0
    for tag, parts in pieces.items():
        dims, dtype = parts[-1][0], parts[-1][1]
        if dtype == "str":  # a string entry (save_checkpoint's append_dict), not a weight
            skipped.append(tag)
            continue
        if dtype not in DTYPES:
            raise CheckpointFormatError(f"{path}: tensor {tag} has type {dtype!r}, which zoo cannot read")
        content = parts[0][2] if len(parts) == 1 else b"".join(bytes(p[2]) for p in parts)
        shape = () if dims == [0] else tuple(dims)
        itemsize = np.dtype(DTYPES[dtype]).itemsize
        if any(d < 0 for d in shape) or len(content) != int(np.prod(shape, dtype=np.int64)) * itemsize:
            raise CheckpointFormatError(f"{path}: tensor {tag} holds {len(content)} bytes for shape "
                                        f"{list(shape)} of {dtype} (damaged or truncated file)")
        array = np.frombuffer(content, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<")).reshape(shape)
        if dtype == "BFloat16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
            widened += 1
        tensors[tag] = array
    if widened:
        print(f"note: {path}: {widened} bfloat16 tensors converted to float32", file=sys.stderr)
    if skipped:
        print(f"note: {path}: {len(skipped)} entries that are not tensors left out ({', '.join(skipped[:3])})",
              file=sys.stderr)
    return tensors
