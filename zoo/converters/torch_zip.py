"""Read PyTorch zip checkpoints (``torch.save`` since 1.6) with numpy alone.

A zip checkpoint is ``data.pkl``, a pickle that names each tensor's storage by key, plus the
raw bytes of every storage under ``data/<key>`` (little-endian unless a ``byteorder`` record
says otherwise). The pickle is read by the restricted unpickler of torch_pickle.py.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ..errors import CheckpointFormatError
from .safe_pickle import ForeignGlobalError
from .torch_pickle import READ_ERRORS, StorageRef, TorchUnpickler, materialize, storage_array


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
            if byteorder not in ("little", "big"):
                raise CheckpointFormatError(f"{path}: unknown byte order {byteorder[:20]!r} (damaged file)")
            obj = TorchUnpickler(archive.read(pickles[0])).load()

            def load_storage(ref: StorageRef):
                try:
                    raw = archive.read(f"{prefix}/data/{ref.key}" if prefix else f"data/{ref.key}")
                except KeyError:
                    raise CheckpointFormatError(f"{path}: storage {ref.key} is missing from the archive "
                                                "(damaged file)") from None
                return storage_array(raw, ref, byteorder)

            return materialize(obj, load_storage, path)
    except (ForeignGlobalError, CheckpointFormatError):
        raise
    except (zipfile.BadZipFile, *READ_ERRORS) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointFormatError(f"{path}: damaged or truncated PyTorch checkpoint ({first})") from exc
