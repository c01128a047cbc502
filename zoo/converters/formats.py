"""Recognise a checkpoint's format from its first bytes; extensions can lie."""

from __future__ import annotations

import struct
from pathlib import Path

from ..errors import CheckpointFormatError

_ZIP_MAGIC = b"PK\x03\x04"
_EXTENSION_GUESS = {".ckpt": "mindspore-ckpt"}


def sniff_format(path: str | Path) -> str:
    """One of ``safetensors``, ``torch-zip`` (torch.save since 1.6), ``pickle`` (legacy torch,
    Paddle ``.pdparams``, Jittor ``.pkl``), ``mindspore-ckpt`` (protobuf, told by extension)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointFormatError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointFormatError(f"{path}: is a directory, expected a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointFormatError(f"{path}: empty file")
    with path.open("rb") as f:
        head = f.read(9)
    if head.startswith(_ZIP_MAGIC):
        return "torch-zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) == 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{":
            if header_len > size - 8:
                raise CheckpointFormatError(f"{path}: safetensors header is damaged or the file is truncated")
            return "safetensors"
    guess = _EXTENSION_GUESS.get(path.suffix.lower())
    if guess:
        return guess
    raise CheckpointFormatError(
        f"{path}: unrecognised file format (expected .pth, .safetensors, .ckpt, .pdparams or .pkl)"
    )
