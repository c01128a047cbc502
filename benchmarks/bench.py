"""Speed and memory of zoo against the peer implementations, measured in one run.

    python benchmarks/bench.py [--runs 7] [--json benchmarks/results.json] [--only modes,eval,...]

Prints one table per section and writes everything as JSON, with the date each section was
measured (``--only`` re-measures some and keeps the others):

- throughput: images/s, fp32, CPU, eval, 224x224, batch 1 and 8 (warm-up, then the median of
  --runs timings, ours and the peer's alternated), each framework in its own process: torch vs
  timm, MindSpore vs MindCV, Paddle vs PaddleClas (its model file only), Jittor vs jittor.models;
- modes: every execution mode of each framework through zoo's own Runner, the eager ports
  against the deployment runtimes (ONNX Runtime, Paddle Inference, MindIR), batch 1 and 8;
- eval: `zoo eval -f paddle` end to end in each Paddle mode;
- conversion: `zoo convert` of res2net101_v1b_26w_4s (about 180 MB) to each framework: wall
  time and peak memory, beside importing that framework alone and copying the same bytes;
- export: `zoo export` of the same file to every format, wall time and peak memory;
- readers: zoo's framework-free readers against torch.load / mindspore.load_checkpoint;
- train_throughput: images/s of a training step (forward, backward, SGD), fp32, CPU, at 224 px batch 8
  and 32 px batch 32: zoo train's step against the peers' models (same peers as throughput) with
  the framework's own optimizer, alternated in one process;
- train_check: `zoo verify --train` per framework (64 px, batch 4, 3 SGD steps, realistic random
  weights): the whole command's wall time and the peak memory of its largest process;
- startup: `zoo --help`, `zoo list`;
- gpu: torch against timm, fp32 (IEEE)/fp16/bf16, channels_last, batch 1 and 64, when a CUDA device is
  present.

Peers: pip install timm mindcv; pip install --no-deps paddleclas (only its res2net.py is used).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zoo.frameworks import FRAMEWORKS

HERE = Path(__file__).resolve()
PY = sys.executable


# --------------------------------------------------------------------------------------------
# Worker side: one framework per process.


def _time_pair(ours, peer, batch: int, runs: int, repeat: int) -> tuple[float, float]:
    """Median images/s of two callables, alternated so drift hits both equally."""
    for _ in range(2):
        ours()
        peer()
    times = {"ours": [], "peer": []}
    for _ in range(runs):
        for key, fn in (("ours", ours), ("peer", peer)):
            t = time.perf_counter()
            for _ in range(repeat):
                fn()
            times[key].append((time.perf_counter() - t) / repeat)
    return batch / statistics.median(times["ours"]), batch / statistics.median(times["peer"])


def _pair_rows(batches, runs, make_input, run_ours, run_peer, no_grad, **labels) -> list[dict]:
    """One row per batch size: ours and the peer timed alternately on the same input."""
    rows = []
    for b in batches:
        x = make_input(b)
        with no_grad():
            o, p = _time_pair(lambda: run_ours(x), lambda: run_peer(x), b, runs, 3 if b == 1 else 1)
        rows.append(dict(labels, batch=b, ours=o, peer_ips=p))
    return rows


def _numpy_batch(b: int):
    import numpy as np

    return np.random.rand(b, 3, 224, 224).astype(np.float32)


def _worker_torch(batches, runs):
    import timm
    import torch

    import zoo

    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for ours_name, peer_name in (("res2net50_26w_4s", "res2net50_26w_4s"), ("res2net101_v1b_26w_4s", "res2net101d")):
        ours = zoo.create_model(ours_name, framework="torch").eval()
        peer = timm.create_model(peer_name).eval()
        rows += _pair_rows(batches, runs, lambda b: torch.randn(b, 3, 224, 224), ours, peer, torch.inference_mode,
                           framework="torch", model=ours_name, peer=f"timm {peer_name}")
    return rows


def _worker_mindspore(batches, runs):
    import mindspore as ms
    from mindcv.models import create_model as mindcv_model

    import zoo

    ms.set_context(mode=ms.GRAPH_MODE)
    ours = zoo.create_model("res2net50_26w_4s", framework="mindspore")
    peer = mindcv_model("res2net50")
    ours.set_train(False)
    peer.set_train(False)
    return _pair_rows(batches, runs, lambda b: ms.Tensor(_numpy_batch(b)), lambda x: ours(x).asnumpy(),
                      lambda x: peer(x).asnumpy(), contextlib.nullcontext, framework="mindspore (graph)",
                      model="res2net50_26w_4s", peer="MindCV res2net50")


def _paddleclas_res2net():
    """PaddleClas' Res2Net50_26w_4s from its model file alone: the package itself imports OpenCV
    and more at import; the file needs only a pretrained-weights helper, stubbed here."""
    import importlib.util
    import types

    spec = importlib.util.find_spec("paddleclas")
    if spec is None:
        raise ModuleNotFoundError("paddleclas (pip install --no-deps paddleclas)")
    root = Path(list(spec.submodule_search_locations)[0]) / "ppcls"
    for name in ("ppcls", "ppcls.utils", "ppcls.arch", "ppcls.arch.backbone", "ppcls.arch.backbone.model_zoo"):
        module = types.ModuleType(name)
        module.__path__ = []
        sys.modules.setdefault(name, module)
    helper = types.ModuleType("ppcls.utils.save_load")
    helper.load_dygraph_pretrain = helper.load_dygraph_pretrain_from_url = lambda *a, **k: None
    sys.modules["ppcls.utils.save_load"] = helper
    file_spec = importlib.util.spec_from_file_location("ppcls.arch.backbone.model_zoo.res2net",
                                                       root / "arch/backbone/model_zoo/res2net.py")
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module.Res2Net50_26w_4s()


def _worker_paddle(batches, runs):
    import paddle

    import zoo

    ours = zoo.create_model("res2net50_26w_4s", framework="paddle")
    peer = _paddleclas_res2net()
    ours.eval()
    peer.eval()
    return _pair_rows(batches, runs, lambda b: paddle.to_tensor(_numpy_batch(b)), lambda x: ours(x).numpy(),
                      lambda x: peer(x).numpy(), paddle.no_grad, framework="paddle (dynamic)",
                      model="res2net50_26w_4s", peer="PaddleClas Res2Net50_26w_4s")


def _worker_jittor(batches, runs):
    import zoo.frameworks.jittor  # noqa: F401  configures Jittor before its import
    import jittor as jt
    from jittor.models import res2net50

    import zoo

    ours = zoo.create_model("res2net50_26w_4s", framework="jittor")
    peer = res2net50()
    ours.eval()
    peer.eval()
    return _pair_rows(batches, runs, lambda b: jt.array(_numpy_batch(b)), lambda x: ours(x).numpy(),
                      lambda x: peer(x).numpy(), jt.no_grad, framework="jittor", model="res2net50_26w_4s",
                      peer="jittor.models res2net50")


def _worker_gpu(batches, runs):
    """zoo's torch model against timm's on the GPU, alternated on the same input, per dtype and
    memory format; fp32 is IEEE fp32 (zoo's workers turn TF32 off), the half types autocast-free."""
    import timm
    import torch

    import zoo

    if not torch.cuda.is_available():
        return []
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    rows = []
    ours = zoo.create_model("res2net50_26w_4s", framework="torch").eval().cuda()
    peer = timm.create_model("res2net50_26w_4s").eval().cuda()
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            a, b_ = ours.to(dtype=dtype, memory_format=fmt), peer.to(dtype=dtype, memory_format=fmt)
            for b in (1, 64):
                x = torch.randn(b, 3, 224, 224, device="cuda", dtype=dtype).to(memory_format=fmt)

                def timed(m):
                    def run():
                        with torch.inference_mode():
                            m(x)
                        torch.cuda.synchronize()
                    return run

                ips, peer_ips = _time_pair(timed(a), timed(b_), b, runs, 10)
                rows.append(dict(device=torch.cuda.get_device_name(), dtype=str(dtype).replace("torch.", ""),
                                 channels_last=channels_last, batch=b, images_per_s=ips, timm_images_per_s=peer_ips,
                                 ratio=ips / peer_ips))
    return rows


def _random_weights(spec, path: str) -> None:
    """Canonical weights drawn with numpy (He-scaled convolutions, BN near identity): no framework
    needed, and every framework reads the same file."""
    import numpy as np
    from safetensors.numpy import save_file

    from zoo.spec import plan
    from zoo.spec.layout import iter_layout

    rng = np.random.default_rng(0)
    state = {}
    for t in iter_layout(plan(spec)):
        if t.role == "conv_weight":
            fan_in = int(np.prod(t.shape[1:]))
            value = rng.standard_normal(t.shape) * np.sqrt(2.0 / fan_in)
        elif t.role == "bn_weight":
            value = rng.uniform(0.2, 0.5, t.shape)
        elif t.role == "bn_var":
            value = rng.uniform(0.5, 1.5, t.shape)
        elif t.role in ("bn_bias", "bn_mean"):
            value = rng.standard_normal(t.shape) * 0.1
        else:  # the classifier
            value = rng.standard_normal(t.shape) * 0.01
        state[t.name] = np.ascontiguousarray(value, dtype=np.float32)
    save_file(state, path)


def _worker_modes(framework: str, batches, runs):
    """Every execution mode of one framework through zoo's own Runner (the code `zoo eval` runs),
    alternated on the same input: the eager port against the deployment runtime."""
    import numpy as np

    from zoo.frameworks._common import runner_class  # imports the backend first: it configures its framework
    from zoo.spec import get_spec

    runner_cls = runner_class(framework)
    spec = get_spec("res2net50_26w_4s")
    modes = FRAMEWORKS[framework].modes
    loaded = {}
    weights = tempfile.NamedTemporaryFile(suffix=".safetensors")
    _random_weights(spec, weights.name)  # one set for every mode, so their outputs compare
    for mode in modes:
        runner = runner_cls("cpu", mode)
        loaded[mode] = (runner, runner.load(spec, weights.name))
    rows = []
    for b in batches:
        x = _numpy_batch(b)
        calls = {}
        for mode, (runner, model) in loaded.items():
            # MindSpore and Jittor keep their mode process-wide: a Runner sets it as it is made.
            calls[mode] = (lambda m=mode, r=runner, net=model: (runner_cls("cpu", m), r(net, x)))
        for fn in calls.values():  # warm-up, and the runtimes' export at this input size
            fn()
        times = {m: [] for m in calls}
        repeat = 3 if b == 1 else 1
        for _ in range(runs):
            for m, fn in calls.items():
                t = time.perf_counter()
                for _ in range(repeat):
                    fn()
                times[m].append((time.perf_counter() - t) / repeat)
        outputs = {m: np.asarray(fn()[1]) for m, fn in calls.items()}
        reference = outputs[modes[0]]
        for m in modes:
            rel = float(np.abs(outputs[m] - reference).max() / max(1.0, float(np.abs(reference).max())))
            rows.append(dict(framework=framework, mode=m, batch=b, images_per_s=b / statistics.median(times[m]),
                             rel_to_first_mode=rel))
    return rows


# --- training throughput: zoo train's step (the backend's Trainer) against each peer's model trained
# with the framework's own optimizer and loss, alternated in one process on the same batch.

TRAIN_SHAPES = ((224, 8), (32, 32))  # (pixels, batch)


def _train_rows(framework, make_ours, make_peer, runs):
    """Each model built once (PaddleClas names its parameters, so a second copy in one process
    clashes); a peer that cannot take a shape (jittor.models pools with a fixed 7x7 window) is
    left out of that row."""
    import resource

    import numpy as np

    ours, peer = make_ours(), make_peer()
    rows = []
    for size, b in TRAIN_SHAPES:
        x = np.random.default_rng(0).standard_normal((b, 3, size, size)).astype(np.float32)
        y = (np.arange(b) % 1000).astype(np.int64)
        try:
            peer(x, y)
        except Exception as exc:  # noqa: BLE001  the peer's own limit, said in the row
            o, _ = _time_pair(lambda: ours(x, y), lambda: None, b, runs, 1)
            rows.append(dict(framework=framework, pixels=size, batch=b, ours=o, peer_ips=float("nan"),
                             ratio=float("nan"), note=f"peer: {type(exc).__name__}",
                             peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024))
            continue
        o, p = _time_pair(lambda: ours(x, y), lambda: peer(x, y), b, runs, 1)
        rows.append(dict(framework=framework, pixels=size, batch=b, ours=o, peer_ips=p, ratio=o / p,
                         peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024))
    return rows


def _zoo_step(framework):
    import zoo
    from zoo.frameworks import resolve_framework
    from zoo.training import SGD

    trainer = resolve_framework(framework).backend("train").Trainer(
        zoo.create_model("res2net50_26w_4s", framework=framework), SGD(lr=0.01))
    return lambda x, y: trainer.step(x, y).loss


def _train_worker_torch(batches, runs):
    import timm
    import torch

    torch.set_num_threads(os.cpu_count() or 1)

    def peer():
        model = timm.create_model("res2net50_26w_4s").train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

        def step(x, y):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
            loss.backward()
            opt.step()
            return float(loss)
        return step
    return _train_rows("torch", lambda: _zoo_step("torch"), peer, runs)


def _train_worker_paddle(batches, runs):
    import paddle

    def peer():
        model = _paddleclas_res2net()
        model.train()
        opt = paddle.optimizer.Momentum(0.01, 0.9, parameters=model.parameters(), weight_decay=1e-4)

        def step(x, y):
            loss = paddle.nn.functional.cross_entropy(model(paddle.to_tensor(x)), paddle.to_tensor(y))
            loss.backward()
            opt.step()
            opt.clear_grad()
            return float(loss)
        return step
    return _train_rows("paddle (dynamic)", lambda: _zoo_step("paddle"), peer, runs)


def _train_worker_mindspore(batches, runs):
    import mindspore as ms
    import numpy as np
    from mindcv.models import create_model as mindcv_model
    from mindspore import nn, ops

    ms.set_context(mode=ms.PYNATIVE_MODE)

    def peer():
        model = mindcv_model("res2net50")
        model.set_train(True)
        opt = nn.Momentum(model.trainable_params(), 0.01, 0.9, weight_decay=1e-4)
        grad = ms.value_and_grad(lambda a, b: ops.cross_entropy(model(a), b), None, opt.parameters)

        def step(x, y):
            loss, grads = grad(ms.Tensor(x), ms.Tensor(y.astype(np.int32)))
            opt(grads)
            return float(loss.asnumpy())
        return step
    return _train_rows("mindspore (pynative)", lambda: _zoo_step("mindspore"), peer, runs)


def _train_worker_jittor(batches, runs):
    import zoo.frameworks.jittor  # noqa: F401  configures Jittor before its import
    import jittor as jt
    from jittor.models import res2net50

    def peer():
        model = res2net50()
        model.train()
        opt = jt.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=1e-4)

        def step(x, y):
            loss = jt.nn.cross_entropy_loss(model(jt.array(x)), jt.array(y))
            opt.step(loss)
            return float(loss.numpy())
        return step
    return _train_rows("jittor", lambda: _zoo_step("jittor"), peer, runs)


TRAIN_WORKERS = {"torch": _train_worker_torch, "paddle": _train_worker_paddle,
                 "mindspore": _train_worker_mindspore, "jittor": _train_worker_jittor}


def _train_throughput(runs: int) -> list[dict]:
    rows = []
    for fw in (fw for fw in FRAMEWORKS if fw in TRAIN_WORKERS):
        print(f"measuring {fw} training throughput ...", file=sys.stderr)
        rows += _run_worker(f"train-{fw}", min(runs, 3))
    return rows


# the peers' implementations, per framework (a framework without one gets no throughput row)
PEER_WORKERS = {"torch": _worker_torch, "mindspore": _worker_mindspore, "paddle": _worker_paddle,
                "jittor": _worker_jittor}
WORKERS = {**PEER_WORKERS, "gpu": _worker_gpu, **{f"train-{fw}": w for fw, w in TRAIN_WORKERS.items()},
           **{f"modes-{fw}": (lambda b, r, fw=fw: _worker_modes(fw, b, r)) for fw in FRAMEWORKS}}


# --------------------------------------------------------------------------------------------
# Orchestration.


def _run_worker(name: str, runs: int) -> list[dict]:
    proc = subprocess.run([PY, str(HERE), "--worker", name, "--runs", str(runs)], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        print(f"  {name}: failed ({tail})", file=sys.stderr)
        return [dict(framework=name, error=tail)]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and the peak RSS (MiB) of the largest process in the command's tree."""
    probe = ("import resource, subprocess, sys, time, json\n"
             "t = time.perf_counter()\n"
             f"code = subprocess.run({cmd!r}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
             "print(json.dumps([time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code]))")
    out = subprocess.run([PY, "-c", probe], capture_output=True, text=True, check=True).stdout
    wall, kib, code = json.loads(out)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {code}")
    return wall, kib // 1024


def _release_file(d: Path) -> Path:
    """res2net101_v1b_26w_4s with realistic weights, written as the official release file was:
    torch's legacy (pre-1.6) format."""
    jobs = d / "jobs.json"
    jobs.write_text(json.dumps([{"model": "res2net101_v1b_26w_4s", "out": str(d / "src.safetensors"),
                                 "legacy_pth": str(d / "res2net101_v1b_26w_4s.pth")}]))
    subprocess.run([PY, "-m", "zoo.worker", "torch", "calibrate", str(jobs)], check=True, capture_output=True)
    return d / "res2net101_v1b_26w_4s.pth"


# Each reader in a fresh process: (label, imports, read expression); the process reports the read's
# wall time and its own peak RSS.
READERS = (
    ("zoo, legacy .pth (numpy)", "from zoo.converters.read import read_raw", "read_raw(SRC)"),
    ("torch.load(weights_only), legacy .pth", "import torch", "torch.load(SRC, weights_only=True)"),
    ("zoo, MindSpore .ckpt (numpy)", "from zoo.converters.read import read_raw", "read_raw(CKPT)"),
    ("mindspore.load_checkpoint, .ckpt", "import mindspore", "mindspore.load_checkpoint(CKPT)"),
)


def reader_section(runs: int) -> list[dict]:
    """Reading the release file and a MindSpore checkpoint: zoo's framework-free readers against
    the frameworks' own, each in its own process, same files, same run."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        d = Path(tmp)
        src = _release_file(d)
        ckpt = d / "res2net101_v1b_26w_4s.ckpt"
        subprocess.run([PY, "-m", "zoo.cli", "convert", str(src), "--to", "mindspore", "-o", str(ckpt)], check=True,
                       capture_output=True)
        for label, imports, read in READERS:
            probe = (f"import json, resource, time\n{imports}\nSRC, CKPT = {str(src)!r}, {str(ckpt)!r}\n"
                     f"t = time.perf_counter()\nstate = {read}\nseconds = time.perf_counter() - t\n"
                     "print(json.dumps([seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024]))")
            measured = []
            for _ in range(max(1, runs // 2)):
                out = subprocess.run([PY, "-c", probe], capture_output=True, text=True, check=True).stdout
                measured.append(json.loads(out.strip().splitlines()[-1]))
            rows.append(dict(reader=label, seconds=statistics.median(m[0] for m in measured),
                             peak_mib=max(m[1] for m in measured),
                             file_mb=round((src if ".pth" in label else ckpt).stat().st_size / 2**20, 1)))
    return rows


def _with_ratios(rows: list[dict]) -> list[dict]:
    """Each mode against its framework's first mode and against ONNX Runtime (the CPU reference
    figure), at the same batch size."""
    first = {}
    for r in rows:
        if "mode" in r:
            first.setdefault((r["framework"], r["batch"]), r["images_per_s"])
    ort = {r["batch"]: r["images_per_s"] for r in rows if r.get("mode") == "onnxruntime"}
    for r in rows:
        if "mode" in r:
            r["vs_first"] = r["images_per_s"] / first[(r["framework"], r["batch"])]
            if r["batch"] in ort:
                r["vs_onnxruntime"] = r["images_per_s"] / ort[r["batch"]]
    return rows


def eval_section(images: int = 48) -> list[dict]:
    """`zoo eval -f paddle` end to end (decoding, preprocessing, forward) in each Paddle mode, on
    the same generated JPEGs (256 px, cropped to 224) and weights: the images/s it reports."""
    import numpy as np
    from PIL import Image

    from zoo.spec import get_spec

    rows = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        d = Path(tmp)
        rng = np.random.default_rng(0)
        for i in range(images):
            folder = d / "val" / f"n{i % 4:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG")
        _random_weights(get_spec("res2net50_26w_4s"), str(d / "w.safetensors"))
        for mode in ("dynamic", "to_static", "inference"):
            out = subprocess.run([PY, "-m", "zoo.cli", "eval", "res2net50_26w_4s", "-f", "paddle", "--mode", mode,
                                  "--weights", str(d / "w.safetensors"), "--data", str(d / "val"), "--batch-size", "8",
                                  "--json"], capture_output=True, text=True, check=True)
            result = json.loads(out.stdout)
            rows.append(dict(framework="paddle", mode=mode, images=result["images"],
                             images_per_s=result["images_per_s"], wall_s=result["wall_s"]))
    for r in rows:
        r["vs_dynamic"] = r["images_per_s"] / rows[0]["images_per_s"]
    return rows


def export_section(runs: int) -> list[dict]:
    """`zoo export` of res2net101_v1b_26w_4s from the release file (legacy .pth) at 224: the
    whole command (conversion, export, the check in the runtime at batch 1 and 3, the torch
    reference), wall time and the peak memory of its largest process."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        d = Path(tmp)
        src = _release_file(d)
        for fmt, out in (("onnx", "m.onnx"), ("torchscript", "m.pt"), ("paddle-inference", "pd"),
                         ("mindir", "m.mindir")):
            measured = [_measure([PY, "-m", "zoo.cli", "export", "res2net101_v1b_26w_4s", "--format", fmt,
                                  "--weights", str(src), "-o", str(d / out)]) for _ in range(max(1, runs // 4))]
            size = sum(p.stat().st_size for p in (d / out).rglob("*") if p.is_file()) if (d / out).is_dir() \
                else (d / out).stat().st_size
            rows.append(dict(format=fmt, seconds=statistics.median(w for w, _ in measured),
                             peak_mib=max(m for _, m in measured), artefact_mb=round(size / 2**20, 1)))
    return rows


def conversion_section(runs: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        d = Path(tmp)
        src = _release_file(d)
        size_mb = src.stat().st_size / 2**20
        copies = []
        for _ in range(3):
            t = time.perf_counter()
            shutil.copyfile(src, d / "copy.bin")
            os.sync()
            copies.append(time.perf_counter() - t)
        copy_s = statistics.median(copies)
        for fw, record in FRAMEWORKS.items():
            # a framework zoo configures before its import (a backend with ``setup``) is imported through zoo
            module, ext = (record.backend_module if "setup" in record.submodules else record.import_name), record.extension
            imports = [_measure([PY, "-c", f"import {module}"]) for _ in range(max(1, runs // 2))]
            import_s = statistics.median(w for w, _ in imports)
            import_mib = max(m for _, m in imports)
            converts = [_measure([PY, "-m", "zoo.cli", "convert", str(src), "--to", fw, "-o", str(d / f"out{ext}")])
                        for _ in range(max(1, runs // 2))]
            convert_s = statistics.median(w for w, _ in converts)
            convert_mib = max(m for _, m in converts)
            rows.append(dict(framework=fw, file_mb=round(size_mb, 1), convert_s=convert_s, convert_peak_mib=convert_mib,
                             import_s=import_s, import_peak_mib=import_mib, copy_s=copy_s,
                             time_target_met=convert_s <= import_s + 2.0,
                             memory_target_met=convert_mib <= import_mib + 2 * size_mb))
    return rows


def train_check_section(runs: int) -> list[dict]:
    """The whole `zoo verify --train` command as a user runs it: realistic weights (a torch worker),
    conversion, the torch reference's 3 steps, the port's 3 steps from the reference's states,
    and the comparison of every gradient, statistic, momentum buffer and parameter."""
    rows = []
    for fw in FRAMEWORKS:
        for model in ("res2net50_26w_4s", "res2net101_v1b_26w_4s"):
            print(f"  zoo verify {model} -f {fw} --train", file=sys.stderr)
            measured = [_measure([PY, "-m", "zoo.cli", "verify", model, "-f", fw, "--train"])
                        for _ in range(max(1, runs // 4))]
            rows.append(dict(framework=fw, model=model, seconds=statistics.median(w for w, _ in measured),
                             peak_mib=max(m for _, m in measured)))
    return rows


def startup_section(runs: int) -> list[dict]:
    rows = []
    for args in (["--help"], ["list"]):
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run([PY, "-m", "zoo.cli", *args], capture_output=True, check=True)
            times.append(time.perf_counter() - t)
        rows.append(dict(command="zoo " + " ".join(args), seconds=statistics.median(times)))
    return rows


def _table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table; text columns left-aligned, numbers right-aligned."""
    cells = [[format(r[key], fmt) if fmt and key in r else str(r.get(key, "")) for _, key, fmt in columns]
             for r in rows]
    widths = [max([len(title)] + [len(row[i]) for row in cells]) for i, (title, _, _) in enumerate(columns)]
    numeric = [bool(fmt) for _, _, fmt in columns]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    header = line([title for title, _, _ in columns])
    return "\n".join([header, "-" * len(header)] + [line(row) for row in cells])


def _throughput(runs: int) -> list[dict]:
    rows = []
    for fw in (fw for fw in FRAMEWORKS if fw in PEER_WORKERS):
        print(f"measuring {fw} throughput ...", file=sys.stderr)
        rows += _run_worker(fw, runs)
    for r in rows:
        if "ours" in r:
            r["ratio"] = r["ours"] / r["peer_ips"]
    return rows


def _modes(runs: int) -> list[dict]:
    rows = []
    for fw in FRAMEWORKS:
        print(f"measuring {fw} execution modes ...", file=sys.stderr)
        rows += _run_worker(f"modes-{fw}", runs)
    return _with_ratios(rows)


# name: (measure(runs), title, columns); printed in this order
SECTIONS = {
    "throughput": (_throughput, "Inference throughput against the peers, images/s (fp32, CPU, 224x224, median)", [
        ("framework", "framework", ""), ("model", "model", ""), ("batch", "batch", "d"), ("ours", "ours", ".2f"),
        ("peer", "peer_ips", ".2f"), ("ours/peer", "ratio", ".2f"), ("peer model", "peer", "")]),
    "train_throughput": (_train_throughput, "Training throughput against the peers, images/s (fwd + bwd + SGD step, "
                                            "fp32, CPU, median; zoo train's step against the peer's model with the "
                                            "framework's own optimizer; peak MiB of the process holding both)", [
        ("framework", "framework", ""), ("px", "pixels", "d"), ("batch", "batch", "d"), ("ours", "ours", ".2f"),
        ("peer", "peer_ips", ".2f"), ("ours/peer", "ratio", ".2f"), ("peak MiB", "peak_mib", "d")]),
    "modes": (_modes, "Execution modes of `zoo verify`/`zoo eval`, res2net50_26w_4s, images/s (fp32, CPU, 224x224, "
                      "median; x first = against the framework's first mode, x ORT = against ONNX Runtime)", [
        ("framework", "framework", ""), ("mode", "mode", ""), ("batch", "batch", "d"),
        ("images/s", "images_per_s", ".2f"), ("x first", "vs_first", ".2f"), ("x ORT", "vs_onnxruntime", ".2f"),
        ("rel to first", "rel_to_first_mode", ".1e")]),
    "eval": (lambda runs: eval_section(), "zoo eval res2net50_26w_4s -f paddle --batch-size 8 (48 JPEGs, 224 crop; "
                                          "images/s as eval reports it, after its untimed first pass)", [
        ("mode", "mode", ""), ("images", "images", "d"), ("images/s", "images_per_s", ".2f"),
        ("x dynamic", "vs_dynamic", ".2f"), ("wall s", "wall_s", ".1f")]),
    "conversion": (conversion_section, "zoo convert res2net101_v1b_26w_4s (legacy-format .pth as released)", [
        ("target", "framework", ""), ("convert s", "convert_s", ".2f"), ("import s", "import_s", ".2f"),
        ("copy s", "copy_s", ".2f"), ("peak MiB", "convert_peak_mib", "d"), ("import MiB", "import_peak_mib", "d"),
        ("time ok", "time_target_met", ""), ("memory ok", "memory_target_met", "")]),
    "export": (export_section, "zoo export res2net101_v1b_26w_4s --weights <legacy .pth> (224x224; conversion, "
                               "export, the check in the runtime at batch 1 and 3, the torch reference)", [
        ("format", "format", ""), ("seconds", "seconds", ".1f"), ("peak MiB", "peak_mib", "d"),
        ("artefact MB", "artefact_mb", ".1f")]),
    "readers": (reader_section, "Reading res2net101_v1b_26w_4s (read seconds, peak MiB of the process including "
                                "its imports)", [
        ("reader", "reader", ""), ("MB", "file_mb", ".1f"), ("seconds", "seconds", ".2f"), ("peak MiB", "peak_mib", "d")]),
    "train_check": (train_check_section, "zoo verify MODEL -f FW --train (64 px, batch 4, 3 steps; the whole command, "
                                         "wall seconds and peak MiB of its largest process)", [
        ("framework", "framework", ""), ("model", "model", ""), ("seconds", "seconds", ".1f"),
        ("peak MiB", "peak_mib", "d")]),
    "startup": (startup_section, "CLI start-up (median wall seconds)", [
        ("command", "command", ""), ("seconds", "seconds", ".3f")]),
    "gpu": (lambda runs: _run_worker("gpu", runs), "GPU, torch res2net50_26w_4s against timm, images/s", [
        ("device", "device", ""), ("dtype", "dtype", ""), ("channels_last", "channels_last", ""),
        ("batch", "batch", "d"), ("zoo", "images_per_s", ".1f"), ("timm", "timm_images_per_s", ".1f"),
        ("zoo/timm", "ratio", ".2f")]),
}


def _vector_isa() -> str:
    """The widest x86 vector extension: MindSpore's CPU kernels, for one, are far slower without AVX2."""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return platform.machine()
    return next((isa.upper() for isa in ("avx512f", "avx2", "avx") if isa in flags), "no AVX")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", default=str(HERE.parent / "results.json"))
    parser.add_argument("--only", help=f"Comma-separated sections to measure ({', '.join(SECTIONS)}); the others are "
                                       "kept from the existing results file, with the date they were measured.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker]([1, 8], args.runs)))
        return 0
    wanted = list(SECTIONS) if not args.only else [w.strip() for w in args.only.split(",")]
    unknown = [w for w in wanted if w not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    try:
        previous = json.loads(Path(args.json).read_text())
    except (OSError, ValueError):
        previous = {}
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {_vector_isa()}, " \
              f"Python {platform.python_version()}"
    today = time.strftime("%Y-%m-%d")
    report = {"date": today, "machine": machine, "measured": {}}
    print(f"zoo benchmarks, {today}, {machine}\n")
    for name, (measure, title, columns) in SECTIONS.items():
        if name in wanted:
            print(f"measuring {name} ...", file=sys.stderr)
            report[name], report["measured"][name] = measure(args.runs), today
        elif name in previous:
            report[name] = previous[name]
            report["measured"][name] = previous.get("measured", {}).get(name, "an earlier run")
        else:
            continue
        rows = report[name]
        if name == "gpu" and (not rows or "error" in rows[0]):
            print("GPU: no CUDA device on this machine; not measured\n")
            continue
        kept = "" if report["measured"][name] == today else f" [kept from {report['measured'][name]}]"
        print(title + kept)
        print(_table([r for r in rows if "error" not in r], columns))
        for r in rows:
            if "error" in r:
                print(f"  {r.get('framework', name)}: not measured ({r['error']})")
        print()
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"written: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
