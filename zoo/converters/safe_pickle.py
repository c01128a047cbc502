"""A restricted unpickler for the pickle-based formats (Paddle ``.pdparams``, Jittor ``.pkl``).

It admits numpy arrays, dtypes and plain containers, and nothing else: a pickle that asks for
any other global (``os.system``, ``builtins.eval``, a class to instantiate ...) is refused before
anything runs. The peers load these files with full pickle, which runs whatever they carry.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import numpy as np

from ..errors import CheckpointFormatError, UnsafeCheckpointError

_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    # numpy arrays pickled with protocol 2 carry their bytes through codecs.encode
    ("_codecs", "encode"),
}


# Jittor pickles each Var as ``Var(ndarray)``; the array is all we need, so the constructor is
# replaced by one that returns it, and jittor is never imported.
_STAND_INS = {("jittor", "jittor_core.Var"): np.asarray, ("jittor_core", "Var"): np.asarray}
# Jittor's safepickle appends sha1(pickle) and this marker.
_JITTOR_TRAILER = b"HCAJSLHD"
_SHA1_BYTES = 20


class ForeignGlobalError(UnsafeCheckpointError):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if (module, name) in _STAND_INS:
            return _STAND_INS[(module, name)]
        raise ForeignGlobalError(module, name)

    def persistent_load(self, pid):  # torch's legacy format stores tensors out of band
        raise ForeignGlobalError("persistent_id", str(pid)[:40])


def load_numpy_pickle(path: str | Path) -> object:
    """Unpickle ``path`` admitting only numpy arrays and plain containers."""
    data = Path(path).read_bytes()
    if data.endswith(_JITTOR_TRAILER) and len(data) > len(_JITTOR_TRAILER) + _SHA1_BYTES:
        body = data[: -len(_JITTOR_TRAILER) - _SHA1_BYTES]
        if hashlib.sha1(body).digest() != data[len(body): len(body) + _SHA1_BYTES]:
            raise CheckpointFormatError(f"{path}: damaged Jittor file (checksum mismatch)")
        data = body
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except ForeignGlobalError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise CheckpointFormatError(f"{path}: damaged or truncated pickle ({type(exc).__name__}: {exc})") from exc


def dump_numpy_pickle(state: dict[str, np.ndarray], f) -> None:
    """Write ``state`` as the protocol-4 pickle that paddle.save and jt.save write for a state
    dict of arrays. The pickler runs without its memo ("fast" mode): with a memo it keeps a copy
    of every array's bytes alive until the end, doubling the memory a conversion needs."""
    pickler = pickle.Pickler(f, protocol=4)
    pickler.fast = True  # no memo: a flat dict of arrays has no shared or recursive objects
    pickler.dump(dict(state))
