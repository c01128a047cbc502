"""``zoo verify``: logit and stage-by-stage parity of a framework port with the PyTorch reference.

For each model the torch reference and the candidate run in separate processes on the same
deterministic input and the same canonical weights: the ones given, else the pretrained download
when it is in the cache, else realistic random weights (calibrated BatchNorm statistics; see
frameworks/torch/calibrate.py), labelled as such. The candidate runs from its native file,
converted the way ``zoo convert`` does, so the whole user path is checked.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .convert import EXTENSIONS, convert
from .errors import ZooError
from .frameworks import REFERENCE, resolve_framework
from .parity import PARITY_LIMIT, relative
from .spec import VARIANTS, Res2NetSpec, feature_info, get_spec, list_variants, resolve_name
from .worker import run_job



@dataclass
class Comparison:
    model: str
    framework: str
    weights: str
    image_size: int
    device: str = "cpu"
    mode: str = ""
    reference: str = "torch (cpu, eager, fp32)"
    stages: list[dict] = field(default_factory=list)   # module, max_abs, rel
    logits_max_abs: float = 0.0
    logits_rel: float = 0.0
    top1_agreement: float = 0.0
    first_stage_over: str | None = None   # where the port first leaves the limit
    passed: bool = False


def _pretrained_if_cached(name: str) -> Path | None:
    from .hub import resolve_source
    from .pretrained import cached

    try:
        hit = cached(resolve_source(name))
        return hit.path if hit is not None else None
    except ZooError:  # no source, bad manifest, cached file that fails its check: random weights
        return None


def model_targets(models: list[str] | None) -> dict[str, Res2NetSpec]:
    """label -> spec of the models to check: registered names or aliases, or JSON files of custom
    specs (labelled by the file name); every registered variant when none is given."""
    from .errors import UsageError

    if not models:
        return {v.name: v.spec for v in list_variants()}
    targets = {}
    for m in models:
        if m.endswith(".json") and Path(m).is_file():
            try:
                targets[Path(m).stem] = Res2NetSpec.from_json(Path(m).read_text())
            except ValueError as exc:
                raise UsageError(f"{m}: {exc}") from None
        else:
            name = resolve_name(m)
            targets[name] = get_spec(name)
    return targets


def prepare_weights(targets: dict[str, Res2NetSpec], weights: str | None, d: Path,
                    random_size: int) -> tuple[dict, dict]:
    """Canonical safetensors per model in ``d`` and how each was obtained: the file given, else
    the pretrained download when it is in the cache, else realistic random weights (calibrated
    BatchNorm statistics at ``random_size`` px, one torch worker for all of them)."""
    canonical, labels, random_jobs = {}, {}, []
    for label, spec in targets.items():
        registered = label in VARIANTS and VARIANTS[label].spec == spec
        source = Path(weights) if weights else (_pretrained_if_cached(label) if registered else None)
        out = d / f"{len(canonical) + len(random_jobs)}.safetensors"
        if source is not None and registered:
            canonical[label] = convert(source, "safetensors", model=label, out=out)
            labels[label] = f"given {source.name}" if weights else "pretrained (cached)"
        elif source is not None:  # a custom spec: its file read against it, strictly
            canonical[label] = _custom_canonical(source, spec, label, out)
            labels[label] = f"given {source.name}"
        else:
            random_jobs.append({"spec": spec.to_json(), "label": label, "out": str(out), "size": random_size})
    if random_jobs:
        _log(f"zoo verify: realistic random weights for {len(random_jobs)} model(s) (torch worker)")
        run_job(REFERENCE, "calibrate", random_jobs, d)
        for job in random_jobs:
            canonical[job["label"]] = Path(job["out"])
            labels[job["label"]] = "random, calibrated BN"
    return canonical, labels


def written_spec(canonical: Path) -> Res2NetSpec:
    """The spec a canonical file was written for: the classifier as its source had it (MindCV's
    1001 classes), which a registered name alone does not say."""
    from safetensors import safe_open

    with safe_open(str(canonical), "numpy") as f:
        return Res2NetSpec.from_json(f.metadata()["zoo.spec"])


def _custom_canonical(source: Path, spec: Res2NetSpec, label: str, out: Path) -> Path:
    from .convert import write_canonical
    from .hub import sha256_file
    from .converters.read import read_canonical
    from .converters.state import match_layout

    state, _ = match_layout(read_canonical(source, spec), spec, model_name=label)
    write_canonical(state, out, {"zoo.model": label, "zoo.spec": spec.to_json(), "zoo.source": source.name,
                                 "zoo.sha256": sha256_file(source), "zoo.flavour": "torch"})
    return out


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def checked_request(framework: str, models: list[str] | None, weights: str | None) -> tuple[str, dict]:
    """(framework, label -> spec) of a verify request whose models and weights make sense."""
    from .errors import CheckpointFormatError, UsageError

    fw = resolve_framework(framework).name
    targets = model_targets(models)
    if weights and len(targets) != 1:
        raise UsageError("--weights belongs to one model: give exactly one model with it")
    if weights and not Path(weights).is_file():
        raise CheckpointFormatError(f"{weights}: no such file")
    return fw, targets


def require_frameworks(fw: str) -> None:
    """The reference and the candidate, installed."""
    from .worker import require_installed

    require_installed(REFERENCE)
    require_installed(fw)


def verify(framework: str, models: list[str] | None = None, *, weights: str | None = None, device: str = "cpu",
           mode: str | None = None, tolerance: float = PARITY_LIMIT, image_size: int | None = None,
           batch: int = 2) -> list[Comparison]:
    from .preflight import check_device, check_mode

    # Everything that can be refused is refused before any weights or references are computed.
    fw, targets = checked_request(framework, models, weights)
    names = list(targets)
    require_frameworks(fw)
    mode = check_mode(fw, mode)
    check_device(fw, device)
    results = []
    with tempfile.TemporaryDirectory(prefix="zoo-verify-") as tmp:
        d = Path(tmp)
        canonical, labels = prepare_weights(targets, weights, d, image_size or 64)
        sizes = {n: image_size or (64 if labels[n].startswith("random") else 224) for n in names}
        reference_jobs, candidate_jobs = [], []
        for i, name in enumerate(names, 1):
            spec = targets[name] = written_spec(canonical[name])
            x = np.random.default_rng(0).standard_normal((batch, spec.in_chans, sizes[name], sizes[name]))
            np.save(d / f"{i}-x.npy", x.astype(np.float32))
            _log(f"[{i}/{len(names)}] {name}: converting to {fw}")
            native = convert(canonical[name], fw, out=d / f"{i}{EXTENSIONS[fw]}")
            common = {"spec": spec.to_json(), "label": name, "input": str(d / f"{i}-x.npy"), "features": True}
            reference_jobs.append(common | {"weights": str(canonical[name]), "output": str(d / f"{i}-ref.npz")})
            candidate_jobs.append(common | {"weights": str(native), "output": str(d / f"{i}-cand.npz"),
                                            "device": device, "mode": mode})
        _log(f"zoo verify: torch reference for {len(names)} model(s)")
        run_job(REFERENCE, "logits", reference_jobs, d)
        _log(f"zoo verify: {fw} on {device} ({mode}) for {len(names)} model(s)")
        run_job(fw, "logits", candidate_jobs, d)
        for n, name in enumerate(names, 1):
            ref, cand = np.load(d / f"{n}-ref.npz"), np.load(d / f"{n}-cand.npz")
            result = Comparison(name, fw, labels[name], sizes[name], device, mode)
            for i, info in enumerate(feature_info(targets[name])):
                max_abs, rel = relative(cand[f"feature{i}"], ref[f"feature{i}"])
                result.stages.append({"module": info.module, "max_abs": max_abs, "rel": rel})
            result.logits_max_abs, result.logits_rel = relative(cand["logits"], ref["logits"])
            result.top1_agreement = float((cand["logits"].argmax(1) == ref["logits"].argmax(1)).mean())
            over = [s["module"] for s in result.stages if s["rel"] > tolerance]
            result.first_stage_over = over[0] if over else ("logits" if result.logits_rel > tolerance else None)
            result.passed = result.first_stage_over is None
            results.append(result)
    return results


def as_json(results: list[Comparison]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2)


def as_table(results: list[Comparison], tolerance: float) -> str:
    """The report, readable on its own: what was compared with what, the limit beside the figures
    it applies to, and for a failure the first stage that leaves the limit (where the port goes
    wrong; later stages only inherit the difference)."""
    if not results:
        return "no models verified"
    first = results[0]
    columns = [("model", 24, "<"), ("weights", 22, "<"), ("px", 4, ">"), (f"worst stage rel (<= {tolerance:g})", 28, ">"),
               (f"logits rel (<= {tolerance:g})", 21, ">"), ("top-1 same", 10, ">"), ("first over limit", 16, "<"),
               ("result", 6, "<")]
    header = "  ".join(f"{title:{align}{width}}" for title, width, align in columns)
    lines = [f"{first.framework} on {first.device} ({first.mode}) against the reference {first.reference}, "
             "same weights, same input", header, "-" * len(header)]
    for r in results:
        worst = max(r.stages, key=lambda s: s["rel"])
        cells = [r.model, r.weights[:22], str(r.image_size), f"{worst['rel']:.2e} at {worst['module']}",
                 f"{r.logits_rel:.2e}", f"{r.top1_agreement:.0%}", r.first_stage_over or "-",
                 "PASS" if r.passed else "FAIL"]
        lines.append("  ".join(f"{c:{align}{width}}" for c, (_, width, align) in zip(cells, columns)).rstrip())
    passed = sum(r.passed for r in results)
    lines += [f"{passed}/{len(results)} passed",
              "rel = max|candidate - reference| / max(1, max|reference|), for every stage output (features_only) and the "
              "logits; the limit applies to each.",
              "top-1 same = share of the test inputs whose predicted class is the same in both."]
    return "\n".join(lines)
