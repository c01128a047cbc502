"""``zoo verify --train``: does a port *train* like the PyTorch reference?

From the same canonical weights, the same batches and the same labels, the reference (torch) and
the candidate each run K training steps in their own process, with their own BatchNorm in train
mode and their own optimizer configured by zoo to torch's SGD semantics (``zoo.training.SGD``):

1. the train-mode forward of step 1: every stage output, and the loss;
2. its backward: the gradient of every parameter, by canonical name;
3. after each step: the BatchNorm running statistics, the momentum buffers and the parameters;
4. the loss of every step: the curve.

Quantities are compared in the order a step produces them, so the first one over its limit is
where the port goes wrong (gradients in backward order: the one nearest the loss first); later
ones only inherit the difference. Limits: stage outputs, losses, statistics and parameters use
the parity limit ``max|d| / max(1, max|reference|)``; gradients and momentum buffers, which are
small, are relative to the largest value of that tensor in the reference (its L-infinity norm).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import UsageError
from .spec import Res2NetSpec, canonical_layout
from .training import SGD
from .parity import GRADIENT_LIMIT, PARITY_LIMIT, relative, relative_to_peak

DEFAULT_STEPS = 3
DEFAULT_BATCH = 4
# models trained per worker start: a framework's import outweighs a small model's steps, while each
# model's saved steps take a few hundred MB of temporary disk until compared
MODELS_PER_WORKER = 3
# Fine-tuning's scale: the paper's 0.1 is for batch 256; at batch 4 on random labels it makes the
# reference's own loss run away (res2net50: 9.7, 22.8, 34.6 over three steps).
DEFAULT_LR = 0.01
_KINDS = ("stage", "loss", "gradient", "statistic", "momentum", "parameter")


@dataclass
class TrainComparison:
    model: str
    framework: str
    weights: str
    image_size: int
    batch: int
    steps: int
    optimizer: str
    device: str = "cpu"
    mode: str = ""
    reference: str = "torch (cpu, eager, fp32)"
    losses: list[dict] = field(default_factory=list)   # step, reference, candidate, rel
    worst: dict[str, dict] = field(default_factory=dict)  # kind -> name, step, rel, limit
    checked: dict[str, int] = field(default_factory=dict)  # kind -> how many values were compared
    first_over: dict | None = None   # kind, name, step, rel, limit, note: where the port goes wrong
    kinks_followed: list[int] = field(default_factory=list)  # per step: ReLU inputs within rounding of 0
    kinks_note: str = ""             # why the reference's kinks were not followed, where they were not
    passed: bool = False

    @property
    def first_over_text(self) -> str | None:
        return describe(self.first_over) if self.first_over else None


def describe(check: dict) -> str:
    what = {"stage": f"stage {check['name']} (train mode)", "loss": "loss",
            "gradient": f"gradient of {check['name']}", "statistic": check["name"],
            "momentum": f"momentum buffer of {check['name']}", "parameter": check["name"]}[check["kind"]]
    when = f" after step {check['step']}" if check["kind"] in ("statistic", "momentum", "parameter") else (
        f" at step {check['step']}" if check["kind"] == "loss" else "")
    return what + when + (f": {check['note']}" if check.get("note") else "")


def forward_order(spec: Res2NetSpec) -> list[str]:
    """Parameter names in the order the forward pass uses them: the canonical (registration) order,
    with each block's split convolutions and BatchNorms interleaved as they run."""
    names = [t.name for t in canonical_layout(spec) if t.trainable]
    split = re.compile(r"^(.*)\.(convs|bns)\.(\d+)\.(\w+)$")
    order, seen = [], set()
    for name in names:
        m = split.match(name)
        if not m:
            order.append(name)
            continue
        if m[1] in seen:
            continue
        seen.add(m[1])
        members = [n for n in names if (s := split.match(n)) and s[1] == m[1]]
        order += sorted(members, key=lambda n: (int(split.match(n)[3]), split.match(n)[2] == "bns", n))
    return order


# --- worker command (see zoo.worker) ---------------------------------------------------------


def _save_kinks(path: Path, kinks: list[np.ndarray]) -> None:
    # ReLU decisions as bits, max-pool choices as bytes; the order of the calls is kept
    arrays = {(f"relu{i}" if k.dtype == np.bool_ else f"pool{i}"): (np.packbits(k.reshape(-1)) if k.dtype == np.bool_
                                                                   else k) for i, k in enumerate(kinks)}
    np.savez(path, **arrays, shapes=np.array([json.dumps(list(k.shape)) for k in kinks]))


def _load_kinks(path: Path) -> list[np.ndarray]:
    data = np.load(path)
    shapes = [tuple(json.loads(s)) for s in data["shapes"]]
    return [data[f"pool{i}"] if f"pool{i}" in data.files else
            np.unpackbits(data[f"relu{i}"], count=int(np.prod(shape))).reshape(shape).astype(bool)
            for i, shape in enumerate(shapes)]


def run_train_check(framework: str, jobs: list[dict]) -> None:
    """Worker command ``train-check``: K training steps per job, every quantity saved by canonical
    name: ``features.npz`` and ``grads.npz`` (step 1), ``state<k>.npz`` (parameters and BatchNorm
    statistics) and ``momentum<k>.npz`` after step k, ``run.json`` (losses). The reference records
    its ReLU decisions (``kinks<k>.npz``); a candidate ``follow``-ing it starts every step from the
    reference's state and takes its side of the kinks within rounding (zoo.training.KINK_WINDOW)."""
    import importlib

    from .frameworks import resolve_framework
    from .progress import say
    from .training import KinksDiffer

    backend = resolve_framework(framework).backend("train")
    for i, job in enumerate(jobs, 1):
        if len(jobs) > 1:
            say(f"{framework}: training {job.get('label', job.get('model'))} ({i}/{len(jobs)})")
        try:
            _train_steps(framework, backend, job, follow_kinks=True)
        except KinksDiffer as exc:  # another graph: compared as it is, the stage outputs will say where
            say(f"note: {job.get('label')}: the ports make different ReLU calls ({exc}); kinks not followed")
            _train_steps(framework, backend, job, follow_kinks=False, note=str(exc))


def _train_steps(framework: str, backend, job: dict, *, follow_kinks: bool, note: str = "") -> None:
    from . import create_model
    from .converters.tables import from_native, to_native
    from .frameworks._common import job_spec, runner_class

    _, spec = job_spec(job)
    device = job.get("device", "cpu")
    runner_class(framework)(device, job.get("mode"))  # device and mode, as verify sets them
    trainer = backend.Trainer(create_model(spec, framework, weights=job["weights"]), SGD(**job["sgd"]), device)
    data = np.load(job["data"])
    images, labels = data["images"], data["labels"]
    lead = Path(job["follow"]) if job.get("follow") else None
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    losses, followed = [], []
    for k in range(1, len(images) + 1):
        options = {"record_kinks": True} if job.get("record_kinks") else {}
        if lead is not None:
            if k > 1:  # every step from the reference's state: a difference is this step's own
                trainer.load_state(to_native(dict(np.load(lead / f"state{k - 1}.npz")), spec, framework),
                                   to_native(dict(np.load(lead / f"momentum{k - 1}.npz")), spec, framework))
            if follow_kinks:
                options = {"kinks": _load_kinks(lead / f"kinks{k}.npz")}
        step = trainer.step(np.ascontiguousarray(images[k - 1]), labels[k - 1], inspect=k == 1, **options)
        losses.append(step.loss)
        followed.append(step.followed)
        if job.get("record_kinks"):
            _save_kinks(out / f"kinks{k}.npz", step.kinks)
        if k == 1:
            np.savez(out / "features.npz", **{f"feature{j}": f for j, f in enumerate(step.features)})
            np.savez(out / "grads.npz", **from_native(step.grads, spec, framework))
        np.savez(out / f"state{k}.npz", **from_native(trainer.named_state(), spec, framework))
        np.savez(out / f"momentum{k}.npz", **from_native(trainer.momentum_buffers(), spec, framework))
    (out / "run.json").write_text(json.dumps({"losses": losses, "followed": followed,
                                              "kink_calls": len(step.kinks), "note": note}))


# --- comparison -------------------------------------------------------------------------------


class _Checks:
    """Collects the comparisons in the order a step produces them; the first over its limit wins."""

    def __init__(self, result: TrainComparison):
        self.result = result

    def add(self, kind: str, name: str, step: int, rel: float, limit: float, note: str = "") -> None:
        r = self.result
        r.checked[kind] = r.checked.get(kind, 0) + 1
        entry = {"kind": kind, "name": name, "step": step, "rel": rel, "limit": limit}
        if kind not in r.worst or rel > r.worst[kind]["rel"]:
            r.worst[kind] = entry
        if (rel > limit or note) and r.first_over is None:
            r.first_over = entry | ({"note": note} if note else {})


def compare(result: TrainComparison, spec: Res2NetSpec, ref: Path, cand: Path, tolerance: float,
            grad_tolerance: float) -> TrainComparison:
    checks = _Checks(result)
    layout = canonical_layout(spec)
    statistics = [t.name for t in layout if t.role in ("bn_mean", "bn_var")]
    parameters = [t.name for t in layout if t.trainable]
    ref_run, cand_run = (json.loads((p / "run.json").read_text()) for p in (ref, cand))
    ref_losses, cand_losses = ref_run["losses"], cand_run["losses"]
    result.kinks_followed = cand_run["followed"]
    result.kinks_note = cand_run["note"]
    fw = result.framework
    for step in range(1, result.steps + 1):
        loss_rel = abs(cand_losses[step - 1] - ref_losses[step - 1]) / max(1.0, abs(ref_losses[step - 1]))
        result.losses.append({"step": step, "reference": ref_losses[step - 1], "candidate": cand_losses[step - 1],
                              "rel": loss_rel})
        if step == 1:
            ref_f, cand_f = np.load(ref / "features.npz"), np.load(cand / "features.npz")
            for i, info in enumerate(spec.plan().features):
                checks.add("stage", info.module, 1, relative(cand_f[f"feature{i}"], ref_f[f"feature{i}"])[1], tolerance)
            checks.add("loss", "loss", 1, loss_rel, tolerance)
            ref_g, cand_g = np.load(ref / "grads.npz"), np.load(cand / "grads.npz")
            for name in reversed(forward_order(spec)):
                if name not in cand_g or (not np.any(cand_g[name]) and np.any(ref_g[name])):
                    checks.add("gradient", name, 1, float("inf"), grad_tolerance,
                               f"received no gradient in {fw} (frozen, or cut from the loss)")
                else:
                    checks.add("gradient", name, 1, relative_to_peak(cand_g[name], ref_g[name]), grad_tolerance)
        else:
            checks.add("loss", "loss", step, loss_rel, tolerance)
        ref_s, cand_s = np.load(ref / f"state{step}.npz"), np.load(cand / f"state{step}.npz")
        for name in statistics:
            checks.add("statistic", name, step, relative(cand_s[name], ref_s[name])[1], tolerance)
        ref_m, cand_m = np.load(ref / f"momentum{step}.npz"), np.load(cand / f"momentum{step}.npz")
        for name in parameters:
            if name not in cand_m:
                checks.add("momentum", name, step, float("inf"), grad_tolerance, f"{fw}'s optimizer holds no buffer "
                           "for it (not trainable?)")
            else:
                checks.add("momentum", name, step, relative_to_peak(cand_m[name], ref_m[name]), grad_tolerance)
        for name in parameters:
            checks.add("parameter", name, step, relative(cand_s[name], ref_s[name])[1], tolerance)
    result.passed = result.first_over is None
    return result


# --- the command ------------------------------------------------------------------------------


def _batches(spec: Res2NetSpec, steps: int, batch: int, size: int, seed: int = 0,
             data: str | None = None) -> dict[str, np.ndarray]:
    """Random images, or the first ``steps`` batches ``zoo train`` takes from ``data`` with this
    seed (zoo.train_data, augmentation off)."""
    if data is not None:
        from .spec import Preprocessing
        from .train_data import Batches, scan

        folder = scan(data)
        if len(folder.classes) > spec.num_classes:
            raise UsageError(f"--data {data}: {len(folder.classes)} classes, more than the model's "
                             f"{spec.num_classes}")
        batches = Batches(folder, Preprocessing(), image_size=size, batch_size=batch, seed=seed)
        taken = [batches.batch(k // batches.steps_per_epoch, k % batches.steps_per_epoch) for k in range(steps)]
        return {"images": np.stack([x for x, _ in taken]), "labels": np.stack([y for _, y in taken])}
    rng = np.random.default_rng(seed)
    return {"images": rng.standard_normal((steps, batch, spec.in_chans, size, size)).astype(np.float32),
            "labels": rng.integers(0, spec.num_classes, (steps, batch)).astype(np.int64)}


def _log(message: str) -> None:
    from .progress import say

    say(message)


def verify_train(framework: str, models: list[str], *, weights: str | None = None, device: str = "cpu",
                 mode: str | None = None, tolerance: float = PARITY_LIMIT,
                 grad_tolerance: float = GRADIENT_LIMIT, image_size: int | None = None,
                 batch: int = DEFAULT_BATCH, steps: int = DEFAULT_STEPS, sgd: SGD | None = None,
                 data: str | None = None, seed: int = 0) -> list[TrainComparison]:
    from .convert import EXTENSIONS, convert
    from .frameworks import REFERENCE
    from .preflight import check_device, check_train_mode
    from .verify import checked_request, prepare_weights, require_frameworks, written_spec
    from .worker import run_job

    sgd = sgd or SGD(lr=DEFAULT_LR)
    fw, targets = checked_request(framework, models, weights)
    if steps < 1 or batch < 2:
        raise UsageError("--steps must be at least 1 and --batch-size at least 2 (BatchNorm in train mode needs "
                         "more than one value per channel)")
    headless = [label for label, spec in targets.items() if spec.num_classes == 0]
    if headless:
        raise UsageError(f"{', '.join(headless)}: no classifier to train; --train needs a model with one")
    require_frameworks(fw)
    mode = check_train_mode(fw, mode)
    check_device(fw, device)
    results = []
    with tempfile.TemporaryDirectory(prefix="zoo-verify-train-") as tmp:
        d = Path(tmp)
        canonical, labels = prepare_weights(targets, weights, d, image_size or 64)
        order = list(targets)
        for start in range(0, len(order), MODELS_PER_WORKER):
            chunk = {i: order[i - 1] for i in range(start + 1, min(start + MODELS_PER_WORKER, len(order)) + 1)}
            ref_jobs, cand_jobs, sizes = [], [], {}
            for i, label in chunk.items():
                spec = written_spec(canonical[label])
                sizes[i] = size = image_size or (64 if labels[label].startswith("random") else 224)
                batches = d / f"{i}-data.npz"
                np.savez(batches, **_batches(spec, steps, batch, size, seed, data))
                _log(f"[{i}/{len(targets)}] {label}: converting to {fw}")
                native = convert(canonical[label], fw, out=d / f"{i}{EXTENSIONS[fw]}")
                common = {"spec": spec.to_json(), "label": label, "data": str(batches), "sgd": sgd.as_dict()}
                ref_jobs.append(common | {"weights": str(canonical[label]), "out": str(d / f"{i}-ref"),
                                          "record_kinks": True})
                cand_jobs.append(common | {"weights": str(native), "out": str(d / f"{i}-cand"), "device": device,
                                           "mode": mode, "follow": str(d / f"{i}-ref")})
            # The reference first: the candidate follows its state and kinks step by step. One worker
            # per side for the chunk: starting a framework costs more than a small model's steps.
            names = ", ".join(chunk.values())
            for who, worker, jobs in ((f"the reference {REFERENCE}", REFERENCE, ref_jobs), (fw, fw, cand_jobs)):
                _log(f"zoo verify --train: {names}, {steps} step(s) in {who}")
                run_job(worker, "train-check", jobs, d)
            for i, label in chunk.items():
                result = TrainComparison(label, fw, labels[label], sizes[i], batch, steps, sgd.describe(), device,
                                         mode)
                results.append(compare(result, written_spec(canonical[label]), d / f"{i}-ref", d / f"{i}-cand",
                                       tolerance, grad_tolerance))
                for run in ("ref", "cand"):  # hundreds of MB per model: gone before the next chunk
                    shutil.rmtree(d / f"{i}-{run}", ignore_errors=True)
    return results


# --- the report -------------------------------------------------------------------------------


def as_json(results: list[TrainComparison]) -> str:
    return json.dumps([asdict(r) | {"first_over_text": r.first_over_text} for r in results], indent=2)


def as_table(results: list[TrainComparison], tolerance: float, grad_tolerance: float) -> str:
    if not results:
        return "no models verified"
    first = results[0]
    columns = [("model", 24, "<"), ("weights", 22, "<"), ("px x b", 7, ">"),
               (f"loss (<= {tolerance:g})", 15, ">"), (f"stages (<= {tolerance:g})", 17, ">"),
               (f"grads (<= {grad_tolerance:g})", 17, ">"), (f"BN stats (<= {tolerance:g})", 19, ">"),
               (f"momentum (<= {grad_tolerance:g})", 20, ">"), (f"params (<= {tolerance:g})", 17, ">"),
               ("result", 6, "<")]
    header = "  ".join(f"{title:{align}{width}}" for title, width, align in columns)
    lines = [f"{first.framework} on {first.device} ({first.mode}) training against the reference {first.reference}: "
             f"same weights, same {first.steps} batch(es), {first.optimizer}", header, "-" * len(header)]
    for r in results:
        worst = {k: r.worst.get(k, {}).get("rel", 0.0) for k in _KINDS}
        cells = [r.model[:24], r.weights[:22], f"{r.image_size}x{r.batch}", f"{worst['loss']:.2e}",
                 f"{worst['stage']:.2e}", f"{worst['gradient']:.2e}", f"{worst['statistic']:.2e}",
                 f"{worst['momentum']:.2e}", f"{worst['parameter']:.2e}", "PASS" if r.passed else "FAIL"]
        lines.append("  ".join(f"{c:{align}{width}}" for c, (_, width, align) in zip(cells, columns)).rstrip())
        if not r.passed:
            lines.append(f"    first over its limit: {r.first_over_text} (rel {r.first_over['rel']:.2e} > "
                         f"{r.first_over['limit']:g})")
    passed = sum(r.passed for r in results)
    lines += [f"{passed}/{len(results)} passed",
              "compared: every stage output and the loss of step 1, the gradient of every parameter (step 1), then after "
              "each step the BatchNorm statistics, momentum buffers and parameters, and every step's loss; each step of "
              "the port starts from the reference's state.",
              "loss, stages, BN stats, params: max|d| / max(1, max|reference|); grads, momentum: max|d| / max|reference| "
              "per tensor (L-inf); the worst of each is shown."]
    return "\n".join(lines)
