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
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import OutputError, UsageError


@dataclass(frozen=True)
class ExportFormat:
    name: str
    framework: str
    runtime: str
    suffix: str          # the output's suffix; "" for a directory

    @property
    def is_directory(self) -> bool:
        return not self.suffix


FORMATS = {f.name: f for f in (
    ExportFormat("onnx", "torch", "ONNX Runtime", ".onnx"),
    ExportFormat("torchscript", "torch", "torch.jit", ".pt"),
    ExportFormat("paddle-inference", "paddle", "Paddle Inference", ""),
    ExportFormat("mindir", "mindspore", "MindSpore GraphCell", ".mindir"),
)}
DEFAULT_FORMAT = {"torch": "onnx", "paddle": "paddle-inference", "mindspore": "mindir"}
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
    tolerance: float = 1e-4
    export_s: float = 0.0
    passed: bool = False


def resolve_format(fmt: str | None, framework: str | None) -> ExportFormat:
    """The format asked for; ``-f`` alone picks its framework's deployment format, both must agree."""
    from .frameworks import resolve_framework

    fw = resolve_framework(framework).name if framework else None
    if fmt is None:
        if fw is None:
            raise UsageError("give --format (onnx, torchscript, paddle-inference, mindir) or -f FRAMEWORK")
        if fw not in DEFAULT_FORMAT:
            raise UsageError(f"{fw} has no deployment format of its own; export --format onnx (the weights are "
                             "the same in every framework)")
        return FORMATS[DEFAULT_FORMAT[fw]]
    key = fmt.strip().lower().replace("_", "-")
    if key not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    chosen = FORMATS[key]
    if fw is not None and fw != chosen.framework:
        raise UsageError(f"{chosen.name} is exported from {chosen.framework}, not {fw}: drop -f, or use "
                         f"-f {chosen.framework} (any checkpoint converts to it)")
    return chosen


def _check_writable(out: Path, fmt: ExportFormat) -> None:
    """Refuse an output that cannot be written before any work starts."""
    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"{out}: the directory {directory} does not exist; create it first")
    try:
        fd, probe = tempfile.mkstemp(prefix=".zoo-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write in {directory} ({exc.strerror})") from None
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
           source: str = "official", sources_file: str | None = None, out: str | Path | None = None,
           image_size: int | None = None, features_only: bool = False, out_indices=None,
           tolerance: float = 1e-4, device: str = "cpu") -> ExportResult:
    from .errors import CheckpointFormatError, VerificationFailed
    from .evaluate import _model_of
    from .frameworks import check_device
    from .progress import say
    from .spec import plan
    from .worker import require_installed, run_worker

    chosen = resolve_format(fmt, framework)
    fw = chosen.framework
    # Everything that can be refused is refused before weights are fetched or anything is built.
    require_installed(fw)
    if chosen.name == "onnx":
        from .frameworks import FRAMEWORKS
        from .frameworks import _runtime_installed

        if not _runtime_installed(FRAMEWORKS["torch"], "onnxruntime"):
            from .errors import FrameworkNotInstalledError

            raise FrameworkNotInstalledError("ONNX export needs onnx, onnxscript and onnxruntime (to check the "
                                             "file); install with: pip install 'res2net-zoo[onnx]'")
    if weights and not Path(weights).is_file():
        raise CheckpointFormatError(f"{weights}: no such file")
    label, spec, variant = _model_of(model, weights)
    indices = None
    if features_only:
        indices = list(plan(spec).outputs(True, out_indices).indices)
    elif out_indices is not None:
        raise UsageError("--out-indices selects stage outputs: give it with --features-only")
    out = Path(out) if out else Path(f"{label.replace(' ', '_')}{'-features' if features_only else ''}"
                                     f"{chosen.suffix or '-' + chosen.name}")
    _check_writable(out, chosen)
    check_device(fw, device)
    if weights is None:
        if variant is None:
            raise UsageError("a custom model needs --weights")
        from .hub import fetch

        weights = str(fetch(label, "safetensors", source=source, sources_file=sources_file))
        weights_label = f"released ({source})"
    else:
        weights_label = Path(weights).name
    if variant is not None:  # the classifier as the file has it
        from .convert import identify_model
        from .converters.read import read_raw

        spec = identify_model(read_raw(weights), Path(weights), label)[1]
    size = image_size or (variant.preprocessing.input_size if variant else 224)
    reference_fw = "torch" if require_or_none("torch") else fw
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
        (d / "export.json").write_text(json.dumps(job))
        with _failure_as(VerificationFailed, f"{chosen.name} export of {label} failed in {fw}"):
            run_worker(fw, "export", str(d / "export.json"))
        export_s = time.perf_counter() - started
        say(f"checking the artefact in {chosen.runtime} at batch {' and '.join(map(str, CHECK_BATCHES))}")
        names = [f"feature{i}" for i in indices] if indices is not None else ["logits"]
        outputs = [str(d / f"out{b}.npz") for b in CHECK_BATCHES]
        check = {"format": chosen.name, "directory": str(staged), "inputs": inputs, "outputs": outputs,
                 "names": names, "device": device}
        (d / "check.json").write_text(json.dumps(check))
        with _failure_as(VerificationFailed, f"the {chosen.name} artefact of {label} failed in {chosen.runtime}"):
            run_worker(fw, "run-deployed", str(d / "check.json"))
        references = _reference(reference_fw, spec, f"{label} reference", weights, inputs, indices, d)
        result = ExportResult(label, chosen.name, fw, chosen.runtime, str(out), [],
                              ["batch", spec.in_chans, size, size], names, weights_label,
                              f"{reference_fw} ({'cpu, eager' if reference_fw == 'torch' else 'its first mode'}, fp32)"
                              + ("" if reference_fw == "torch" else "; torch is not installed"),
                              tolerance=tolerance, export_s=round(export_s, 2))
        from .verify import relative

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


def require_or_none(framework: str) -> bool:
    from .frameworks import resolve_framework

    return resolve_framework(framework).is_installed()


def _reference(framework: str, spec, spec_label: str, weights: str, inputs: list[str], indices, d: Path) -> list[list[np.ndarray]]:
    """The reference outputs per input: the logits, or the selected stage outputs."""
    from .worker import run_worker

    jobs = [{"spec": spec.to_json(), "label": spec_label, "weights": weights, "input": x, "output": str(d / f"ref{i}.npz"),
             "features": True} for i, x in enumerate(inputs)]
    (d / "reference.json").write_text(json.dumps(jobs))
    run_worker(framework, "logits", str(d / "reference.json"))
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
    import importlib

    from .frameworks import resolve_framework

    return importlib.import_module(f"{resolve_framework(framework).backend_module}.deploy")


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
