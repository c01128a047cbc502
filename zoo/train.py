"""``zoo train``: fine-tune (or train) a Res2Net in any framework with one recipe.

This process imports no framework. It checks everything a run needs before any work (the data,
every image, the class count, RUNDIR), makes the starting weights in numpy (``init.safetensors``:
the released or given weights, a new head drawn from the seed where the class count changes, or
a whole model drawn from the seed), so every framework starts from the same numbers, and runs
the loop (``zoo.train_loop``) in a worker of the framework. RUNDIR::

    run.json                 what the run is: model, spec, classes, recipe, seed, data, settings
    init.safetensors         the starting weights, canonical
    metrics.jsonl            one line per step, one per validation
    checkpoint.safetensors   the latest checkpoint (every epoch, and every --checkpoint-every steps)
    model.safetensors        the final weights, canonical, with zoo's metadata (variant, classes, recipe)
    model<ext>               the same in the framework's native format
    curves.png               loss and validation top-1 against the step

Running again into the same RUNDIR (or ``--resume``) continues from the checkpoint; a RUNDIR
holding another run is refused.

Under torchrun, ``python -m paddle.distributed.launch`` or msrun every rank runs this command:
rank 0 checks and prepares RUNDIR, the others check the request, make the same starting weights
in a private directory and touch RUNDIR only to read a checkpoint to resume from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_output, check_writable, sweep_stale_partials
from .errors import OutputError, UnknownNameError, UsageError
from .recipes import get_recipe

HEAD = ("fc.weight", "fc.bias")


@dataclass
class TrainResult:
    rundir: str
    framework: str
    model: str
    steps: int
    final_loss: float
    top1: float | None
    weights: str
    native: str
    curves: str
    resumed_from: int
    world_size: int = 1
    batchnorm: str = "whole batch"  # or per rank, synced over the ranks


def _seeded_state(spec, seed: int, only: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Weights drawn in numpy from ``seed`` (the same in every framework): convolutions He-normal
    (fan-out, as the official code initialises them), BatchNorm at identity, the classifier
    uniform in +-1/sqrt(fan-in) (torch's Linear default) with a zero bias."""
    from .spec import canonical_layout

    rng = np.random.default_rng([seed, 2024])
    state = {}
    for t in canonical_layout(spec):
        if only is not None and t.name not in only:
            continue
        if t.name == "fc.weight":
            bound = 1.0 / np.sqrt(t.shape[1])
            value = rng.uniform(-bound, bound, t.shape)
        elif t.name == "fc.bias":
            value = np.zeros(t.shape)
        elif t.role == "conv_weight":
            fan_out = t.shape[0] * int(np.prod(t.shape[2:]))
            value = rng.standard_normal(t.shape) * np.sqrt(2.0 / fan_out)
        elif t.role in ("bn_weight", "bn_var"):
            value = np.ones(t.shape)
        else:  # BatchNorm biases and means, other biases
            value = np.zeros(t.shape)
        state[t.name] = value.astype(np.float32)
    return state


def initial_state(label: str, spec, *, weights: str | None, pretrained: bool, source: str | None,
                  seed: int) -> tuple[dict[str, np.ndarray], str]:
    """The canonical starting weights and where they came from."""
    from .converters.read import read_canonical
    from .spec import canonical_layout

    if not (weights or pretrained):
        return _seeded_state(spec, seed), f"drawn from seed {seed}"
    if pretrained:
        from .pretrained import fetch

        weights, origin = str(fetch(label, None, source=source)), f"released weights of {label}"
    else:
        origin = str(weights)
    from .converters.state import match_layout

    state = read_canonical(weights, spec)
    wanted = {t.name: t.shape for t in canonical_layout(spec)}
    if any(tuple(np.shape(state.get(k, ()))) != wanted[k] for k in HEAD):
        state.update(_seeded_state(spec, seed, only=HEAD))
        origin += f", new {spec.num_classes}-class head drawn from seed {seed}"
    state, _ = match_layout({k: v for k, v in state.items() if k in wanted or not k.startswith("fc.")}, spec,
                            model_name=label)
    return {k: np.ascontiguousarray(state[k], dtype=np.float32) for k in wanted}, origin


def _check_rundir(rundir: Path) -> None:
    """RUNDIR can be written (or created): checked before anything else, created only after."""
    if rundir.exists():
        if not rundir.is_dir():
            raise OutputError(f"{rundir}: not a directory; -o names the run directory")
        check_writable(rundir / "run.json")
    else:
        check_writable(rundir)


def _make_rundir(rundir: Path) -> None:
    try:
        rundir.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{rundir}: cannot create the run directory ({exc.strerror})") from None


def _same_run(rundir: Path, run: dict, resume: bool) -> bool:
    """Whether RUNDIR already holds this run (then it continues); refuses another run."""
    path = rundir / "run.json"
    if not path.is_file():
        if resume:
            raise UsageError(f"{rundir}: no run to resume (no run.json); drop --resume to start one")
        return False
    try:
        held = json.loads(path.read_text())
    except ValueError:
        raise UsageError(f"{rundir}/run.json is not valid JSON; choose another -o") from None
    if (held.get("model"), held.get("spec")) != (run["model"], run["spec"]):
        raise UsageError(f"{rundir} holds a run of {held.get('model')}, not {run['model']}; choose another -o")
    differ = sorted(k for k in set(run) | set(held) if held.get(k) != run.get(k))
    if differ:
        raise UsageError(f"{rundir} holds a run of {run['model']} with other settings ({', '.join(differ)}); "
                         "resume it with the same options, or choose another -o")
    return True


def train(model: str, framework: str, data: str, rundir: str | Path, *, val: str | None = None,
          weights: str | None = None, pretrained: bool = False, source: str | None = None,
          num_classes: int | None = None, recipe: str = "finetune", epochs: int | None = None,
          batch_size: int | None = None, lr: float | None = None, image_size: int | None = None,
          augment: str = "none", seed: int = 0, device: str = "cpu", resume: bool = False,
          checkpoint_every: int | None = None, sync_bn: bool = False) -> TrainResult | None:
    """The run's summary; None on the ranks other than 0 (and msrun's scheduler) of a launch."""
    from .frameworks import FRAMEWORKS, resolve_framework
    from .preflight import check_device
    from .progress import say
    from .spec import get_variant
    from .train_data import AUGMENTS, check_images, scan
    from .verify import model_targets
    from .worker import require_installed, run_job

    from .distributed import check

    fw = resolve_framework(framework).name
    require_installed(fw)
    launch = check(fw, "train")  # under a launcher, the framework's own
    world, primary = (launch.world_size, launch.rank == 0) if launch else (1, True)
    check_device(fw, device)
    if weights and pretrained:
        raise UsageError("give either --weights FILE or --pretrained, not both")
    if augment not in AUGMENTS:
        raise UsageError(f"unknown --augment {augment!r}; choose one of: {', '.join(AUGMENTS)}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise UsageError("--checkpoint-every must be at least 1 step")
    ((label, spec),) = model_targets([model]).items()
    rundir = Path(rundir)
    if primary:
        _check_rundir(rundir)
    rec = get_recipe(recipe, epochs=epochs, batch_size=batch_size, lr=lr)
    if rec.batch_size % world:
        raise UsageError(f"--batch-size {rec.batch_size} (the global batch) does not split evenly over {world} "
                         f"ranks; give a multiple of {world}")
    folder = scan(data)
    classes = list(folder.classes)
    if num_classes is not None and num_classes != len(classes):
        raise UsageError(f"--num-classes {num_classes} disagrees with --data {data}: {len(classes)} class folders")
    if val:
        val_folder = scan(val, "--val")
        if list(val_folder.classes) != classes:
            raise UsageError(f"--val {val}: its classes ({', '.join(val_folder.classes[:5])} ...) are not those "
                             f"of --data ({', '.join(classes[:5])} ...)")
    spec = spec.replace(num_classes=len(classes))
    try:
        pre = get_variant(label).preprocessing
    except UnknownNameError:  # a custom spec: the standard preprocessing
        from .spec import Preprocessing

        pre = Preprocessing()
    size = image_size or pre.input_size
    run = {"model": label, "spec": spec.to_json(), "framework": fw, "classes": classes,
           "recipe": rec.as_dict(), "seed": seed, "image_size": size, "augment": augment,
           "data": str(Path(data).resolve()), "val": str(Path(val).resolve()) if val else None,
           "weights": str(weights) if weights else ("pretrained" if pretrained else None),
           "source": source, "checkpoint_every": checkpoint_every}
    if world > 1:  # only then, so that a one-process run.json reads as it always has
        run.update(world_size=world, sync_bn=sync_bn)
    batchnorm = "whole batch" if world == 1 else ("synced over the ranks" if sync_bn else "per rank")
    job = {"spec": spec.to_json(), "label": label, "classes": classes, "recipe": rec.as_dict(),
           "rundir": str(rundir), "device": device, "data": str(data), "val": val, "image_size": size,
           "augment": augment, "seed": seed, "checkpoint_every": checkpoint_every, "sync_bn": sync_bn,
           "preprocessing": {"input_size": pre.input_size, "crop_pct": pre.crop_pct,
                             "interpolation": pre.interpolation, "mean": list(pre.mean), "std": list(pre.std)}}
    if not primary:
        return _follow(fw, label, spec, job, weights=weights, pretrained=pretrained, source=source, seed=seed,
                       scheduler=launch.scheduler)
    continuing = _same_run(rundir, run, resume)
    check_images(folder)
    if val:
        check_images(val_folder)
    _make_rundir(rundir)
    sweep_stale_partials(rundir)  # a run killed while writing leaves its temporary file
    checkpoint = rundir / "checkpoint.safetensors"
    resumed_from = 0
    if continuing and checkpoint.is_file():
        from .train_loop import checkpoint_progress

        resumed_from = checkpoint_progress(checkpoint)["step"]
    init = rundir / "init.safetensors"
    if not (continuing and init.is_file()):
        from .train_loop import write_safetensors

        state, origin = initial_state(label, spec, weights=weights, pretrained=pretrained, source=source, seed=seed)
        write_safetensors(init, state, {"zoo.model": label, "zoo.spec": spec.to_json(), "zoo.origin": origin})
        say(f"{label} on {fw}: starting from {origin}")
        (rundir / "metrics.jsonl").unlink(missing_ok=True)
        checkpoint.unlink(missing_ok=True)
        with atomic_output(rundir / "run.json") as tmp:
            tmp.write_text(json.dumps(run, indent=2))
    say(f"{label} on {fw} ({device}): {rec.describe()}; {len(folder)} images, {len(classes)} classes, "
        f"{size} px, augment {augment}, seed {seed}")
    if world > 1:
        say(f"{world} ranks of {rec.batch_size // world} images each step; BatchNorm {batchnorm}"
            + ("" if sync_bn else " (--sync-bn for the global batch's statistics)"))
    if rec.left_out:
        say(f"note: recipe {rec.name} also uses {rec.left_out}; zoo's pipeline does not")
    run_job(fw, "train", {**job, "init": str(init)})
    rows = [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    curves = plot_curves(rows, rundir / "curves.png", f"{label} on {fw}, recipe {rec.name}")
    steps = [r for r in rows if "loss" in r]
    tops = [r["top1"] for r in rows if "top1" in r]
    return TrainResult(str(rundir), fw, label, steps[-1]["step"] if steps else 0,
                       steps[-1]["loss"] if steps else float("nan"), tops[-1] if tops else None,
                       str(rundir / "model.safetensors"), str(rundir / f"model{FRAMEWORKS[fw].extension}"),
                       str(curves), resumed_from, world, batchnorm)


def _follow(fw: str, label: str, spec, job: dict, *, weights, pretrained: bool, source, seed: int,
            scheduler: bool) -> None:
    """A rank other than 0: the same starting weights as rank 0's, made in a private directory
    (rank 0 may be writing RUNDIR meanwhile), and the worker run on them."""
    import tempfile

    from .train_loop import write_safetensors
    from .worker import run_job

    with tempfile.TemporaryDirectory(prefix="zoo-rank-") as tmp:
        init = Path(tmp) / "init.safetensors"
        if not scheduler:  # msrun's scheduler trains nothing
            state, _ = initial_state(label, spec, weights=weights, pretrained=pretrained, source=source, seed=seed)
            write_safetensors(init, state, {})
        run_job(fw, "train", {**job, "init": str(init)}, tmp)
    return None


def plot_curves(rows: list[dict], out: Path, title: str) -> Path:
    """Loss per step (and its running mean) and validation top-1, against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    tops = [(r["step"], r["top1"]) for r in rows if "top1" in r]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    if steps:
        x, y = np.array(steps).T
        ax.plot(x, y, color="#9ab", lw=0.8, label="loss per step")
        k = max(1, len(y) // 20)
        if k > 1:
            smooth = np.convolve(y, np.ones(k) / k, mode="valid")
            ax.plot(x[k - 1:], smooth, color="#246", lw=1.6, label=f"mean of {k} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if tops:
        right = ax.twinx()
        tx, ty = np.array(tops).T
        right.plot(tx, ty, "o-", color="#c52", lw=1.4, label="validation top-1")
        right.set_ylabel("validation top-1 (%)")
        right.set_ylim(0, 100)
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, loc="center right")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
