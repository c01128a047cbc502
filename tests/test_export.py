"""`zoo export`: every format for a ResNet-style, a v1b, a Res2NeXt and a DLA variant at 64 px.

Each artefact written by the CLI is loaded here again by its own runtime (ONNX Runtime,
torch.jit, Paddle Inference, MindSpore's GraphCell), independently of zoo's code, and run at
batch 1 and 3 against the PyTorch logits of the same weights (made in a torch worker). Each
format's tests carry its framework's marker, so they run in that framework's test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo.frameworks import FRAMEWORKS, export_formats

from .isolation import hiding
from .reference import PARITY_LIMIT, calibrated, relative_diff, torch_logits

VARIANTS = ["res2net50_26w_4s", "res2net50_v1b_26w_4s", "res2next50", "res2net_dla60"]
SIZE = 64
FORMATS = {name: fw.name for name, (_, fw) in export_formats().items()}
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "paddle-inference": "", "mindir": ".mindir"}


def zoo_cli(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Calibrated weights per variant, inputs at batch 1 and 3, and the torch logits for them."""
    d = tmp_path_factory.mktemp("export")
    weights = calibrated(d, VARIANTS, SIZE)
    rng = np.random.default_rng(7)
    inputs = {b: d / f"x{b}.npy" for b in (1, 3)}
    for b, path in inputs.items():
        np.save(path, rng.standard_normal((b, 3, SIZE, SIZE)).astype(np.float32))
    runs = {(n, b): (n, weights[n], inputs[b]) for n in VARIANTS for b in inputs}
    logits = torch_logits(d, {f"{n}-{b}": r for (n, b), r in runs.items()})
    return {"dir": d, "weights": weights, "inputs": {b: np.load(p) for b, p in inputs.items()},
            "logits": {(n, b): logits[f"{n}-{b}"] for n, b in runs}}


def run_artefact(fmt: str, path: Path, x: np.ndarray) -> list[np.ndarray]:
    """The artefact in its runtime, with the runtime's own API only."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"images": x})
    if fmt == "torchscript":
        import torch

        with torch.no_grad():
            out = torch.jit.load(str(path))(torch.from_numpy(x))
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])]
    if fmt == "paddle-inference":
        from paddle import inference

        graph = next(p for p in (path / "inference.json", path / "inference.pdmodel") if p.is_file())
        config = inference.Config(str(graph), str(path / "inference.pdiparams"))
        config.disable_gpu()
        config.enable_mkldnn()
        predictor = inference.create_predictor(config)
        handle = predictor.get_input_handle(predictor.get_input_names()[0])
        handle.reshape(list(x.shape))
        handle.copy_from_cpu(x)
        predictor.run()
        return [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE)
    out = ms.nn.GraphCell(ms.load(str(path)))(ms.Tensor(x))
    return [o.asnumpy() for o in (out if isinstance(out, (tuple, list)) else [out])]


def _params(formats):
    return [pytest.param(f, n, marks=getattr(pytest.mark, FORMATS[f])) for f in formats for n in VARIANTS]


@pytest.mark.parametrize("fmt, name", _params(FORMATS))
def test_export_runs_in_its_runtime_at_any_batch(work, tmp_path, fmt, name):
    out = tmp_path / f"{name}{SUFFIX[fmt] or '-inference'}"
    result = zoo_cli("export", name, "--format", fmt, "--weights", str(work["weights"][name]),
                     "--image-size", str(SIZE), "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] and report["framework"] == FORMATS[fmt] and report["output"] == str(out)
    assert report["input_shape"] == ["batch", 3, SIZE, SIZE] and report["outputs"] == ["logits"]
    assert {c["batch"] for c in report["checks"]} == {1, 3}
    assert all(c["rel"] <= PARITY_LIMIT for c in report["checks"])
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # nothing else left beside it
    for b, x in work["inputs"].items():
        (logits,) = run_artefact(fmt, out, x)
        assert logits.shape == (b, 1000)
        assert relative_diff(logits, work["logits"][(name, b)]) <= PARITY_LIMIT


@pytest.mark.torch
def test_onnx_file_states_its_interface(work, tmp_path):
    """Opset, a free batch dimension, named input and output, and the preprocessing a deployment
    needs, stored in the file itself."""
    import onnx

    out = tmp_path / "model.onnx"
    result = zoo_cli("export", "res2net50_26w_4s", "-f", "torch", "--weights",
                     str(work["weights"]["res2net50_26w_4s"]), "--image-size", str(SIZE), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    proto = onnx.load(str(out))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (graph_input,) = proto.graph.input
    assert graph_input.name == "images"
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, SIZE, SIZE]
    assert [o.name for o in proto.graph.output] == ["logits"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["zoo.model"] == "res2net50_26w_4s"
    assert json.loads(meta["zoo.preprocessing"])["mean"] == [0.485, 0.456, 0.406]


FEATURE_FORMATS = {fw.exports[0].name: fw.name for fw in FRAMEWORKS.values() if fw.exports}  # each one's own


@pytest.mark.parametrize("fmt", [pytest.param(f, marks=getattr(pytest.mark, fw)) for f, fw in FEATURE_FORMATS.items()])
def test_features_only_export(work, tmp_path, fmt):
    """The stage outputs, at the strides and widths the spec states, checked against torch's
    stage outputs inside the command, and by shape here in the runtime."""
    from zoo.spec import feature_info, get_spec

    name = "res2net50_v1b_26w_4s"
    out = tmp_path / f"features{SUFFIX[fmt]}"
    result = zoo_cli("export", name, "--format", fmt, "--weights", str(work["weights"][name]), "--image-size",
                     str(SIZE), "--features-only", "--out-indices", "2,4", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outputs"] == ["feature2", "feature4"]
    assert all(c["rel"] <= PARITY_LIMIT for c in report["checks"]) and len(report["checks"]) == 4
    info = feature_info(get_spec(name))
    outputs = run_artefact(fmt, out, work["inputs"][3])
    assert [o.shape for o in outputs] == [(3, info[i].channels, SIZE // info[i].reduction, SIZE // info[i].reduction)
                                          for i in (2, 4)]


@pytest.mark.torch
def test_failed_check_leaves_nothing(work, tmp_path):
    """An artefact off the reference (here: a limit of 0, which ONNX Runtime's own kernels cannot
    meet) is not written: exit 9, one line, an empty directory."""
    out = tmp_path / "model.onnx"
    result = zoo_cli("export", "res2net50_26w_4s", "--format", "onnx", "--weights",
                     str(work["weights"]["res2net50_26w_4s"]), "--image-size", str(SIZE), "-o", str(out),
                     "--tolerance", "0")
    assert result.returncode == 9
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: onnx artefact of res2net50_26w_4s is off the reference: logits at batch")
    assert error.endswith("nothing was written")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.torch
def test_unwritable_output_and_missing_runtime_are_refused_first(work, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    weights = str(work["weights"]["res2net50_26w_4s"])
    for out in (blocker / "model.onnx", Path("/proc/zoo-model.onnx")):
        result = zoo_cli("export", "res2net50_26w_4s", "--format", "onnx", "--weights", weights, "-o", str(out))
        assert result.returncode == 8, result.stderr
        assert result.stderr.count("\n") == 1 and str(out) in result.stderr
    hidden = hiding(tmp_path / "site", "onnxruntime")
    out = tmp_path / "model.onnx"
    result = zoo_cli("export", "res2net50_26w_4s", "--format", "onnx", "--weights", weights, "-o", str(out),
                     env=hidden)
    assert result.returncode == 3
    assert result.stderr.strip() == ("error: ONNX export needs onnx, onnxscript and onnxruntime (to check the file); "
                                     "install with: pip install 'res2net-zoo[onnx]'")
    assert not out.exists()
    result = zoo_cli("verify", "res2net50_26w_4s", "-f", "torch", "--mode", "onnxruntime", env=hidden)
    assert result.returncode == 3 and "res2net-zoo[onnx]" in result.stderr


@pytest.mark.torch
def test_format_and_framework_must_agree(tmp_path):
    result = zoo_cli("export", "res2net50_26w_4s", "--format", "mindir", "-f", "paddle", "-o", str(tmp_path / "m"))
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: mindir is exported from mindspore, not paddle: drop -f, or use "
                                     "-f mindspore (any checkpoint converts to it)")
    result = zoo_cli("export", "res2net50_26w_4s", "-f", "jittor")
    assert result.returncode == 2 and "--format onnx" in result.stderr
    result = zoo_cli("export", "res2net50_26w_4s", "--format", "tflite")
    assert result.returncode == 2 and "onnx, torchscript, paddle-inference, mindir" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.paddle
def test_paddle_directory_replaces_only_a_previous_export(work, tmp_path):
    weights = str(work["weights"]["res2net50_26w_4s"])
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    result = zoo_cli("export", "res2net50_26w_4s", "-f", "paddle", "--weights", weights, "--image-size", str(SIZE),
                     "-o", str(foreign))
    assert result.returncode == 8 and "is not a zoo export" in result.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    out = tmp_path / "deploy"
    for _ in range(2):  # the second export replaces the first whole
        result = zoo_cli("export", "res2net50_26w_4s", "-f", "paddle", "--weights", weights, "--image-size",
                         str(SIZE), "-o", str(out))
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["inference.json", "inference.pdiparams", "zoo-export.json"]
    assert json.loads((out / "zoo-export.json").read_text())["model"] == "res2net50_26w_4s"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy", "mine"]


@pytest.mark.torch
def test_custom_spec_exports(tmp_path):
    """A spec of one's own (JSON file) with its weights: the same export and check."""
    import torch
    from safetensors.numpy import save_file

    from zoo.frameworks.torch.calibrate import realistic_model
    from zoo.spec import Res2NetSpec

    spec = Res2NetSpec((1, 1, 1, 1), base_width=8, scale=3, cardinality=2, num_classes=7)
    (tmp_path / "tiny.json").write_text(spec.to_json())
    model = realistic_model(spec, image_size=32)  # calibrated BN statistics, logits of order 1-10
    save_file({k: v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")},
              str(tmp_path / "tiny.safetensors"))
    out = tmp_path / "tiny.onnx"
    result = zoo_cli("export", str(tmp_path / "tiny.json"), "--format", "onnx", "--weights",
                     str(tmp_path / "tiny.safetensors"), "--image-size", "32", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "tiny"
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    (logits,) = run_artefact("onnx", out, x)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert logits.shape == (2, 7) and 1 <= np.abs(expected).max() <= 20
    assert relative_diff(logits, expected) <= PARITY_LIMIT
