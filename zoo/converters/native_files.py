"""The native files that numpy writes exactly, written without their framework.

Paddle's ``.pdparams`` is the protocol-4 pickle of name -> ndarray that ``paddle.save`` writes for
a state dict; Jittor's ``.pkl`` is the same pickle followed by its sha1 and a marker, as
``jt.save`` writes it. ``paddle.load`` + ``set_state_dict`` and Jittor's ``load`` /
``load_parameters`` read both back. Writing them here means a Paddle or Jittor file can be made
on a machine without that framework, and a conversion pays no framework import.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .safe_pickle import dump_numpy_pickle

_JITTOR_TRAILER = b"HCAJSLHD"


class _HashingWriter:
    def __init__(self, f, digest):
        self.f, self.digest = f, digest

    def write(self, data):
        self.digest.update(data)
        return self.f.write(data)


def write_pdparams(native: dict, path: str | Path) -> None:
    """Written as a stream: paddle.save copies the dict and keeps every array's bytes alive while
    pickling (twice the file in memory)."""
    with open(path, "wb") as f:
        dump_numpy_pickle(native, f)


def write_jittor_pkl(native: dict, path: str | Path) -> None:
    """Written as a stream: jt.save builds the whole pickle in memory and then copies it once
    more to append the checksum."""
    digest = hashlib.sha1()
    with open(path, "wb") as f:
        dump_numpy_pickle(native, _HashingWriter(f, digest))
        f.write(digest.digest() + _JITTOR_TRAILER)


def numpy_writer(framework: str):
    """The framework-free writer the framework's record names, or None (its backend writes)."""
    from ..frameworks import FRAMEWORKS

    name = FRAMEWORKS[framework].numpy_writer
    return globals()[name] if name else None
