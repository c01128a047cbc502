"""What the four ports share, framework-free: the bookkeeping of a built model, the one strict
load path, the model used for inference, and the backends' worker commands. Each port keeps only
what is its framework's idiom."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..spec import Res2NetSpec, get_spec, plan, resolve_name


def plan_outputs(model, spec: Res2NetSpec, features_only: bool, out_indices) -> None:
    """The attributes every port's model carries: its spec and plan, and what it returns (logits,
    or the stage outputs ``out_indices`` with their ``feature_info``)."""
    model.spec = spec
    model.plan = plan(spec)
    outputs = model.plan.outputs(features_only, out_indices)
    model.features_only = outputs.features_only
    model.out_indices = outputs.indices
    model.feature_info = list(outputs.info)
    model.has_head = outputs.has_head
    model.head_is_conv = model.plan.head_is_conv


def model_builder(resnet, dla):
    """A port's ``build_model``: its ResNet-trunk or DLA class, by the spec's topology."""
    def build_model(spec: Res2NetSpec, *, features_only: bool = False, out_indices=None):
        cls = dla if spec.topology == "dla" else resnet
        return cls(spec, features_only=features_only, out_indices=out_indices)

    return build_model


def forward_from(model, index: int, x):
    """The logits from stage output ``index`` of ``model.forward_features`` (what is differentiated
    to explain a prediction at that stage): the stages after it, then the head. Written once:
    every port names its stages as the official code does."""
    if model.spec.topology == "dla":
        for j in range(index + 1, len(model.plan.stages)):
            x = getattr(model, f"level{j}")(x)
    else:
        if index == 0:  # the stem's output: its max pool comes first
            x = model.maxpool(x)
        for j in range(index + 1, len(model.plan.stages) + 1):
            x = getattr(model, f"layer{j}")(x)
    return model.forward_head(x)


def load_weights(framework: str, model, path: str | Path, **options):
    """A checkpoint file in any supported format, read without the framework, loaded strictly
    (the backend's ``load_state``)."""
    from ..converters.read import read_canonical
    from . import FRAMEWORKS

    FRAMEWORKS[framework].backend("io").load_state(model, read_canonical(path, model.spec), **options)
    return model


def inference_model(framework: str, spec: Res2NetSpec, weights=None, features: bool = False):
    """The model a Runner runs: built from ``spec``, with its weights (a file) if given; with
    ``features`` it returns every stage output."""
    from . import FRAMEWORKS

    out_indices = range(len(spec.plan().features)) if features else None
    model = FRAMEWORKS[framework].backend().build_model(spec, features_only=features, out_indices=out_indices)
    return load_weights(framework, model, weights) if weights is not None else model


def job_spec(job: dict) -> tuple[str, Res2NetSpec]:
    """The model of a worker job: a registered name or a spec given as JSON."""
    if job.get("spec"):
        return job.get("label") or "custom spec", Res2NetSpec.from_json(job["spec"])
    name = resolve_name(job["model"])
    return name, get_spec(name)


def runner_class(framework: str):
    """The backend's Runner (importing the backend package first configures e.g. Jittor)."""
    from . import resolve_framework

    return resolve_framework(framework).backend("runner").Runner


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
    """The one strict load path of every port: a canonical state checked against the layout
    (missing, unexpected, mis-shaped, non-finite: one error naming them), renamed and laid out
    for the framework, then checked once more against the model's own tensors (the backend's
    ``native_shapes``), since some frameworks (Jittor) would load a mismatch silently."""
    from ..converters.tables import check_native_layout, native_state
    from . import FRAMEWORKS

    native = native_state(state, model.spec, framework, model_name=model_name, features_only=model.features_only,
                          reset_head=reset_head, allow_non_finite=allow_non_finite)
    check_native_layout(FRAMEWORKS[framework].backend("io").native_shapes(model), native, reset_head=reset_head)
    return native
