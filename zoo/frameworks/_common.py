"""Framework-free helpers shared by the backends' worker commands."""

from __future__ import annotations

import numpy as np

from ..spec import Res2NetSpec, get_spec, resolve_name


def job_spec(job: dict) -> tuple[str, Res2NetSpec]:
    """The model of a worker job: a registered name or a spec given as JSON."""
    if job.get("spec"):
        return job.get("label") or "custom spec", Res2NetSpec.from_json(job["spec"])
    name = resolve_name(job["model"])
    return name, get_spec(name)


def runner_class(framework: str):
    """The backend's Runner (imports the backend package first, which configures e.g. Jittor)."""
    import importlib

    from . import resolve_framework

    return importlib.import_module(f"{resolve_framework(framework).backend_module}.runner").Runner


def run_jobs(framework: str, jobs: list[dict]) -> None:
    """Worker command ``logits``: each job runs one model on one ``.npy`` batch and saves the
    logits (``.npy``), or with ``features`` every stage output too (``.npz``)."""
    from ..progress import say

    runner_cls = runner_class(framework)
    for i, job in enumerate(jobs, 1):
        runner = runner_cls(job.get("device", "cpu"), job.get("mode"))
        label, spec = job_spec(job)
        if len(jobs) > 1:
            say(f"{framework}: {label} ({i}/{len(jobs)})")
        batch = np.load(job["input"])
        logits = runner(runner.load(spec, job.get("weights")), batch)
        if job.get("features"):
            feats = runner(runner.load(spec, job.get("weights"), features=True), batch)
            np.savez(job["output"], logits=logits, **{f"feature{i}": f for i, f in enumerate(feats)})
        else:
            np.save(job["output"], logits)


def checked_native_state(model, state: dict, framework: str, *, reset_head: bool = False, model_name: str = "",
                         allow_non_finite: bool = False) -> dict[str, np.ndarray]:
    """A canonical state checked strictly and renamed for ``model`` (which has ``state_dict()``
    of tensors with ``.shape``), and checked once more against the model's own tensors."""
    from ..converters.tables import check_native_layout, native_state

    native = native_state(state, model.spec, framework, model_name=model_name, features_only=model.features_only,
                          reset_head=reset_head, allow_non_finite=allow_non_finite)
    check_native_layout({k: tuple(v.shape) for k, v in model.state_dict().items()}, native, reset_head=reset_head)
    return native
