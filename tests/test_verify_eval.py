"""`zoo verify` and `zoo eval` as a user runs them.

The evaluation test trains a small Res2Net (custom spec) in torch on scikit-learn's digits,
writes them in the ImageNet folder layout, converts the weights to every framework, and checks
that `zoo eval` gives exactly the torch predictions in each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from zoo.frameworks import FRAMEWORKS
from zoo.spec import Res2NetSpec

pytestmark = pytest.mark.torch

FRAMEWORK_NAMES = list(FRAMEWORKS)
TINY = Res2NetSpec((1, 1, 1, 1), base_width=8, scale=4, num_classes=10)
IMAGE = 32


def zoo_cli(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.mark.parametrize("framework", FRAMEWORK_NAMES)
def test_verify_passes(framework):
    result = zoo_cli("verify", "--framework", framework, "-m", "res2net50_v1b", "-m", "res2next_dla60", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["model"] for r in rows] == ["res2net50_v1b_26w_4s", "res2next_dla60"]
    for r in rows:
        assert r["passed"] and r["top1_agreement"] == 1.0
        assert r["weights"] == "random, calibrated BN"
        assert 0 < r["logits_rel"] <= 1e-4 or (framework == "torch" and r["logits_rel"] == 0)
        assert len(r["stages"]) == (5 if r["model"].startswith("res2net50") else 6)


RUNTIME_MODES = [(fw.name, mode) for fw in FRAMEWORKS.values() for mode, _ in fw.runtimes]


@pytest.mark.parametrize("framework, mode", RUNTIME_MODES)
def test_verify_in_the_deployment_runtime(framework, mode):
    """The deployment runtimes as verify modes: the exported graph of every stage output and of
    the logits, run by the runtime, within the limit. One model, the one furthest from a ResNet
    (DLA's trees, grouped convolutions): every variant's export is checked in test_export."""
    result = zoo_cli("verify", "-f", framework, "--mode", mode, "res2next_dla60", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["mode"] for r in rows] == [mode]
    assert all(r["passed"] and 0 < r["logits_rel"] <= 1e-4 and len(r["stages"]) == 6 for r in rows)


def test_every_mode_is_named_in_help_and_others_are_refused():
    text = zoo_cli("verify", "--help", env={"COLUMNS": "300"}).stdout
    for fw in FRAMEWORKS.values():
        for mode in fw.modes:
            assert mode in text, (fw.name, mode)
    result = zoo_cli("verify", "-f", "paddle", "--mode", "onnxruntime", "res2net50")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: paddle has no mode 'onnxruntime'; its modes: dynamic, to_static, inference"


def test_verify_catches_a_broken_rename_rule(tmp_path):
    """A port whose table swaps BatchNorm mean and variance converts "fine" and round-trips,
    but verify sees the logits move and fails."""
    (tmp_path / "sitecustomize.py").write_text(
        "from zoo.converters.tables import TABLES, Rule\n"
        "TABLES['paddle']['bn_mean'], TABLES['paddle']['bn_var'] = Rule('_variance'), Rule('_mean')\n")
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = zoo_cli("verify", "--framework", "paddle", "-m", "res2net50_26w_4s", env=env)
    assert result.returncode == 9
    assert "FAIL" in result.stdout
    # The first stage to leave the limit is where the port goes wrong: the stem's BatchNorm.
    assert result.stderr.strip().splitlines()[-1] == \
        "error: 1 of 1 model(s) outside the limit: res2net50_26w_4s (first at act1)"
    row = next(line for line in result.stdout.splitlines() if line.startswith("res2net50_26w_4s"))
    assert row.split()[-2:] == ["act1", "FAIL"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Digits as 36x36 RGB JPEGs in DIR/<class>/, a torch-trained tiny Res2Net, its canonical
    weights and the torch predictions."""
    import torch
    from PIL import Image
    from safetensors.numpy import save_file
    from sklearn.datasets import load_digits

    import zoo
    from zoo.evaluate import list_samples, preprocess
    from zoo.spec import Preprocessing

    d = tmp_path_factory.mktemp("digits")
    data = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data.images))
    val, train = order[:300], order[300:]
    root = d / "val"
    for split, indices in (("train", train), ("val", val)):
        for i in indices:
            folder = d / split / f"n{data.target[i]:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (data.images[i] / 16.0 * 255).astype(np.uint8)
            rgb = np.stack([pixels, 255 - pixels, pixels // 2], -1)
            Image.fromarray(rgb).resize((36, 36), Image.BILINEAR).save(folder / f"{i:05d}.JPEG", quality=95)
    pre = Preprocessing(input_size=IMAGE)
    samples, _ = list_samples(d / "train")
    x = torch.from_numpy(np.stack([preprocess(p, pre) for p, _ in samples]))
    y = torch.tensor([label for _, label in samples])
    torch.manual_seed(0)
    model = zoo.create_model(TINY, framework="torch")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(4):
        model.train()
        for idx in torch.randperm(len(x)).split(64):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    weights = d / "tiny.safetensors"
    save_file({k: v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")},
              str(weights), metadata={"zoo.model": "tiny", "zoo.spec": TINY.to_json()})
    spec_file = d / "tiny.json"
    spec_file.write_text(TINY.to_json())
    val_samples, _ = list_samples(root)
    with torch.no_grad():
        logits = model(torch.from_numpy(np.stack([preprocess(p, pre) for p, _ in val_samples])))
    labels = np.array([label for _, label in val_samples])
    predictions = logits.argmax(1).numpy()
    return {"root": root, "weights": weights, "spec": spec_file, "predictions": predictions,
            "top1": 100.0 * (predictions == labels).mean(), "dir": d}


def test_torch_model_learned_the_digits(digits):
    assert digits["top1"] > 60.0  # chance is 10%


@pytest.mark.parametrize("framework", FRAMEWORK_NAMES)
def test_eval_gives_the_torch_predictions_in_every_framework(digits, framework, tmp_path):
    from zoo.convert import EXTENSIONS

    native = tmp_path / f"tiny{EXTENSIONS[framework]}"
    converted = zoo_cli("convert", str(digits["weights"]), "--to", framework, "-o", str(native))
    assert converted.returncode == 0, converted.stderr
    predictions = tmp_path / "pred.npy"
    result = zoo_cli("eval", str(digits["spec"]), "--framework", framework, "--data", str(digits["root"]),
                     "--weights", str(native), "--image-size", str(IMAGE), "--batch-size", "64",
                     "--predictions", str(predictions), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 300 and report["framework"] == framework
    np.testing.assert_array_equal(np.load(predictions), digits["predictions"])
    assert report["top1"] == pytest.approx(digits["top1"])
    assert report["images_per_s"] > 0
    # the default is the exact mode measured fastest, and the command says which one ran
    default = FRAMEWORKS[framework].eval_mode
    assert report["mode"] == default
    assert f"zoo: {framework} runs in its {default} mode" in result.stderr


OTHER_MODES = [(fw.name, m) for fw in FRAMEWORKS.values() for m in fw.modes if m != fw.eval_mode]


@pytest.mark.parametrize("framework, mode", OTHER_MODES)
def test_eval_every_mode_gives_the_torch_predictions(digits, framework, mode):
    result = zoo_cli("eval", str(digits["spec"]), "-f", framework, "--mode", mode, "--data", str(digits["root"]),
                     "--weights", str(digits["weights"]), "--image-size", str(IMAGE), "--batch-size", "100",
                     "--predictions", str(digits["dir"] / f"{framework}-{mode}.npy"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mode"] == mode and "runs in its" not in result.stderr
    np.testing.assert_array_equal(np.load(digits["dir"] / f"{framework}-{mode}.npy"), digits["predictions"])


def test_eval_list_file_and_limit(digits, tmp_path):
    samples = sorted(digits["root"].rglob("*.JPEG"))[:20]
    listing = digits["root"] / "val.txt"
    listing.write_text("".join(f"{p.relative_to(digits['root'])} {int(p.parent.name[1:])}\n" for p in samples))
    result = zoo_cli("eval", "--weights", str(digits["weights"]), "--data", str(listing), "--limit", "10",
                     "--image-size", str(IMAGE), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 10 and report["model"] == "tiny"


def test_eval_errors_are_one_line(tmp_path):
    result = zoo_cli("eval", "res2net50", "--data", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing'}: no such directory or list file"


@pytest.mark.gpu
def test_torch_gpu_parity():
    result = zoo_cli("verify", "--framework", "torch", "-m", "res2net50_26w_4s", "--device", "gpu", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["passed"]


@pytest.mark.imagenet
def test_real_imagenet_accuracy():
    data = os.environ["ZOO_IMAGENET"]
    result = zoo_cli("eval", "res2net50_26w_4s", "--data", data, "--limit", "1000", "--json", timeout=7200)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["top1"] > 70.0
