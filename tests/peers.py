"""The peers' own Res2Net code, loaded from their packages' model files alone.

``pip install --no-deps mindcv paddleclas`` installs the packages without their many
dependencies (OpenCV, ...), so their package ``__init__`` cannot be imported; each model file is
executed on its own, with the one or two package helpers it imports (pretrained-weight download,
model registry) replaced by stand-ins that do nothing. The networks themselves are the peers'
code, unchanged. Each loader imports only its own framework.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np


def _package_root(name: str) -> Path:
    """The installed peer package; missing, its tests skip locally and fail in CI (conftest's rule)."""
    import pytest

    from .conftest import IN_CI

    spec = importlib.util.find_spec(name)
    if spec is None:
        message = f"{name} is not installed (pip install --no-deps {name})"
        pytest.fail(f"CI must run the peers' tests: {message}") if IN_CI else pytest.skip(message)
    return Path(list(spec.submodule_search_locations)[0])


def _stub_packages(*names: str) -> None:
    for name in names:
        module = types.ModuleType(name)
        module.__path__ = []
        sys.modules.setdefault(name, module)


def _exec_file(module_name: str, path: Path):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def paddleclas_models():
    """PaddleClas' res2net.py and res2net_vd.py (Res2Net50_26w_4s ..., Res2Net50_vd_26w_4s ...)."""
    loaded = [sys.modules.get(f"ppcls.arch.backbone.model_zoo.{n}") for n in ("res2net", "res2net_vd")]
    if all(loaded):
        return tuple(loaded)
    root = _package_root("paddleclas") / "ppcls"
    _stub_packages("ppcls", "ppcls.utils", "ppcls.arch", "ppcls.arch.backbone", "ppcls.arch.backbone.model_zoo")
    helper = types.ModuleType("ppcls.utils.save_load")
    helper.load_dygraph_pretrain = helper.load_dygraph_pretrain_from_url = lambda *a, **k: None
    sys.modules["ppcls.utils.save_load"] = helper
    zoo_dir = root / "arch/backbone/model_zoo"
    plain = _exec_file("ppcls.arch.backbone.model_zoo.res2net", zoo_dir / "res2net.py")
    vd = _exec_file("ppcls.arch.backbone.model_zoo.res2net_vd", zoo_dir / "res2net_vd.py")
    return plain, vd


def mindcv_res2net():
    """MindCV's models/res2net.py (res2net50, res2net50_v1b ...), with its real layer helpers."""
    if "mindcv.models.res2net" in sys.modules:
        return sys.modules["mindcv.models.res2net"]
    root = _package_root("mindcv") / "models"
    _stub_packages("mindcv", "mindcv.models", "mindcv.models.layers")
    for layer in ("compatibility", "pooling"):
        _exec_file(f"mindcv.models.layers.{layer}", root / "layers" / f"{layer}.py")
    helpers = types.ModuleType("mindcv.models.helpers")
    helpers.load_pretrained = lambda *a, **k: None
    registry = types.ModuleType("mindcv.models.registry")
    registry.register_model = lambda fn: fn
    sys.modules["mindcv.models.helpers"], sys.modules["mindcv.models.registry"] = helpers, registry
    return _exec_file("mindcv.models.res2net", root / "res2net.py")


def images(size: int = 64, batch: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)
