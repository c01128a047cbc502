"""The peers' own checkpoints, written by the peers' own code, into every framework.

PaddleClas and MindCV (their Res2Net model files, tests/peers.py) and jittor.models build their
networks; the tests give them realistic random weights (random BatchNorm affine parameters, real
batch statistics, a classifier scaled to logits of order 1-10), save them with the peer's own
writer, and check that ``zoo convert`` — without ``--model`` — reproduces the peer's own logits in
every other framework. OpenMMLab cannot be installed here (mmcv is compiled): its checkpoints are
built from a torch model by their documented names, and say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .peers import images, mindcv_res2net, paddleclas_models
from .reference import PARITY_LIMIT, relative_diff

TARGETS = ("torch", "paddle", "mindspore", "jittor")


def bn_affine(rng, shape, branch_end: bool) -> tuple[np.ndarray, np.ndarray]:
    """Random BatchNorm scale and shift: the residual branch's last BN small, as trained nets keep
    it (the residual stream stays bounded), the others near 1."""
    low, high = (0.05, 0.3) if branch_end else (0.6, 1.4)
    return (rng.uniform(low, high, shape).astype(np.float32), rng.normal(0, 0.2, shape).astype(np.float32))


def convert(src: Path, to: str, out: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "zoo.cli", "convert", str(src), "--to", to, "-o", str(out)],
                            capture_output=True, text=True, timeout=900, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    return result


def logits_in(framework: str, spec_json: str, weights: Path, x: np.ndarray, tmp: Path) -> np.ndarray:
    from zoo.worker import run_worker

    np.save(tmp / "x.npy", x)
    jobs = tmp / f"jobs-{framework}.json"
    jobs.write_text(json.dumps([{"spec": spec_json, "weights": str(weights), "input": str(tmp / "x.npy"),
                                 "output": str(tmp / f"{framework}.npy")}]))
    run_worker(framework, "logits", str(jobs))
    return np.load(tmp / f"{framework}.npy")


def check_everywhere(checkpoint: Path, own: str, expected_model: str, x: np.ndarray, reference: np.ndarray,
                     tmp: Path) -> dict[str, float]:
    """Convert the peer's file to safetensors and every other framework without --model; each
    framework's logits must equal the peer's own."""
    from safetensors import safe_open

    canonical = tmp / "canonical.safetensors"
    note = convert(checkpoint, "safetensors", canonical).stderr
    assert f"{expected_model} (identified by the tensor names and shapes" in note, note
    with safe_open(str(canonical), "numpy") as f:
        metadata = f.metadata()
    assert metadata["zoo.model"] == expected_model
    diffs = {}
    for framework in TARGETS:
        if framework == own:
            continue
        native = convert(checkpoint, framework, tmp / f"converted-{framework}").stdout.strip()
        diffs[framework] = relative_diff(logits_in(framework, metadata["zoo.spec"], Path(native), x, tmp), reference)
    print(f"{expected_model} from {own}: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= PARITY_LIMIT, diffs
    return diffs


# --- PaddleClas ---------------------------------------------------------------------------------


@pytest.mark.paddle
@pytest.mark.parametrize("factory,expected", [
    ("Res2Net50_vd_26w_4s", "res2net50_vd_26w_4s"),
    ("Res2Net50_26w_4s", "res2net50_26w_4s_paddleclas"),
])
def test_paddleclas_checkpoint_converts_to_every_framework(factory, expected, tmp_path):
    import paddle

    import zoo

    plain, vd = paddleclas_models()
    paddle.seed(0)
    with paddle.utils.unique_name.guard():  # PaddleClas names its parameters: one model per name scope
        model = getattr(vd if "_vd_" in factory else plain, factory)()
    rng = np.random.default_rng(0)
    norms = [layer for layer in model.sublayers() if isinstance(layer, paddle.nn.BatchNorm)]
    for name, layer in model.named_sublayers():
        if isinstance(layer, paddle.nn.BatchNorm):
            weight, bias = bn_affine(rng, layer.weight.shape, name.endswith("conv2._batch_norm"))
            layer.weight.set_value(weight)
            layer.bias.set_value(bias)
            layer._momentum = 0.0  # Paddle: running = momentum * running + (1 - momentum) * batch
    assert norms
    model.train()
    model(paddle.to_tensor(images(64, 4, seed=5)))
    model.eval()
    x = images()
    scale = 6.0 / float(np.abs(model(paddle.to_tensor(x)).numpy()).max())
    model.out.weight.set_value(model.out.weight.numpy() * scale)
    model.out.bias.set_value(model.out.bias.numpy() * scale)
    reference = model(paddle.to_tensor(x)).numpy()
    assert 1 < np.abs(reference).max() < 10
    checkpoint = tmp_path / "checkpoint.pdparams"
    paddle.save(model.state_dict(), str(checkpoint))  # PaddleClas' own writer
    # Paddle itself: zoo's model loads PaddleClas' file and computes the same function
    ours = zoo.create_model(expected, framework="paddle", weights=checkpoint)
    ours.eval()
    assert relative_diff(ours(paddle.to_tensor(x)).numpy(), reference) <= PARITY_LIMIT
    check_everywhere(checkpoint, "paddle", expected, x, reference, tmp_path)
    # The same file as the registered PaddleClas source, from a mirror
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps({expected: {"url": checkpoint.as_uri()}}))
    fetched = subprocess.run([sys.executable, "-m", "zoo.cli", "download", expected, "-f", "torch"], capture_output=True,
                             text=True, timeout=900,
                             env={**os.environ, "ZOO_HOME": str(tmp_path / "home"), "ZOO_SOURCES": str(sources)})
    assert fetched.returncode == 0, fetched.stderr
    from zoo.spec import get_spec

    native = Path(fetched.stdout.strip().splitlines()[-1])
    assert relative_diff(logits_in("torch", get_spec(expected).to_json(), native, x, tmp_path), reference) <= PARITY_LIMIT


# --- MindCV ---------------------------------------------------------------------------------------


@pytest.mark.mindspore
@pytest.mark.parametrize("factory,expected,classes", [
    ("res2net50", "res2net50_26w_4s", 1001),        # MindCV's factory default: 1001 classes
    ("res2net50_v1b", "res2net50_v1b_26w_4s", 1000),  # v1b: layer1's shortcut has no pool cell
])
def test_mindcv_checkpoint_converts_to_every_framework(factory, expected, classes, tmp_path):
    from functools import partial

    import mindspore as ms

    ms.set_seed(0)
    module = mindcv_res2net()
    model = getattr(module, factory)(num_classes=classes, norm=partial(ms.nn.BatchNorm2d, momentum=0.0))
    rng = np.random.default_rng(0)
    for name, cell in model.cells_and_names():
        if isinstance(cell, ms.nn.BatchNorm2d):
            gamma, beta = bn_affine(rng, cell.gamma.shape, name.endswith("bn3"))
            cell.gamma.set_data(ms.Tensor(gamma))
            cell.beta.set_data(ms.Tensor(beta))
    model.set_train(True)  # momentum 0: the moving statistics become this batch's
    model(ms.Tensor(images(64, 4, seed=5)))
    model.set_train(False)
    x = images()
    scale = 6.0 / float(np.abs(model(ms.Tensor(x)).asnumpy()).max())
    model.classifier.weight.set_data(ms.Tensor(model.classifier.weight.asnumpy() * scale))
    model.classifier.bias.set_data(ms.Tensor(model.classifier.bias.asnumpy() * scale))
    reference = model(ms.Tensor(x)).asnumpy()
    assert reference.shape == (2, classes) and 1 < np.abs(reference).max() < 10
    checkpoint = tmp_path / "checkpoint.ckpt"
    ms.save_checkpoint(model, str(checkpoint))  # MindCV's writer is MindSpore's
    check_everywhere(checkpoint, "mindspore", expected, x, reference, tmp_path)


# --- jittor.models ---------------------------------------------------------------------------------


@pytest.mark.jittor
def test_jittor_models_checkpoint_converts_to_every_framework(tmp_path):
    import zoo.frameworks.jittor  # noqa: F401  configures Jittor before its first import

    import jittor as jt
    from jittor.models import res2net

    jt.set_global_seed(0)
    model = res2net.res2net50_26w_4s()
    rng = np.random.default_rng(0)
    for name, module in model.named_modules():
        if isinstance(module, jt.nn.BatchNorm):
            weight, bias = bn_affine(rng, module.weight.shape, name.endswith("bn3"))
            module.weight.assign(jt.array(weight))
            module.bias.assign(jt.array(bias))
            module.momentum = 1.0  # Jittor, like torch: running = (1 - m) * running + m * batch
    model.train()
    model(jt.array(images(64, 4, seed=5))).sync()
    model.eval()
    x = images()
    scale = 6.0 / float(np.abs(model(jt.array(x)).numpy()).max())
    model.fc.weight.assign(model.fc.weight * scale)
    model.fc.bias.assign(model.fc.bias * scale)
    reference = model(jt.array(x)).numpy()
    assert 1 < np.abs(reference).max() < 10
    checkpoint = tmp_path / "checkpoint.pkl"
    model.save(str(checkpoint))  # Jittor's own writer, as its hub files were written
    check_everywhere(checkpoint, "jittor", "res2net50_26w_4s", x, reference, tmp_path)


# --- OpenMMLab (not installable here: checkpoints by their documented names) ----------------------


@pytest.mark.torch
@pytest.mark.parametrize("name,layout", [
    ("res2net50_14w_8s", "mmpretrain"),        # the 7x7 stem of MMPretrain's released models
    ("res2net50_v1b_26w_4s", "mmpretrain"),    # deep stem: stem.{0,1,2}.{conv,bn}
    ("res2net101_v1d_26w_4s", "mmdet"),        # MMDetection's backbone: stem.0/1/3/4/6/7, no head
])
def test_openmmlab_checkpoints_by_their_documented_names(name, layout, tmp_path):
    import torch
    from safetensors.numpy import load_file

    from zoo.converters.layouts import to_layout
    from zoo.frameworks.torch.calibrate import realistic_state
    from zoo.spec import get_spec

    canonical = realistic_state(get_spec(name))
    peer = {k: torch.from_numpy(v) for k, v in to_layout(canonical, get_spec(name), layout).items()}
    if layout == "mmpretrain":
        assert "head.fc.weight" in peer and all(k.startswith(("backbone.", "head.")) for k in peer)
        checkpoint = {"meta": {"epoch": 100}, "state_dict": peer}
    else:  # a whole detector: the backbone under "backbone.", beside the detector's own parts
        assert "stem.7.running_var" in peer and not any(k.startswith("fc.") for k in peer)
        checkpoint = {"state_dict": {**{f"backbone.{k}": v for k, v in peer.items()},
                                     "neck.lateral_convs.0.conv.weight": torch.zeros(256, 512, 1, 1),
                                     "rpn_head.rpn_conv.weight": torch.zeros(256, 256, 3, 3)}}
    path = tmp_path / "checkpoint.pth"
    torch.save(checkpoint, path)
    out = tmp_path / "out.safetensors"
    result = convert(path, "safetensors", out)
    assert f"{name} (identified by the tensor names and shapes, {layout} layout)" in result.stderr
    returned = load_file(str(out))
    assert returned.keys() == canonical.keys() and all(np.array_equal(returned[k], canonical[k]) for k in canonical)
    if layout == "mmdet":
        assert "left out 2 entries" in result.stderr  # the neck and the RPN head
