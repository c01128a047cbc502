"""Jittor backend: the only place in zoo that imports jittor.

Jittor is configured (``setup.configure``) before its first import: see setup.py for why.
"""

from .setup import configure as _configure

JITTOR_SETTINGS = _configure()

from .io import load_state, native_shapes, save_native  # noqa: E402
from .model import DLA, Bottle2neck, Res2Net, Tree, build_model  # noqa: E402

__all__ = ["DLA", "JITTOR_SETTINGS", "Bottle2neck", "Res2Net", "Tree", "build_model", "load_state",
           "native_shapes", "save_native"]
