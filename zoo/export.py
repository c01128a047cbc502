"""``zoo export``: a model with its weights as a deployment artefact, checked in its own runtime.

    onnx              torch -> ONNX (opset 18, dynamic batch), run by ONNX Runtime
    torchscript       torch -> TorchScript (traced), run by torch.jit.load
    paddle-inference  paddle -> inference.json + inference.pdiparams, run by Paddle Inference
    mindir            mindspore -> .mindir (dynamic batch), run as a GraphCell

The weights are canonical, so any checkpoint zoo reads exports to every format. The artefact is
written into a private directory by a worker of its framework, loaded from disk by a second,
fresh worker (so nothing but the files is carried over), and run at batch 1 and 3 against the
PyTorch reference on the same input; only an artefact within the parity limit is moved to the
output, in one rename. A failure leaves nothing at the output (exit 9 when the check fails).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import OutputError, UsageError
from .frameworks import FRAMEWORKS, REFERENCE, ExportFormat, export_formats
from .parity import PARITY_LIMIT


CHECK_BATCHES = (1, 3)
REPORT_FILE = "zoo-export.json"  # beside the files of a directory artefact


@dataclass
class ExportResult:
    model: str
    format: str
    framework: str
    runtime: str
    output: str
    files: list[str]
    input_shape: list            # "batch" where the dimension is free
    outputs: list[str]
    weights: str
    reference: str
    checks: list[dict] = field(default_factory=list)   # batch, output, rel
    tolerance: float = PARITY_LIMIT
    export_s: float = 0.0
    passed: bool = False


def resolve_format(fmt: str | None, framework: str | None) -> tuple[ExportFormat, str]:
    """The format asked for and the framework that writes it; ``-f`` alone picks its framework's
    deployment format, both must agree."""
    from .frameworks import resolve_framework

    fw = resolve_framework(framework).name if framework else None
    formats = export_formats()
    if fmt is None:
        if fw is None:
            raise UsageError(f"give --format ({', '.join(formats)}) or -f FRAMEWORK")
        if not FRAMEWORKS[fw].exports:
            raise UsageError(f"{fw} has no deployment format of its own; export --format onnx (the weights are "
                             "the same in every framework)")
        return FRAMEWORKS[fw].exports[0], fw
    key = fmt.strip().lower().replace("_", "-")
    if key not in formats:
        raise UsageError(f"unknown format {fmt!r}; choose one of: {', '.join(formats)}")
    chosen, writer = formats[key][0], formats[key][1].name
    if fw is not None and fw != writer:
        raise UsageError(f"{chosen.name} is exported from {writer}, not {fw}: drop -f, or use "
                         f"-f {writer} (any checkpoint converts to it)")
    return chosen, writer


def _check_writable(out: Path, fmt: ExportFormat) -> None:
    """Refuse an output that cannot be written before any work starts."""
    from .atomic import check_writable

    check_writable(out)
    if fmt.is_directory and out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / REPORT_FILE).is_file()):
            raise OutputError(f"{out}: exists and is not a zoo export; choose another -o or remove it")
    elif not fmt.is_directory and out.is_dir():
        raise OutputError(f"{out}: is a directory; give a file name, e.g. {out / ('model' + fmt.suffix)}")


def _metadata(label: str, spec, variant) -> dict[str, str]:
    """Preprocessing and provenance, stored in the artefact (ONNX metadata_props, TorchScript
    extra file, the directory's report) so a deployment needs nothing else to feed it."""
    from . import __version__
    from .spec import Preprocessing

    pre = variant.preprocessing if variant else Preprocessing()
    return {"zoo.model": label, "zoo.spec": spec.to_json(), "zoo.version": __version__,
            "zoo.preprocessing": json.dumps(dataclasses.asdict(pre))}


def export(model: str | None, fmt: str | None = None, *, framework: str | None = None, weights: str | None = None,
           source: str | None = None, sources_file: str | None = None, out: str | Path | None = None,
           image_size: int | None = None, features_only: bool = False, out_indices=None,
           tolerance: float = PARITY_LIMIT, device: str = "cpu") -> ExportResult:
    from .errors import CheckpointFormatError, VerificationFailed
    from .evaluate import model_of, model_weights
    from .preflight import check_device
    from .progress import say
    from .spec import plan
    from .worker import require_installed, run_job

    chosen, fw = resolve_format(fmt, framework)
    # Everything that can be refused is refused before weights are fetched or anything is built.
    require_installed(fw)
    checked_in = next((m for m in FRAMEWORKS[fw].execution if m.runtime == chosen.name), None)
    if checked_in is not None and checked_in.needs:
        from .preflight import require_runtime

        require_runtime(FRAMEWORKS[fw], checked_in.name, f"{chosen.name.upper()} export", " (to check the file)")
    if weights and not Path(weights).is_file():
        raise CheckpointFormatError(f"{weights}: no such file")
    label, spec, variant = model_of(model, weights)
    indices = None
    if features_only:
        indices = list(plan(spec).outputs(True, out_indices).indices)
    elif out_indices is not None:
        raise UsageError("--out-indices selects stage outputs: give it with --features-only")
    out = Path(out) if out else Path(f"{label.replace(' ', '_')}{'-features' if features_only else ''}"
                                     f"{chosen.suffix or '-' + chosen.name}")
    _check_writable(out, chosen)
    check_device(fw, device)
    weights_label = Path(weights).name if weights else f"released ({source})"
    spec, weights = model_weights(label, spec, variant, weights, "safetensors", source=source,
                                  sources_file=sources_file)
    size = image_size or (variant.preprocessing.input_size if variant else 224)
    reference_fw = REFERENCE if FRAMEWORKS[REFERENCE].is_installed() else fw
    with tempfile.TemporaryDirectory(prefix="zoo-export-") as tmp:
        d = Path(tmp)
        staged = d / "artefact"
        staged.mkdir()
        rng = np.random.default_rng(0)
        inputs = []
        for b in CHECK_BATCHES:
            np.save(d / f"x{b}.npy", rng.standard_normal((b, spec.in_chans, size, size)).astype(np.float32))
            inputs.append(str(d / f"x{b}.npy"))
        say(f"exporting {label} to {chosen.name} ({fw} worker)")
        started = time.perf_counter()
        job = {"spec": spec.to_json(), "weights": str(weights), "format": chosen.name, "directory": str(staged),
               "example": inputs[-1], "out_indices": indices, "metadata": _metadata(label, spec, variant)}
        with _failure_as(VerificationFailed, f"{chosen.name} export of {label} failed in {fw}"):
            run_job(fw, "export", job, d)
        export_s = time.perf_counter() - started
        say(f"checking the artefact in {chosen.runtime} at batch {' and '.join(map(str, CHECK_BATCHES))}")
        names = [f"feature{i}" for i in indices] if indices is not None else ["logits"]
        outputs = [str(d / f"out{b}.npz") for b in CHECK_BATCHES]
        check = {"format": chosen.name, "directory": str(staged), "inputs": inputs, "outputs": outputs,
                 "names": names, "device": device}
        with _failure_as(VerificationFailed, f"the {chosen.name} artefact of {label} failed in {chosen.runtime}"):
            run_job(fw, "run-deployed", check, d)
        references = _reference(reference_fw, spec, f"{label} reference", weights, inputs, indices, d)
        result = ExportResult(label, chosen.name, fw, chosen.runtime, str(out), [],
                              ["batch", spec.in_chans, size, size], names, weights_label,
                              f"{reference_fw} (cpu, {FRAMEWORKS[reference_fw].modes[0]}, fp32)"
                              + ("" if reference_fw == REFERENCE else f"; {REFERENCE} is not installed"),
                              tolerance=tolerance, export_s=round(export_s, 2))
        from .parity import relative

        for b, produced, expected in zip(CHECK_BATCHES, outputs, references):
            got = np.load(produced)
            for name, ref in zip(names, expected):
                if got[name].shape != ref.shape:
                    raise VerificationFailed(f"{chosen.name}: {name} at batch {b} has shape {got[name].shape}, "
                                             f"expected {ref.shape}; nothing was written")
                result.checks.append({"batch": b, "output": name, "rel": relative(got[name], ref)[1]})
        worst = max(result.checks, key=lambda c: c["rel"])
        result.passed = worst["rel"] <= tolerance
        if not result.passed:
            raise VerificationFailed(f"{chosen.name} artefact of {label} is off the reference: {worst['output']} at "
                                     f"batch {worst['batch']} rel {worst['rel']:.2e} > {tolerance:g}; nothing was written")
        result.files = _publish(staged, out, chosen, result)
    return result


@contextlib.contextmanager
def _failure_as(cls, what: str):
    """A framework failing in its own way (not one of zoo's known errors) becomes ``cls``."""
    from .errors import ZooError

    try:
        yield
    except ZooError as exc:
        if type(exc) is not ZooError:
            raise
        raise cls(f"{what}: {str(exc).split(': ', 1)[-1]}; nothing was written") from None


def _reference(framework: str, spec, spec_label: str, weights: str, inputs: list[str], indices, d: Path) -> list[list[np.ndarray]]:
    """The reference outputs per input: the logits, or the selected stage outputs."""
    from .worker import run_job

    jobs = [{"spec": spec.to_json(), "label": spec_label, "weights": weights, "input": x, "output": str(d / f"ref{i}.npz"),
             "features": True} for i, x in enumerate(inputs)]
    run_job(framework, "logits", jobs, d)
    results = []
    for i in range(len(inputs)):
        ref = np.load(d / f"ref{i}.npz")
        results.append([ref["logits"]] if indices is None else [ref[f"feature{j}"] for j in indices])
    return results


def _publish(staged: Path, out: Path, fmt: ExportFormat, result: ExportResult) -> list[str]:
    """Move the checked artefact to ``out`` in one rename (a directory replaces a previous zoo export)."""
    from .atomic import atomic_directory, atomic_output

    if not fmt.is_directory:
        (artefact,) = [p for p in staged.iterdir() if p.is_file()]
        with atomic_output(out) as tmp:
            shutil.copyfile(artefact, tmp)
        return [str(out)]
    (staged / REPORT_FILE).write_text(json.dumps(dataclasses.asdict(result) | {"files": None}, indent=2))
    with atomic_directory(out) as tmp:
        for p in sorted(staged.iterdir()):
            shutil.copyfile(p, tmp / p.name)
    return [str(out / p.name) for p in sorted(staged.iterdir())]


# --- worker commands (see zoo.worker) ---------------------------------------------------------


def _deploy_module(framework: str):
    from .frameworks import resolve_framework

    return resolve_framework(framework).backend("deploy")


def export_job(framework: str, job: dict) -> None:
    """Worker command ``export``: build the model with its weights and write the artefact."""
    from . import create_model
    from .frameworks._common import job_spec

    _, spec = job_spec(job)
    indices = job.get("out_indices")
    model = create_model(spec, framework, weights=job["weights"], features_only=indices is not None,
                         out_indices=indices)
    example = np.load(job["example"])
    _deploy_module(framework).export(model, job["format"], Path(job["directory"]), example, job.get("metadata"))


def run_deployed_job(framework: str, job: dict) -> None:
    """Worker command ``run-deployed``: the artefact in its runtime, from its files alone."""
    from .frameworks._common import runner_class

    runner_class(framework)(job.get("device", "cpu"), None)  # the device, as the other commands set it
    run = _deploy_module(framework).load(job["format"], Path(job["directory"]), job.get("device", "cpu"))
    for x, out in zip(job["inputs"], job["outputs"]):
        outputs = run(np.load(x))
        if len(outputs) != len(job["names"]):
            raise RuntimeError(f"the artefact returned {len(outputs)} outputs, expected {len(job['names'])}")
        np.savez(out, **dict(zip(job["names"], outputs)))
