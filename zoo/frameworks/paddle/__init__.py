"""PaddlePaddle backend: the only place in zoo that imports paddle."""

from .io import load_state, native_shapes, save_native
from .model import DLA, Bottle2neck, Res2Net, Tree, build_model

__all__ = ["DLA", "Bottle2neck", "Res2Net", "Tree", "build_model", "load_state", "native_shapes",
           "save_native"]
