"""PaddlePaddle port: native layers from the spec, conversion, and logit parity with PyTorch.

This session imports paddle only; the PyTorch reference weights and logits come from torch
worker processes (tests/reference.py).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import zoo
from zoo.convert import convert
from zoo.converters.tables import to_native
from zoo.errors import CheckpointFormatError, CheckpointMismatchError, UnsafeCheckpointError
from zoo.spec import Res2NetSpec, canonical_layout, list_variants, param_count

from .reference import PARITY_LIMIT, calibrated, images, relative_diff, torch_logits

pytestmark = pytest.mark.paddle

NAMES = [v.name for v in list_variants()]
FAMILIES_224 = ["res2net50_26w_4s", "res2net50_v1b_26w_4s", "res2next50", "res2net_dla60"]


@pytest.fixture(scope="module")
def paddle():
    import paddle

    paddle.set_device("cpu")
    return paddle


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Realistic weights for every variant (64 px) and one per family at 224 px, converted to
    .pdparams through `zoo convert`, with the torch logits of each."""
    from zoo.frameworks.paddle.io import write_native  # paddle only in this session, not at collection
    d = tmp_path_factory.mktemp("paddle")
    x64, x224 = images(d / "x64.npy", 64), images(d / "x224.npy", 224, batch=1)
    weights = calibrated(d, NAMES, 64, pth=True)
    weights_224 = {f"{n}@224": p for n, p in calibrated(d, FAMILIES_224, 224).items()}
    runs = {n: (n, p, x64) for n, p in weights.items()}
    runs |= {k: (k.split("@")[0], p, x224) for k, p in weights_224.items()}
    reference = torch_logits(d, runs)
    native = {}
    for i, (key, (name, source, _)) in enumerate(runs.items()):
        out = d / f"{key}.pdparams"
        if i % 4 == 0:  # the user's path: `zoo convert` from an official-style .pth, workers and all
            native[key] = convert(source.with_suffix(".pth") if key in weights else source, "paddle",
                                  model=name, out=out)
        else:  # the same writer, in this process (saves a worker start per variant)
            write_native(str(source), str(out))
            native[key] = out
    return {"dir": d, "runs": runs, "reference": reference, "native": native, "weights": weights}


def _logits(paddle, name, weights, inputs, static=False):
    model = zoo.create_model(name, framework="paddle", weights=str(weights))
    model.eval()
    if static:
        spec = paddle.static.InputSpec([None, 3, None, None], "float32")
        model = paddle.jit.to_static(model, input_spec=[spec], full_graph=True)
    with paddle.no_grad():
        return model(paddle.to_tensor(np.load(inputs))).numpy()


@pytest.mark.parametrize("name", NAMES)
def test_native_layout_follows_the_rename_table(paddle, name):
    spec = zoo.get_spec(name)
    model = zoo.create_model(name, framework="paddle")
    expected = {k: v.shape for k, v in to_native({t.name: np.empty(t.shape, np.float32)
                                                  for t in canonical_layout(spec)}, spec, "paddle").items()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    trainable = sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)
    assert trainable == param_count(spec)
    if spec.topology == "resnet":
        assert tuple(model.state_dict()["fc.weight"].shape) == (2048, spec.num_classes)  # [in, out]


@pytest.mark.parametrize("name", NAMES)
def test_logits_match_torch(paddle, world, name):
    reference = world["reference"][name]
    assert 1.0 < np.abs(reference).max() < 100.0  # realistic weights: logits of order 1-10
    got = _logits(paddle, name, world["native"][name], world["runs"][name][2])
    assert relative_diff(got, reference) <= PARITY_LIMIT


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES_224)
def test_logits_match_torch_at_224_dynamic_and_static(paddle, world, name):
    key = f"{name}@224"
    reference = world["reference"][key]
    for static in (False, True):
        got = _logits(paddle, name, world["native"][key], world["runs"][key][2], static=static)
        assert relative_diff(got, reference) <= PARITY_LIMIT, f"static={static}"


def test_to_static_at_64(paddle, world):
    name = "res2next_dla60"
    got = _logits(paddle, name, world["native"][name], world["runs"][name][2], static=True)
    assert relative_diff(got, world["reference"][name]) <= PARITY_LIMIT


def test_pdparams_loads_with_paddles_own_api(paddle, world):
    name = "res2net101_v1b_26w_4s"
    model = zoo.create_model(name, framework="paddle")
    missing, unexpected = model.set_state_dict(paddle.load(str(world["native"][name])))
    assert not missing and not unexpected


@pytest.mark.parametrize("name", ["res2net50_26w_4s", "res2net_dla60", "se_res2net50_26w_4s"])
def test_round_trip_to_safetensors_and_torch_is_bit_exact(world, name, tmp_path):
    from safetensors.numpy import load_file

    back = convert(world["native"][name], "safetensors", out=tmp_path / "back.safetensors")
    original, returned = load_file(str(world["weights"][name])), load_file(str(back))
    assert original.keys() == returned.keys()
    assert all(np.array_equal(original[k], returned[k]) for k in original)
    # ... and on to a torch file, read back by a torch worker: still the same bits.
    pth = convert(back, "torch", out=tmp_path / "back.pth")
    again = load_file(str(convert(pth, "safetensors", out=tmp_path / "again.safetensors")))
    assert all(np.array_equal(original[k], again[k]) for k in original)


def test_model_is_identified_without_model_flag(world, tmp_path):
    # From the official file name ...
    official = tmp_path / "res2net101_v1b_26w_4s-0812c246.pth"
    os.link(world["weights"]["res2net101_v1b_26w_4s"].with_suffix(".pth"), official)
    out = convert(official, "paddle", out=tmp_path / "a.pdparams")
    # ... and from the shapes alone, in a native file with no metadata and a neutral name.
    neutral = tmp_path / "weights.pdparams"
    os.link(out, neutral)
    back = convert(neutral, "safetensors", out=tmp_path / "b.safetensors")
    from safetensors import safe_open

    with safe_open(str(back), "numpy") as f:
        assert f.metadata()["zoo.model"] == "res2net101_v1b_26w_4s"


def test_wrong_variant_truncated_and_hostile_files(world, tmp_path):
    with pytest.raises(CheckpointMismatchError, match="layer1.0.conv1.weight"):
        zoo.create_model("res2net50_14w_8s", framework="paddle", weights=str(world["native"]["res2net50_26w_4s"]))
    data = world["native"]["res2net50_26w_4s"].read_bytes()
    cut = tmp_path / "cut.pdparams"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointFormatError, match="truncated"):
        zoo.create_model("res2net50_26w_4s", framework="paddle", weights=str(cut))
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pdparams"
    evil.write_bytes(pickle.dumps({"conv1.weight": _Payload(str(marker))}, protocol=4))
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system"):
        zoo.create_model("res2net50_26w_4s", framework="paddle", weights=str(evil))
    assert not marker.exists()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cli_convert_errors_leave_nothing_behind(world, tmp_path):
    out = tmp_path / "out.pdparams"
    result = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "convert", str(world["weights"]["res2net50_26w_4s"]),
         "--to", "paddle", "--model", "res2net50_14w_8s", "-o", str(out)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 5
    assert result.stderr.strip().startswith("error: checkpoint does not fit res2net50_14w_8s")
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_trainable_features_and_custom_spec(paddle):
    spec = Res2NetSpec((1, 1), base_width=8, scale=3, cardinality=2, num_classes=4, se=True)
    model = zoo.create_model(spec, framework="paddle")
    opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters())
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32))
    y = paddle.to_tensor(np.arange(4))
    losses = []
    for _ in range(5):
        loss = paddle.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    feats = zoo.create_model("res2net_dla60", framework="paddle", features_only=True)
    feats.eval()
    shapes = [tuple(f.shape[1:]) for f in feats(paddle.zeros([1, 3, 64, 64]))]
    assert shapes == [(128, 16, 16), (256, 8, 8), (512, 4, 4), (1024, 2, 2)]
