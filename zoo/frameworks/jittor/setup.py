"""Jittor settings chosen before its first import, so ``zoo`` works out of the box.

Measured with jittor 1.3.11 on a CPU machine: with the CUDA toolkit's ``nvcc`` on PATH but no
GPU driver, ``import jittor`` fails unless ``nvcc_path=""``; offline, it fails downloading
oneDNN from its own web site unless ``use_mkl=0``; without oneDNN its CPU convolution is ~100x
slower (res2net50 at 224: 16 s instead of 0.15 s). Debian's ``libdnnl-dev`` provides oneDNN:
when it is installed we lay it out where Jittor looks for its own download. Jittor's
``mkl_include_path``/``mkl_lib_path`` variables cannot be used for this: setting them makes
1.3.11 fail with a NameError (``mkl_home``). And when torch is installed, ``import jittor``
imports torch too (``FIX_TORCH_ERROR``, a workaround for a clash between their bundled MKLs);
zoo never runs two frameworks in one process, so it turns that off. Settings the user made are
never overridden.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

# The directory name Jittor 1.3.11 unpacks its oneDNN download to; it takes any "dnnl*" dir.
_JITTOR_DNNL_DIR = "dnnl_lnx_2.2.0_cpu_gomp"
_SYSTEM_DNNL_LIBS = ("/usr/lib/x86_64-linux-gnu/libdnnl.so", "/usr/lib/aarch64-linux-gnu/libdnnl.so",
                     "/usr/lib64/libdnnl.so", "/usr/lib/libdnnl.so")
_SYSTEM_DNNL_HEADER = Path("/usr/include/dnnl.hpp")


def _has_cuda_device() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def _jittor_mkl_root() -> Path:
    return Path(os.environ.get("HOME", str(Path.home()))) / ".cache" / "jittor" / "mkl"


def system_onednn() -> Path | None:
    lib = next((Path(p) for p in _SYSTEM_DNNL_LIBS if Path(p).exists()), None)
    return lib if lib is not None and _SYSTEM_DNNL_HEADER.exists() else None


def _wire_system_onednn(lib: Path) -> bool:
    """Make Jittor's oneDNN directory point at the system's; False if one is already there."""
    root = _jittor_mkl_root()
    if root.is_dir() and any(p.name.startswith("dnnl") and p.is_dir() for p in root.iterdir()):
        return True  # Jittor's own download or an earlier wiring: leave it
    home = root / _JITTOR_DNNL_DIR
    staging = root / f".{_JITTOR_DNNL_DIR}.{os.getpid()}"
    try:
        (staging / "lib").mkdir(parents=True, exist_ok=True)
        (staging / "include").symlink_to(_SYSTEM_DNNL_HEADER.parent, target_is_directory=True)
        (staging / "lib" / "libmkldnn.so").symlink_to(lib)
        os.replace(staging, home)  # another process may have won the race: fine either way
    except OSError:
        return home.is_dir()
    return True


def configure() -> dict[str, str]:
    """Set Jittor's environment before its import; returns what was chosen."""
    chosen = {}
    if "FIX_TORCH_ERROR" not in os.environ:
        os.environ["FIX_TORCH_ERROR"] = chosen["FIX_TORCH_ERROR"] = "0"
    if "nvcc_path" not in os.environ and not _has_cuda_device():
        os.environ["nvcc_path"] = chosen["nvcc_path"] = ""
    if "use_mkl" not in os.environ:
        lib = system_onednn()
        if lib is not None and _wire_system_onednn(lib):
            chosen["use_mkl"] = "1 (system oneDNN)"
        else:
            # No oneDNN to use offline: Jittor's own slow CPU convolution.
            os.environ["use_mkl"] = "0"
            chosen["use_mkl"] = "0"
    return chosen
