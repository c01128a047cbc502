"""`zoo train` on real data no one here wrote (scikit-learn's digits as PNG ImageFolders, 32 px):
accuracy in every framework, the same loss curve in every framework, a resume after SIGKILL that
ends where an uninterrupted run ends, RUNDIR's files, and every bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from zoo.frameworks import FRAMEWORKS
from zoo.parity import PARITY_LIMIT
from zoo.spec import Res2NetSpec, canonical_layout

from .digits import write_digits

TINY = Res2NetSpec((1, 1, 1, 1), base_width=8, scale=4, num_classes=10)
FAST = ["--image-size", "32", "--batch-size", "32", "--lr", "0.05"]


def each_framework(*names):
    return [pytest.param(fw, marks=getattr(pytest.mark, fw)) for fw in (names or FRAMEWORKS)]


def zoo_cli(*args, env=None, timeout=1800, **kwargs):
    return subprocess.run([sys.executable, "-m", "zoo.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    train, val = write_digits(root)
    spec = root / "tiny.json"
    spec.write_text(TINY.to_json())
    # 16 images a class: one epoch of 10 steps at batch 16, for the curve and resume checks
    small = root / "small"
    for folder in sorted(train.iterdir()):
        (small / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:16]:
            shutil.copy(image, small / folder.name / image.name)
    return {"train": train, "val": val, "spec": spec, "small": small}


def metrics(rundir: Path) -> list[dict]:
    return [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("framework", each_framework())
def test_a_custom_spec_learns_digits_in_every_framework(framework, digits, tmp_path):
    from safetensors import safe_open

    from zoo.converters.read import read_canonical

    run = tmp_path / "run"
    result = zoo_cli("train", digits["spec"], "-f", framework, "--data", digits["train"], "--val", digits["val"],
                     "-o", run, "--epochs", "2", *FAST, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["top1"] >= 80.0, summary  # chance is 10%
    rows = metrics(run)
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 2 * (1497 // 32) + 1))
    assert {"step", "epoch", "loss", "lr"} <= set(steps[0]) and steps[-1]["epoch"] == 2
    assert [r["epoch"] for r in rows if "top1" in r] == [1, 2]
    assert steps[-1]["loss"] < steps[0]["loss"] / 2
    with safe_open(str(run / "model.safetensors"), "np") as f:
        meta = f.metadata()
    assert json.loads(meta["zoo.classes"]) == [f"digit{i}" for i in range(10)]
    assert json.loads(meta["zoo.recipe"])["name"] == "finetune" and meta["zoo.trained_with"] == framework
    canonical = read_canonical(run / "model.safetensors", TINY)
    native = read_canonical(run / f"model{FRAMEWORKS[framework].extension}", TINY)
    assert all(np.array_equal(native[t.name], canonical[t.name]) for t in canonical_layout(TINY))
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.torch
def test_res2net50_fine_tunes_from_its_1000_class_weights(digits, tmp_path):
    from .reference import calibrated

    weights = calibrated(tmp_path, ["res2net50_26w_4s"], 32)["res2net50_26w_4s"]
    run = tmp_path / "run"
    result = zoo_cli("train", "res2net50_26w_4s", "-f", "torch", "--data", digits["train"], "--val", digits["val"],
                     "--weights", weights, "-o", run, "--epochs", "2", *FAST, "--json")
    assert result.returncode == 0, result.stderr
    assert "new 10-class head drawn from seed 0" in result.stderr
    assert json.loads(result.stdout)["top1"] >= 80.0


def test_every_framework_takes_the_same_steps(digits, tmp_path):
    """Same seed, same starting weights, augmentation off: every framework's first step sees the
    same batch and gives torch's loss; each of the first 10 steps of zoo train's batches, started
    from torch's state, matches torch's within the limits of `zoo verify --train` (free-running, a
    ReLU input within rounding of 0 can take either side and the curves part after a few steps)."""
    curves = {}
    small = ["--data", digits["small"], "--image-size", "32", "--batch-size", "16", "--lr", "0.02"]
    for framework in FRAMEWORKS:
        run = tmp_path / framework
        result = zoo_cli("train", digits["spec"], "-f", framework, *small, "-o", run, "--epochs", "1")
        assert result.returncode == 0, result.stderr
        curves[framework] = np.array([r["loss"] for r in metrics(run)])
    reference = curves.pop("torch")
    assert len(reference) == 10 and reference[-1] < reference[0]
    for framework, losses in curves.items():
        assert abs(losses[0] - reference[0]) <= PARITY_LIMIT * max(1.0, reference[0]), framework
        assert np.isfinite(losses).all() and losses[-1] < losses[0], framework
        check = zoo_cli("verify", digits["spec"], "-f", framework, "--train", *small, "--steps", "10",
                        "--weights", tmp_path / "torch" / "init.safetensors", "--json")
        assert check.returncode == 0, check.stdout + check.stderr
        (result,) = json.loads(check.stdout)
        assert result["passed"] and result["steps"] == 10, result


@pytest.mark.parametrize("framework", each_framework("torch"))
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(framework, digits, tmp_path):
    from safetensors.numpy import load_file

    args = ["train", digits["spec"], "-f", framework, "--data", digits["small"], "--epochs", "2",
            "--image-size", "32", "--batch-size", "16", "--lr", "0.02", "--checkpoint-every", "3"]
    whole = tmp_path / "whole"
    assert zoo_cli(*args, "-o", whole).returncode == 0
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", *map(str, args), "-o", str(cut)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # kill the whole run (CLI and worker) in the middle of epoch 2
        lines = (cut / "metrics.jsonl").read_text().splitlines() if (cut / "metrics.jsonl").exists() else []
        if len(lines) >= 14:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = len((cut / "metrics.jsonl").read_text().splitlines())
    assert 14 <= kept < 20, kept
    again = zoo_cli(*args, "-o", cut)
    assert again.returncode == 0, again.stderr
    resumed = int(again.stderr.split(" at step ", 1)[1].split()[0])
    assert resumed in (12, 15, 18) and resumed <= kept, again.stderr  # the last checkpoint before the kill
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)  # bit-exact on CPU
    taken = [[(r["step"], r["loss"], r["lr"]) for r in metrics(run)] for run in (whole, cut)]
    assert taken[0] == taken[1] and len(taken[0]) == 20
    assert not [p.name for p in cut.iterdir() if p.name.startswith(".")], "a partial file was left"


def _bad(digits, tmp: Path):
    empty = tmp / "empty"
    empty.mkdir()
    hollow = tmp / "hollow"
    shutil.copytree(digits["small"], hollow)
    for image in (hollow / "digit3").iterdir():
        image.unlink()
    corrupt = tmp / "corrupt"
    shutil.copytree(digits["small"], corrupt)
    broken = sorted((corrupt / "digit7").iterdir())[2]
    broken.write_bytes(broken.read_bytes()[:40])
    afile = tmp / "afile"
    afile.write_text("x")
    other = tmp / "other"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"model": "res2net50_26w_4s", "spec": "{}"}))
    return {
        "empty": (["--data", empty], 2, f"--data {empty}: no class folders"),
        "missing": (["--data", tmp / "nowhere"], 2, "no such directory"),
        "class without images": (["--data", hollow], 2, "class folder 'digit3' holds no images"),
        "corrupt image": (["--data", corrupt], 4, f"{broken}: not a readable image"),
        "num classes": (["--data", digits["small"], "--num-classes", "7"], 2,
                        "--num-classes 7 disagrees with --data"),
        "unwritable rundir": (["--data", digits["small"], "-o", afile / "run"], 8, "it is a file, not a directory"),
        "another run": (["--data", digits["small"], "-o", other], 2, f"{other} holds a run of res2net50_26w_4s"),
        "nothing to resume": (["--data", digits["small"], "--resume"], 2, "no run to resume"),
    }


CASES = ["empty", "missing", "class without images", "corrupt image", "num classes", "unwritable rundir",
         "another run", "nothing to resume"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_before_any_work(case, digits, tmp_path):
    args, code, words = _bad(digits, tmp_path)[case]
    run = tmp_path / "run"
    if "-o" not in args:
        args = [*args, "-o", run]
    result = zoo_cli("train", digits["spec"], "-f", "paddle", *args, "--image-size", "32")
    assert result.returncode == code, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr, result.stderr
    assert not run.exists(), "nothing may be written for a run that cannot start"


@pytest.mark.torch
def test_pretrained_starts_from_the_hub_file_timm_left(digits, tmp_path):
    """--pretrained takes the variant's default source: timm's Hub copy, here from a Hugging Face
    cache filled by huggingface_hub itself, the Hub out of reach. The new head is the only change."""
    from safetensors.numpy import load_file

    from .hub_server import HubServer
    from .test_hf import REPO, hub_weights

    data = hub_weights(3)
    with HubServer() as hub:
        hub.repo(REPO).add("c" * 40, {"model.safetensors": data}, "main")
        code = f"import huggingface_hub as h; h.hf_hub_download({REPO!r}, 'model.safetensors')"
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                       env={**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": hub.url})
    run = tmp_path / "run"
    result = zoo_cli("train", "res2net50_26w_4s", "-f", "torch", "--pretrained", "--data", digits["small"], "-o", run,
                     "--epochs", "1", "--image-size", "32", "--batch-size", "16",
                     env={"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9",
                          "ZOO_HOME": str(tmp_path / "zoo")})
    assert result.returncode == 0, result.stderr
    assert "released weights of res2net50_26w_4s, new 10-class head drawn from seed 0" in result.stderr
    (tmp_path / "hub.safetensors").write_bytes(data)
    init, hub_file = load_file(str(run / "init.safetensors")), load_file(str(tmp_path / "hub.safetensors"))
    assert init["fc.weight"].shape == (10, 2048)
    same = [k for k in init if not k.startswith("fc.")]
    assert same and all(np.array_equal(init[k], hub_file[k]) for k in same)
