"""MindSpore backend: the only place in zoo that imports mindspore.

MindSpore's oneDNN is configured (``setup.configure``) before its first kernel: see setup.py.
"""

from .setup import configure as _configure

MINDSPORE_SETTINGS = _configure()

from .io import load_state, native_shapes, save_native  # noqa: E402
from .model import DLA, Bottle2neck, Res2Net, Tree, build_model  # noqa: E402

__all__ = ["DLA", "MINDSPORE_SETTINGS", "Bottle2neck", "Res2Net", "Tree", "build_model", "load_state",
           "native_shapes", "save_native"]
