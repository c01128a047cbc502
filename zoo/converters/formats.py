"""Recognise a checkpoint's format from its first bytes; extensions can lie."""

from __future__ import annotations

import struct
from pathlib import Path

from ..errors import CheckpointFormatError
from .torch_legacy import is_legacy_torch

_ZIP_MAGIC = b"PK\x03\x04"
_HEAD_BYTES = 4096
_PROTOBUF_FIRST_FIELD = 0x0A  # MindSpore's Checkpoint message starts with its repeated field 1
_TORCH = {"torch-zip", "torch-legacy", "pickle"}
# What each known extension may hold (a Lightning .ckpt is a torch zip).
_EXTENSION_FORMATS = {
    ".pth": _TORCH, ".pt": _TORCH, ".bin": _TORCH, ".tar": _TORCH,
    ".safetensors": {"safetensors"}, ".pdparams": {"pickle"}, ".pkl": {"pickle"},
    ".ckpt": {"mindspore-ckpt", "torch-zip"},
}
_DESCRIPTION = {"safetensors": "safetensors", "torch-zip": "PyTorch (zip)", "torch-legacy": "PyTorch (legacy)",
                "pickle": "pickle", "mindspore-ckpt": "MindSpore"}
_SUGGESTED_EXTENSION = {"safetensors": ".safetensors", "torch-zip": ".pth", "torch-legacy": ".pth",
                        "pickle": ".pth, .pdparams or .pkl"}


def sniff_format(path: str | Path) -> str:
    """One of ``safetensors``, ``torch-zip`` (torch.save since 1.6), ``torch-legacy`` (torch.save
    before 1.6: the official release files), ``pickle`` (Paddle ``.pdparams``, Jittor ``.pkl``),
    ``mindspore-ckpt`` (protobuf, told by extension)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointFormatError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointFormatError(f"{path}: is a directory, expected a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointFormatError(f"{path}: empty file")
    with path.open("rb") as f:
        head = f.read(_HEAD_BYTES)
    fmt = _by_content(path, head, size)
    suffix = path.suffix.lower()
    allowed = _EXTENSION_FORMATS.get(suffix)
    if allowed is not None and fmt not in allowed:
        raise CheckpointFormatError(
            f"{path}: holds a {_DESCRIPTION[fmt]} file, not what {suffix} stands for; "
            f"rename it to {_SUGGESTED_EXTENSION.get(fmt, '.ckpt')} if that is what it is")
    return fmt


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 64:
        value |= (data[pos] & 0x7F) << shift
        pos += 1
        if not data[pos - 1] & 0x80:
            return value, pos
        shift += 7
    return -1, pos


def _mindspore_value(head: bytes) -> bool:
    """A file without the .ckpt extension (a cached download) that starts like a MindSpore
    checkpoint: field 1 holding a value whose field 1 is a printable name, then field 2."""
    _, pos = _varint(head, 1)
    if pos >= len(head) or head[pos] != 0x0A:
        return False
    length, start = _varint(head, pos + 1)
    name = head[start:start + length]
    return 0 < length < 1024 and len(name) == length and name.isascii() and name.decode().isprintable() \
        and head[start + length:start + length + 1] == b"\x12"


def _by_content(path: Path, head: bytes, size: int) -> str:
    if head.startswith(_ZIP_MAGIC):
        return "torch-zip"
    if is_legacy_torch(head):
        return "torch-legacy"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{":
            if header_len > size - 8:
                raise CheckpointFormatError(f"{path}: safetensors header is damaged or the file is truncated")
            return "safetensors"
    if head[0] == _PROTOBUF_FIRST_FIELD and (path.suffix.lower() == ".ckpt" or _mindspore_value(head)):
        return "mindspore-ckpt"
    raise CheckpointFormatError(
        f"{path}: unrecognised or damaged file (expected .pth, .safetensors, .ckpt, .pdparams or .pkl content; "
        "MindSpore checkpoints are recognised by their .ckpt extension)"
    )
