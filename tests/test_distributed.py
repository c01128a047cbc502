"""`zoo eval` under each framework's own launcher, 2 CPU ranks: the same predictions, image for
image, as one process; an odd number of images (25), so shards differ in size."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo.spec import Res2NetSpec

TINY = Res2NetSpec((1, 1, 1, 1), base_width=8, scale=4, num_classes=5)
BIN = Path(sys.executable).parent
ZOO = str(BIN / "zoo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher(framework: str, logs: Path) -> list[str]:
    return {
        "torch": [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "--log-dir", str(logs)],
        "paddle": [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(logs)],
        "mindspore": [str(BIN / "msrun"), "--worker_num", "2", "--local_worker_num", "2", "--join", "True",
                      "--master_port", str(_free_port()), "--log_dir", str(logs)],
    }[framework]


def environment() -> dict:
    # launchers start `python` from PATH (msrun) and the zoo script: this environment's
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """25 images in 5 classes, a tiny Res2Net with realistic weights, its spec file."""
    from PIL import Image

    from zoo.worker import run_worker

    d = tmp_path_factory.mktemp("dist")
    data = d / "data"
    rng = np.random.default_rng(0)
    for label in range(5):
        (data / str(label)).mkdir(parents=True)
        for i in range(5):
            pixels = rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / str(label) / f"{i}.png")
    spec_file = d / "tiny.json"
    spec_file.write_text(TINY.to_json())
    weights = d / "tiny.safetensors"
    (d / "jobs.json").write_text(json.dumps([{"spec": TINY.to_json(), "out": str(weights), "size": 32}]))
    run_worker("torch", "calibrate", str(d / "jobs.json"))
    return {"dir": d, "data": data, "spec": spec_file, "weights": weights}


def eval_args(setup, framework: str, predictions: Path, extra=()) -> list[str]:
    return ["eval", str(setup["spec"]), "-f", framework, "--weights", str(setup["weights"]), "--data",
            str(setup["data"]), "--image-size", "32", "--batch-size", "4", "--predictions", str(predictions), *extra]


@pytest.mark.parametrize("framework", [pytest.param(fw, marks=getattr(pytest.mark, fw))
                                       for fw in ("torch", "paddle", "mindspore")])
def test_launcher_with_two_ranks_equals_one_process(framework, setup, tmp_path):
    single = subprocess.run([ZOO, *eval_args(setup, framework, tmp_path / "single.npy", ["--json"])],
                            capture_output=True, text=True, env=environment(), timeout=600)
    assert single.returncode == 0, single.stderr
    alone = json.loads(single.stdout)
    assert alone["world_size"] == 1 and alone["images"] == 25
    result = tmp_path / "result.json"
    launched = subprocess.run([*launcher(framework, tmp_path / "logs"), ZOO,
                               *eval_args(setup, framework, tmp_path / "ranks.npy", ["--result", str(result)])],
                              capture_output=True, text=True, env=environment(), timeout=900)
    logs = "".join(p.read_text(errors="replace") for p in sorted((tmp_path / "logs").rglob("*")) if p.is_file())
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:] + logs[-3000:]
    ranked = json.loads(result.read_text())
    assert ranked["world_size"] == 2 and ranked["images"] == 25
    assert ranked["top1"] == alone["top1"] and ranked["top5"] == alone["top5"]
    np.testing.assert_array_equal(np.load(tmp_path / "ranks.npy"), np.load(tmp_path / "single.npy"))
    # rank 1 printed no result
    assert launched.stdout.count("on 25 images") <= 1


@pytest.mark.torch
def test_a_failing_rank_fails_the_command_with_one_error_line(setup, tmp_path):
    data = tmp_path / "data"
    subprocess.run(["cp", "-r", str(setup["data"]), str(data)], check=True)
    (data / "4" / "4.png").write_bytes(b"not an image")  # the last image: rank 1's shard
    broken = {**setup, "data": data}
    launched = subprocess.run([*launcher("torch", tmp_path / "logs"), ZOO, *eval_args(broken, "torch", tmp_path / "p.npy")],
                              capture_output=True, text=True, env=environment(), timeout=600)
    assert launched.returncode != 0
    lines = [line for line in (launched.stdout + launched.stderr).splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "4.png" in lines[0], launched.stdout[-2000:] + launched.stderr[-2000:]
    assert not (tmp_path / "p.npy").exists()


def test_shards_cover_every_image_once():
    from zoo.distributed import shard

    for n in (0, 1, 2, 25, 50_000):
        for world in (1, 2, 3, 8):
            covered = [i for r in range(world) for i in range(*shard(n, r, world))]
            assert covered == list(range(n))


@pytest.mark.jittor
@pytest.mark.skipif(__import__("shutil").which("mpicc") is not None, reason="OpenMPI is installed here")
def test_jittor_under_mpirun_without_mpi_says_so(setup, tmp_path):
    env = {**environment(), "OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"}
    result = subprocess.run([ZOO, *eval_args(setup, "jittor", tmp_path / "p.npy")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 2 and "run zoo eval -f jittor without mpirun" in result.stderr


@pytest.mark.paddle
def test_a_framework_under_another_launcher_is_refused(setup, tmp_path):
    env = {**environment(), "RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    result = subprocess.run([ZOO, *eval_args(setup, "paddle", tmp_path / "p.npy")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 2 and "runs under paddle.distributed.launch, not torchrun" in result.stderr


def test_report_merges_result_files_into_the_table(tmp_path):
    from zoo.report import table

    rows = [{"model": "res2net50_26w_4s", "framework": "torch", "mode": "eager", "images": 50000, "top1": 77.99,
             "published_top1": 77.99},
            {"model": "res2net50_26w_4s", "framework": "paddle", "mode": "dynamic", "images": 25, "top1": 80.0,
             "published_top1": 77.99},
            {"model": "res2net50_26w_4s", "framework": "paddle", "mode": "dynamic", "images": 50000, "top1": 77.98,
             "published_top1": 77.99}]
    paths = []
    for i, row in enumerate(rows):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(row))
    text = table([str(p) for p in paths])
    assert "| model | published | paddle dynamic | torch eager |" in text
    assert "| res2net50_26w_4s | 77.99 | 77.98 (50000) | 77.99 (50000) |" in text  # the larger run wins


def train_args(setup, framework: str, rundir: Path, extra=()) -> list[str]:
    return ["train", str(setup["spec"]), "-f", framework, "--weights", str(setup["weights"]), "--data",
            str(setup["data"]), "--image-size", "32", "--batch-size", "8", "--lr", "0.01", "--epochs", "2",
            "-o", str(rundir), "--json", *extra]


def losses(rundir: Path) -> np.ndarray:
    rows = [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines()]
    return np.array([r["loss"] for r in rows if "loss" in r])


@pytest.mark.parametrize("framework", [pytest.param(fw, marks=getattr(pytest.mark, fw))
                                       for fw in ("torch", "paddle", "mindspore")])
def test_training_on_two_ranks_with_sync_bn_takes_one_process_steps(framework, setup, tmp_path):
    """The global batch of 8 split 4 + 4 over two ranks, BatchNorm synced: the steps of one process
    with the batch of 8. Free-running, the curves part once fp32 rounding puts a ReLU input on the
    other side of 0 (see zoo verify --train), so the first three steps are held to the parity limit."""
    from zoo.parity import PARITY_LIMIT

    single = subprocess.run([ZOO, *train_args(setup, framework, tmp_path / "one")], capture_output=True, text=True,
                            env=environment(), timeout=900)
    assert single.returncode == 0, single.stderr[-3000:]
    launched = subprocess.run([*launcher(framework, tmp_path / "logs"), ZOO,
                               *train_args(setup, framework, tmp_path / "two", ["--sync-bn"])],
                              capture_output=True, text=True, env=environment(), timeout=900)
    logs = "".join(p.read_text(errors="replace") for p in sorted((tmp_path / "logs").rglob("*")) if p.is_file())
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:] + logs[-3000:]
    alone, ranked = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(alone) == len(ranked) == 6 and np.isfinite(ranked).all()
    np.testing.assert_allclose(ranked[:3], alone[:3], rtol=0, atol=PARITY_LIMIT * max(1.0, np.abs(alone).max()))
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["world_size"] == 2 and run["sync_bn"] is True
    assert (tmp_path / "two" / "model.safetensors").is_file() and not list((tmp_path / "two").glob("*.partial*"))


@pytest.mark.torch
def test_training_on_two_ranks_keeps_batchnorm_per_rank_by_default(setup, tmp_path):
    single = subprocess.run([ZOO, *train_args(setup, "torch", tmp_path / "one")], capture_output=True, text=True,
                            env=environment(), timeout=900)
    assert single.returncode == 0, single.stderr[-3000:]
    launched = subprocess.run([*launcher("torch", tmp_path / "logs"), ZOO, *train_args(setup, "torch", tmp_path / "two")],
                              capture_output=True, text=True, env=environment(), timeout=900)
    assert launched.returncode == 0, launched.stderr[-3000:]
    summary = json.loads(launched.stdout)  # rank 0 alone prints
    assert summary["world_size"] == 2 and summary["batchnorm"] == "per rank"
    # each rank normalises its own 4 images: the first step's loss is not the batch of 8's
    assert abs(losses(tmp_path / "two")[0] - losses(tmp_path / "one")[0]) > 1e-3


@pytest.mark.torch
def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused(setup, tmp_path):
    args = train_args(setup, "torch", tmp_path / "run")
    args[args.index("--batch-size") + 1] = "7"
    launched = subprocess.run([*launcher("torch", tmp_path / "logs"), ZOO, *args], capture_output=True, text=True,
                              env=environment(), timeout=600)
    assert launched.returncode != 0
    assert "--batch-size 7 (the global batch) does not split evenly over 2 ranks" in launched.stderr
    assert not (tmp_path / "run").exists()
