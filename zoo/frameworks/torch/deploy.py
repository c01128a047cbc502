"""Deployment formats of the torch models: ONNX (run by ONNX Runtime) and TorchScript.

Artefacts are written into a directory under fixed names (``model.onnx``, ``model.pt``); the
caller moves them where the user asked once they are checked (zoo.export).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import torch

from ...errors import FrameworkNotInstalledError, UsageError

OPSET = 18
ARTEFACTS = {"onnx": "model.onnx", "torchscript": "model.pt"}
INPUT_NAME = "images"


def output_names(model) -> list[str]:
    if getattr(model, "features_only", False):
        return [f"feature{i}" for i in model.out_indices]
    return ["logits"]


def require_onnx(runtime: bool = False) -> None:
    """The ONNX exporter's packages (and ONNX Runtime), or the error that names the extra."""
    import importlib.util

    needed = ("onnx", "onnxscript") + (("onnxruntime",) if runtime else ())
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise FrameworkNotInstalledError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                                         "installed; install with: pip install 'res2net-zoo[onnx]'")


def export(model, fmt: str, directory: Path, example: np.ndarray, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` (eval mode) as ``fmt`` into ``directory``; the batch dimension stays free."""
    path = Path(directory) / ARTEFACTS[fmt]
    x = torch.from_numpy(example)
    model = model.eval()
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(model, x, check_trace=False)
        traced.save(str(path), _extra_files={"zoo.json": _json(metadata)})
        return path
    require_onnx()
    batch = torch.export.Dim("batch", min=1)
    # The exporter reports its steps with print(); keep stdout for the command's own output.
    with contextlib.redirect_stdout(sys.stderr):
        torch.onnx.export(model, (x,), str(path), input_names=[INPUT_NAME], output_names=output_names(model),
                          dynamic_shapes=({0: batch},), opset_version=OPSET, dynamo=True, external_data=False,
                          optimize=True, verbose=False)
    if metadata:
        import onnx

        proto = onnx.load(str(path))
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(path))
    return path


def _json(metadata: dict[str, str] | None) -> str:
    import json

    return json.dumps(metadata or {}, indent=2)


def load(fmt: str, directory: Path, device: str = "cpu"):
    """The artefact in its runtime: a function from a float32 NCHW batch to the list of outputs."""
    path = Path(directory) / ARTEFACTS[fmt]
    if fmt == "torchscript":
        target = torch.device("cuda" if device == "gpu" else "cpu")
        module = torch.jit.load(str(path), map_location=target).eval()

        @torch.no_grad()
        def run_script(batch: np.ndarray) -> list[np.ndarray]:
            out = module(torch.from_numpy(batch).to(target))
            return [o.cpu().numpy() for o in (out if isinstance(out, (list, tuple)) else [out])]

        return run_script
    session = onnx_session(path, device)
    names = [o.name for o in session.get_outputs()]

    def run_onnx(batch: np.ndarray) -> list[np.ndarray]:
        return session.run(names, {INPUT_NAME: batch})

    return run_onnx


def onnx_session(path: Path, device: str = "cpu"):
    try:
        import onnxruntime as ort
    except ImportError:
        raise FrameworkNotInstalledError("onnxruntime is not installed; install with: "
                                         "pip install 'res2net-zoo[onnx]'") from None
    providers = ["CPUExecutionProvider"]
    if device == "gpu":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UsageError("this onnxruntime build has no CUDA provider; pip install onnxruntime-gpu, "
                             "or use --device cpu")
        providers.insert(0, "CUDAExecutionProvider")
    elif device == "ascend":
        raise UsageError("onnxruntime has no Ascend provider here; use --device cpu or gpu")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
    return ort.InferenceSession(str(path), options, providers=providers)
