"""The training loop, inside a worker process of the framework (``zoo.worker FW train``).

The loop is the same for every framework: batches from ``zoo.train_data``, the learning rate
from the recipe (a function of the step), the step from the backend's ``Trainer``. What it
writes into RUNDIR, each file atomically or append-only:

    metrics.jsonl            one line per step {step, epoch, loss, lr, images_per_s} and one per
                             validation {step, epoch, top1, val_loss}
    checkpoint.safetensors   canonical parameters, BatchNorm statistics and momentum buffers
                             ("momentum." + name), and in its metadata the step it was written
                             at and the length metrics.jsonl had then

A run killed at any point resumes from the checkpoint: metrics.jsonl is cut back to the length
recorded there (steps after it are run again), and since the data order and the learning rate
follow from the seed and the step alone, the resumed run takes the same steps.

Under a launcher (``zoo.distributed``) every rank draws the same global batch and takes its
contiguous share of it; the gradients are averaged over the ranks (equal shares, so the mean of
the ranks' means is the global batch's), the loss logged is the ranks' mean, and rank 0 alone
validates and writes RUNDIR. BatchNorm is per rank unless the job says ``sync_bn``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .atomic import atomic_output

MOMENTUM = "momentum."


def checkpoint_progress(path: Path) -> dict:
    """The step a checkpoint was written at and the metrics' length then (its metadata alone)."""
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return json.loads(f.metadata()["zoo.progress"])


def read_checkpoint(path: Path) -> tuple[dict, dict, dict]:
    """(canonical state, canonical momentum buffers, progress) of a checkpoint file."""
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    progress = checkpoint_progress(path)
    state = {k: v for k, v in tensors.items() if not k.startswith(MOMENTUM)}
    momentum = {k[len(MOMENTUM):]: v for k, v in tensors.items() if k.startswith(MOMENTUM)}
    return state, momentum, progress


def write_safetensors(path: Path, tensors: dict, metadata: dict[str, str]) -> None:
    """Atomically, through zoo's own partial file: safetensors' ``save_file`` makes a temporary
    file of its own beside the target, which a killed run would leave in RUNDIR."""
    from safetensors.numpy import save

    data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=metadata)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def _write_checkpoint(path: Path, state: dict, momentum: dict, progress: dict) -> None:
    write_safetensors(path, {**state, **{MOMENTUM + k: v for k, v in momentum.items()}},
                      {"zoo.progress": json.dumps(progress)})


def _validate(trainer, val) -> tuple[float, float]:
    """Top-1 (%) and mean cross-entropy of the eval-mode model over the whole validation set."""
    correct, loss, n = 0, 0.0, 0
    for i in range(val.steps_per_epoch):
        images, labels = val.batch(0, i)
        logits = trainer.predict(images).astype(np.float64)
        shifted = logits - logits.max(1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        loss -= float(log_p[np.arange(len(labels)), labels].sum())
        correct += int((logits.argmax(1) == labels).sum())
        n += len(labels)
    return 100.0 * correct / n, loss / n


def run_train_job(framework: str, job: dict) -> None:
    from . import create_model
    from .converters.tables import from_native, to_native
    from .frameworks import resolve_framework
    from .frameworks._common import runner_class
    from .progress import progress, say
    from .recipes import Recipe
    from .spec import Preprocessing, Res2NetSpec
    from .train_data import Batches, scan

    from .distributed import check, shard

    spec = Res2NetSpec.from_json(job["spec"])
    recipe = Recipe(**job["recipe"])
    rundir = Path(job["rundir"])
    device = job.get("device", "cpu")
    pre = Preprocessing(**job["preprocessing"])
    launch = check(framework, "train")
    if launch is not None and launch.scheduler:
        # msrun's scheduler serves the ranks until they are done; MindSpore ends it inside init()
        resolve_framework(framework).backend("collective").Collective(device)
        return
    runner_class(framework)(device, None)  # the device set up as every worker command sets it
    collective = None
    if launch is not None:
        collective = resolve_framework(framework).backend("collective").Collective(device)
        # a barrier: rank 0 has prepared RUNDIR (fresh or resumed) before any rank reads it
        collective.sum([0.0])
    rank, world = (collective.rank, collective.world_size) if collective else (0, 1)
    primary = rank == 0
    train = Batches(scan(job["data"]), pre, image_size=job["image_size"], batch_size=recipe.batch_size,
                    augment=job["augment"], seed=job["seed"])
    val = None
    if job.get("val"):
        val = Batches(scan(job["val"], "--val"), pre, image_size=job["image_size"], batch_size=recipe.batch_size,
                      shuffle=False, drop_last=False)
    backend = resolve_framework(framework).backend("train")
    trainer = backend.Trainer(create_model(spec, framework, weights=job["init"]), recipe.sgd(), device,
                              label_smoothing=recipe.label_smoothing, collective=collective,
                              sync_bn=bool(job.get("sync_bn")))
    metrics_path, checkpoint = rundir / "metrics.jsonl", rundir / "checkpoint.safetensors"
    start = 0
    if checkpoint.is_file():
        state, momentum, done = read_checkpoint(checkpoint)
        trainer.load_state(to_native(state, spec, framework), to_native(momentum, spec, framework))
        start = done["step"]
        if primary and metrics_path.exists():
            with metrics_path.open("r+b") as f:  # the steps after the checkpoint are taken again
                f.truncate(done["metrics_bytes"])
        if primary:
            say(f"resuming {rundir} at step {start} (epoch {start // train.steps_per_epoch + 1})")
    if collective is not None:
        _check_same_start(collective, trainer)
    per_epoch = train.steps_per_epoch
    total = recipe.epochs * per_epoch
    every = job.get("checkpoint_every") or per_epoch

    def save(step: int, metrics) -> None:
        if not primary:
            return
        metrics.flush()
        _write_checkpoint(checkpoint, from_native(trainer.named_state(), spec, framework),
                          from_native(trainer.momentum_buffers(), spec, framework),
                          {"step": step, "metrics_bytes": metrics.tell()})

    with metrics_path.open("a") if primary else open(os.devnull, "w") as metrics:
        step = start
        while step < total:
            epoch, first = divmod(step, per_epoch)
            with progress(per_epoch, f"epoch {epoch + 1}/{recipe.epochs}", unit="step", initial=first,
                          enabled=primary) as bar:
                for i in range(first, per_epoch):
                    lr = recipe.lr_at(step, per_epoch)
                    trainer.set_lr(lr)
                    images, labels = train.batch(epoch, i)
                    began = time.perf_counter()
                    if collective is None:
                        loss = trainer.step(images, labels).loss
                    else:
                        begin, end = shard(len(labels), rank, world)
                        own = trainer.step(images[begin:end], labels[begin:end]).loss
                        loss = float(collective.sum([own])[0]) / world
                    seconds = time.perf_counter() - began
                    step += 1
                    metrics.write(json.dumps({"step": step, "epoch": epoch + 1, "loss": loss, "lr": lr,
                                              "images_per_s": round(len(labels) / seconds, 2)}) + "\n")
                    bar.update(1)
                    if hasattr(bar, "set_postfix"):
                        bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{len(labels) / seconds:.1f}")
                    if step % every == 0 and step % per_epoch:
                        save(step, metrics)
            if val is not None and primary:
                top1, val_loss = _validate(trainer, val)
                metrics.write(json.dumps({"step": step, "epoch": epoch + 1, "top1": top1, "val_loss": val_loss}) + "\n")
                say(f"epoch {epoch + 1}/{recipe.epochs}: loss {loss:.4f}, validation top-1 {top1:.2f}%")
            elif primary:
                say(f"epoch {epoch + 1}/{recipe.epochs}: loss {loss:.4f}")
            save(step, metrics)
    if primary:
        _write_final(framework, backend, trainer, spec, rundir, job)
    if collective is not None:
        collective.sum([0.0])  # every rank stays until rank 0 has written the final weights
        collective.close()


def _check_same_start(collective, trainer) -> None:
    """Every rank starts from rank 0's weights: each computed them itself (the same numbers from
    the same files and seed), and a rank that did not would silently train another model."""
    state = trainer.named_state()
    fingerprint = np.array([sum(float(np.abs(v).sum(dtype=np.float64)) for v in state.values())], np.float32)
    ranks = collective.gather(fingerprint).reshape(-1)
    if not np.all(ranks == ranks[0]):
        raise RuntimeError(f"the ranks start from different weights (fingerprints {ranks.tolist()}); "
                           "give every rank the same --weights and RUNDIR")


def _write_final(framework: str, backend, trainer, spec, rundir: Path, job: dict) -> None:
    from .converters.native_files import numpy_writer
    from .converters.tables import from_native, to_native
    from .frameworks import FRAMEWORKS

    native = trainer.named_state()
    canonical = from_native(native, spec, framework)
    metadata = {"zoo.model": job["label"], "zoo.spec": spec.to_json(), "zoo.classes": json.dumps(job["classes"]),
                "zoo.recipe": json.dumps(job["recipe"]), "zoo.trained_with": framework, "zoo.flavour": "torch"}
    write_safetensors(rundir / "model.safetensors", canonical, metadata)
    save = numpy_writer(framework) or FRAMEWORKS[framework].backend("io").save_native
    with atomic_output(rundir / f"model{FRAMEWORKS[framework].extension}") as tmp:
        save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in to_native(canonical, spec, framework).items()},
             tmp)
