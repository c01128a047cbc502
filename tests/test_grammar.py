"""One command grammar, problems refused before any work, errors that stay whole across the
worker boundary, and progress a user can see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .isolation import hiding
from .reference import calibrated

NAME = "res2net50_26w_4s"


def zoo_cli(*args, env=None, timeout=900) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "zoo.cli", *map(str, args)], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=timeout)
    return result, time.perf_counter() - start


def error_line(result, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(errors[0]) < 200, errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("grammar")
    return calibrated(d, [NAME], 64)[NAME]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (d / label).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d / label / f"{i}.png")
    return d


@pytest.mark.parametrize("args,code,needle", [
    (["verify", NAME, "-f", "paddle", "--mode", "nonsense"], 2, "its modes: dynamic, to_static"),
    (["verify", NAME, "-f", "paddle", "--mode", "graph"], 2, "paddle has no mode 'graph'"),
    (["eval", "-m", NAME, "-f", "mindspore", "--mode", "to_static", "--data", "."], 2, "its modes: pynative, graph"),
    (["verify", NAME, "-f", "paddle", "--device", "tpu"], 2, "choose one of: cpu, gpu, ascend"),
    (["verify", NAME, "-f", "paddle", "--weights", "/no/such.pth"], 4, "no such file"),
    (["eval", NAME, "-f", "paddle", "--data", "/no/such/dir"], 2, "no such directory"),
    (["verify", "res2net5O", "-f", "paddle"], 2, "did you mean"),
])
def test_bad_requests_are_refused_before_any_work(args, code, needle):
    result, seconds = zoo_cli(*args)
    assert needle in error_line(result, code)
    assert seconds < 10  # no reference computed, no framework imported


@pytest.mark.skipif(bool(__import__("glob").glob("/dev/nvidia[0-9]*")), reason="this machine has a CUDA device")
def test_a_missing_device_is_refused_at_once():
    result, seconds = zoo_cli("verify", NAME, "-f", "paddle", "--device", "gpu")
    assert "has no CUDA device" in error_line(result, 2) and seconds < 10


def test_a_missing_framework_is_refused_at_once(tmp_path):
    env = hiding(tmp_path / "site", "mindspore")
    result, seconds = zoo_cli("verify", NAME, "-f", "mindspore", env=env)
    assert "pip install 'res2net-zoo[mindspore]'" in error_line(result, 3) and seconds < 10


def test_the_model_is_positional_everywhere_and_m_is_accepted(weights, tmp_path):
    both, _ = zoo_cli("info", "res2net50", "-m", "res2net50d", "--json")
    assert [row["name"] for row in json.loads(both.stdout)] == [NAME, "res2net50_v1b_26w_4s"]
    converted, _ = zoo_cli("convert", weights, "--to", "safetensors", "-m", NAME, "-o", tmp_path / "x.safetensors",
                           "--json")
    assert converted.returncode == 0 and json.loads(converted.stdout)["output"] == str(tmp_path / "x.safetensors")
    conflict, _ = zoo_cli("eval", NAME, "-m", "res2net101", "--data", ".")
    assert "two models given" in error_line(conflict, 2)
    help_text, _ = zoo_cli("convert", "--help")
    assert all(target in help_text.stdout for target in ("safetensors", "torch", "paddle", "mindspore", "jittor"))
    for command in ("info", "download", "convert", "verify", "eval", "train"):
        text, _ = zoo_cli(command, "--help")
        assert text.returncode == 0 and "--json" in text.stdout, command


def test_worker_client_imports_nothing_that_imports_it_back():
    code = ("import sys, zoo.worker.client\n"
            "loaded = [m for m in ('zoo.convert', 'zoo.evaluate', 'zoo.hub', 'zoo.converters.read', 'zoo.verify') "
            "if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_download_failure_is_one_short_line_with_the_next_step(tmp_path):
    sources = tmp_path / "s.json"
    sources.write_text(json.dumps({NAME: {"url": "http://zoo-mirror.invalid/res2net50_26w_4s-06e79181.pth"}}))
    result, _ = zoo_cli("download", NAME, "--sources", sources, env={"ZOO_HOME": str(tmp_path / "home")})
    line = error_line(result, 7)
    assert "cannot resolve zoo-mirror.invalid" in line and "ZOO_SOURCES" in line
    assert "urllib3" not in line and "HTTPConnectionPool" not in line and "resume" not in line


def test_download_json(tmp_path, weights):
    import hashlib

    served = tmp_path / f"{NAME}-{hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:8]}.safetensors"
    os.link(weights, served)
    sources = tmp_path / "s.json"
    sources.write_text(json.dumps({NAME: {"url": str(served)}}))
    result, _ = zoo_cli("download", NAME, "-f", "safetensors", "--sources", sources, "--json",
                        env={"ZOO_HOME": str(tmp_path / "home")})
    rows = json.loads(result.stdout)
    assert rows[0]["model"] == NAME and Path(rows[0]["path"]).is_file()


@pytest.mark.mindspore
def test_worker_errors_keep_their_class_and_traceback(weights, tmp_path):
    from safetensors.numpy import load_file, save_file

    from zoo.convert import convert
    from zoo.errors import NonFiniteError

    state = load_file(str(weights))
    state["layer2.0.bn1.running_var"][0] = np.nan
    broken = tmp_path / "nan.safetensors"
    save_file(state, str(broken))
    with pytest.raises(NonFiniteError, match="allow-non-finite"):  # raised in the MindSpore worker
        convert(broken, "mindspore", model=NAME, out=tmp_path / "x.ckpt")
    result, _ = zoo_cli("convert", broken, "--to", "mindspore", "-m", NAME, "-o", tmp_path / "x.ckpt",
                        env={"ZOO_DEBUG": "1"})
    # ZOO_DEBUG=1: the worker's own traceback comes along, then the CLI's
    assert result.returncode != 0 and "mindspore worker traceback" in result.stderr
    assert "in match_layout" in result.stderr and "NonFiniteError" in result.stderr
    assert not (tmp_path / "x.ckpt").exists()


@pytest.mark.paddle
def test_eval_identifies_the_checkpoint_and_shows_progress(weights, images, tmp_path):
    native = tmp_path / "model.pdparams"
    converted, _ = zoo_cli("convert", weights, "--to", "paddle", "-o", native)
    assert converted.returncode == 0, converted.stderr
    result, _ = zoo_cli("eval", "-f", "paddle", "--data", images, "--weights", native, "--json", "--batch-size", "2",
                        env={"ZOO_PROGRESS": "tty"})
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["model"] == NAME and row["published_top1"] == 77.99 and row["images"] == 4
    assert row["mode"] == "inference"  # the eval default: exact, and Paddle's fastest
    assert "eval paddle" in result.stderr and "4/4" in result.stderr  # the worker's progress bar, relayed
    assert "Skip loading" not in result.stderr


def test_a_worker_that_fails_after_finishing_its_work_still_succeeds(tmp_path, monkeypatch):
    """The outcome file, not the exit status, says whether the work was done: a framework that
    fails during interpreter shutdown (Jittor's compiler pool has) does not undo finished work;
    a worker that stops before reporting is still an error."""
    from zoo.errors import ZooError
    from zoo.worker import run_worker

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import atexit, os\natexit.register(lambda: os._exit(3))\n")
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    run_worker("torch", "probe", "cpu")  # exits 3 after reporting: accepted
    (site / "sitecustomize.py").write_text("import os\nos._exit(3)\n")  # gone before any work
    with pytest.raises(ZooError, match="torch worker failed: exit code 3"):
        run_worker("torch", "probe", "cpu")
