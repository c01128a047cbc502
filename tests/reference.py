"""PyTorch references for the other frameworks' tests, made in torch worker processes so the
test process itself never imports torch."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from zoo.parity import PARITY_LIMIT  # noqa: F401  (../shared/DESIGN.md: max|d| / max(1, max|ref|))
from zoo.worker import run_job


def relative_diff(candidate: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(candidate - reference).max() / max(1.0, float(np.abs(reference).max())))


def images(path: Path, size: int, batch: int = 2, seed: int = 1) -> Path:
    x = np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)
    np.save(path, x)
    return path


def _run(command: str, jobs: list[dict], directory: Path) -> None:
    run_job("torch", command, jobs, directory)


def calibrated(directory: Path, names: list[str], size: int = 64, pth: Iterable[str] = ()) -> dict[str, Path]:
    """Realistic random weights per variant as canonical safetensors, plus an official-style .pth
    beside it for the variants named in ``pth`` (only those: the full set runs to gigabytes)."""
    out = {n: directory / f"{n}-{size}.safetensors" for n in names}
    pth = set(pth)
    jobs = [{"model": n, "out": str(p), "size": size} | ({"pth": str(p.with_suffix(".pth"))} if n in pth else {})
            for n, p in out.items()]
    _run("calibrate", jobs, directory)
    return out


def torch_logits(directory: Path, runs: dict[str, tuple[Path, Path]]) -> dict[str, np.ndarray]:
    """runs: key -> (model name, weights file, input .npy) gives key -> torch logits."""
    jobs, outputs = [], {}
    for key, (name, weights, inputs) in runs.items():
        outputs[key] = directory / f"torch-{key}.npy"
        jobs.append({"model": name, "weights": str(weights), "input": str(inputs), "output": str(outputs[key])})
    _run("logits", jobs, directory)
    return {k: np.load(p) for k, p in outputs.items()}
