"""`zoo cam`: Grad-CAM in every framework, on photographs no one here wrote (scikit-image's
samples), with realistic random weights (calibrated BatchNorm statistics, logits of order 1-10):
the same weights give the same map in every framework, the map follows the object, bad requests
are refused before any work with nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.frameworks import FRAMEWORKS, REFERENCE

from .reference import calibrated

MODEL = "res2net50_26w_4s"
PHOTOS = ("chelsea", "coffee", "astronaut")   # a cat, a cup, a person
MAP_LIMIT = 1e-3  # max |d| / max |reference map|, per image


def zoo_cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "zoo.cli", *map(str, args)], capture_output=True, text=True,
                          env=os.environ, timeout=timeout)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    import skimage.data

    d = tmp_path_factory.mktemp("cam")
    photos = []
    for name in PHOTOS:
        photos.append(d / f"{name}.png")
        Image.fromarray(getattr(skimage.data, name)()).save(photos[-1])
    weights = calibrated(d, [MODEL], size=224)[MODEL]
    images = [a for p in photos for a in ("--image", p)]
    out = zoo_cli("cam", MODEL, "-f", REFERENCE, "--weights", weights, *images, "-o", d / "ref.png",
                  "--map", d / "ref.npy", "--json")
    assert out.returncode == 0, out.stderr
    return {"dir": d, "photos": photos, "images": images, "weights": weights, "reference": json.loads(out.stdout),
            "maps": np.load(d / "ref.npy")}


@pytest.mark.parametrize("framework", [pytest.param(fw, marks=getattr(pytest.mark, fw)) for fw in FRAMEWORKS])
def test_the_same_weights_give_the_same_map_in_every_framework(scene, framework, tmp_path):
    native = tmp_path / f"weights{FRAMEWORKS[framework].extension}"
    assert zoo_cli("convert", scene["weights"], "--to", framework, "-o", native).returncode == 0
    out = zoo_cli("cam", MODEL, "-f", framework, "--weights", native, *scene["images"], "-o", tmp_path / "cam.png",
                  "--map", tmp_path / "cam.npy", "--json")
    assert out.returncode == 0, out.stderr
    result, reference = json.loads(out.stdout), scene["reference"]
    assert [r["class"] for r in result["images"]] == [r["class"] for r in reference["images"]]
    assert all(r["label"] and not r["label"].startswith("class ") for r in result["images"])  # ImageNet's names
    maps, ref = np.load(tmp_path / "cam.npy"), scene["maps"]
    assert maps.shape == ref.shape == (3, 7, 7) and maps.dtype == np.float32
    for got, want in zip(maps, ref):
        assert want.max() > 0 and np.abs(got - want).max() / want.max() <= MAP_LIMIT
    with Image.open(tmp_path / "cam.png") as picture:  # one tile per image, each the size the model saw
        assert picture.format == "PNG" and picture.size == (3 * 224, 224)


def _on_noise(patch: np.ndarray, top: int, left: int, size: int, seed: int) -> np.ndarray:
    canvas = np.random.default_rng(seed).integers(0, 256, (size, size, 3)).astype(np.uint8)
    canvas[top:top + patch.shape[0], left:left + patch.shape[1]] = patch
    return canvas


@pytest.mark.torch
def test_the_map_follows_the_object(scene, tmp_path):
    """A detector for the cat's face: class 7's row of the classifier set to the face's mean
    layer4 feature minus the background's (the face centred on noise). With the face pasted into
    one corner of another noise image, then into the other, the map's peak moves with it (layer4's
    7x7 map: the 96-px face covers the top-left 3x3 cells, or the bottom-right ones)."""
    import skimage.data
    import torch
    from safetensors import safe_open
    from safetensors.numpy import save_file

    import zoo
    from zoo.evaluate import normalize
    from zoo.spec import Preprocessing

    face = np.asarray(Image.fromarray(skimage.data.chelsea()[30:230, 120:320]).resize((96, 96)))
    model = zoo.create_model(MODEL, "torch", weights=str(scene["weights"])).eval()
    with torch.no_grad():
        centred = normalize(_on_noise(face, 64, 64, 224, seed=100), Preprocessing())
        features = model.forward_features(torch.from_numpy(centred[None]))[-1][0].numpy()
    inside = np.zeros((7, 7), bool)
    inside[2:5, 2:5] = True
    with safe_open(scene["weights"], "numpy") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors["fc.weight"][7] = features[:, inside].mean(1) - features[:, ~inside].mean(1)
    detector = tmp_path / "detector.safetensors"
    save_file(tensors, detector, metadata)
    images = []
    for name, offset in (("top-left", 0), ("bottom-right", 224 - 96)):
        # a 256-px image: the model sees its central 224 px (the variant's crop), so paste within those
        images += ["--image", tmp_path / f"{name}.png"]
        Image.fromarray(_on_noise(face, 16 + offset, 16 + offset, 256, seed=1)).save(images[-1])
    out = zoo_cli("cam", MODEL, "-f", REFERENCE, "--weights", detector, *images, "--class", 7,
                  "-o", tmp_path / "moved.png", "--map", tmp_path / "m.npy")
    assert out.returncode == 0, out.stderr
    peaks = [np.unravel_index(m.argmax(), m.shape) for m in np.load(tmp_path / "m.npy")]
    assert max(peaks[0]) <= 2 and min(peaks[1]) >= 4, peaks


@pytest.mark.torch
def test_gradcam_plus_plus_is_a_method_of_its_own(scene, tmp_path):
    out = zoo_cli("cam", MODEL, "--weights", scene["weights"], "--image", scene["photos"][0], "--method",
                  "gradcam++", "--layer", "layer3", "-o", tmp_path / "pp.png", "--map", tmp_path / "pp.npy", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["layer"] == "layer3" and np.load(tmp_path / "pp.npy").shape == (1, 14, 14)


@pytest.mark.torch
@pytest.mark.parametrize("change, code, message", [
    (["--image", "/no/such.png"], 4, "/no/such.png: no such file"),
    (["--image", "NOT_AN_IMAGE"], 4, "not a readable image"),
    (["--layer", "layer9"], 2, "has no stage 'layer9'; its stages: act1, layer1, layer2, layer3, layer4"),
    (["--class", "1000"], 2, "--class 1000 is out of range: res2net50_26w_4s has classes 0 to 999"),
    (["-o", "UNDER_A_FILE"], 8, "cannot write"),
    (["-o", "/proc/zoo-cam.png"], 8, "cannot write"),
    (["--method", "lime"], 2, "unknown method 'lime'; choose one of: gradcam, gradcam++"),
])
def test_bad_requests_are_refused_with_nothing_written(scene, tmp_path, change, code, message):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    regular = tmp_path / "file"
    regular.write_text("x")
    args = {"--image": str(scene["photos"][0]), "-o": str(tmp_path / "out.png")}
    extra = []
    for key, value in zip(change[::2], change[1::2]):
        value = {"NOT_AN_IMAGE": str(text), "UNDER_A_FILE": str(regular / "out.png")}.get(value, value)
        if key in args:
            args[key] = value
        else:
            extra += [key, value]
    before = sorted(os.listdir(tmp_path))
    result = zoo_cli("cam", MODEL, "--weights", scene["weights"], *[x for kv in args.items() for x in kv], *extra,
                     "--map", tmp_path / "out.npy", timeout=120)
    assert result.returncode == code, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and message in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error")]) == 1
    assert sorted(os.listdir(tmp_path)) == before
