"""ImageNet-style evaluation with one preprocessing for every framework.

Decoding, resizing (short side), center cropping and normalizing are done here with Pillow and
numpy, so every framework sees the same tensors; only the forward pass is the framework's. The
evaluation runs inside a worker process of the framework (``zoo.worker FW eval``).

Data: the standard folder layout (``DIR/<wnid>/*.JPEG``, classes in sorted order) or a list
file (``relative/path label`` per line, paths relative to the list file's directory).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .errors import UnreadableImageError, UsageError
from .spec import Preprocessing

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}


def list_samples(data: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """(path, label) pairs and the class names."""
    data = Path(data)
    if data.is_dir():
        classes = sorted(d.name for d in data.iterdir() if d.is_dir())
        samples = [(p, label) for label, c in enumerate(classes)
                   for p in sorted((data / c).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    elif data.is_file():
        samples, classes = [], []
        for number, line in enumerate(data.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rel, label = line.rsplit(maxsplit=1)
                samples.append((data.parent / rel, int(label)))
            except ValueError:
                raise UsageError(f"{data}:{number}: expected 'relative/path label', got {line!r}") from None
    else:
        raise UsageError(f"{data}: no such directory or list file")
    if not samples:
        raise UsageError(f"{data}: no images found (expected DIR/<class>/*.JPEG or a list file)")
    return samples, classes


def center_crop(path: Path, pre: Preprocessing) -> np.ndarray:
    """The image as the model sees it, before normalizing: RGB uint8 HWC, short side resized to
    ``pre.resize_size``, center crop of ``pre.input_size``."""
    from PIL import Image

    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[pre.interpolation]
    try:
        img = Image.open(path)
        img.load()
    except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
        raise UnreadableImageError(f"{path}: not a readable image ({type(exc).__name__}); "
                                   "remove or replace it") from None
    with img:
        img = img.convert("RGB")
        w, h = img.size
        target = pre.resize_size
        size = (target, int(target * h / w)) if w <= h else (int(target * w / h), target)
        if (w, h) != size:
            img = img.resize(size, resample)
        w, h = img.size
        crop = pre.input_size
        left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
        return np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


def normalize(crop: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """CHW float32, scaled to [0, 1] and normalized with the variant's mean and std."""
    arr = crop.astype(np.float32) / 255.0
    arr = (arr - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def preprocess(path: Path, pre: Preprocessing) -> np.ndarray:
    """CHW float32: RGB, short side resized to ``pre.resize_size``, center crop, normalized."""
    return normalize(center_crop(path, pre), pre)


def run_eval_job(framework: str, job: dict) -> None:
    """Worker command ``eval``: writes a JSON result (and optionally the predictions). Under a
    launcher (zoo.distributed) each rank evaluates its own shard; counts are summed and the
    predictions gathered in dataset order, and rank 0 alone writes the predictions."""
    import math

    from .distributed import check, shard
    from .frameworks import resolve_framework
    from .frameworks._common import job_spec, runner_class
    from .progress import progress

    _, spec = job_spec(job)
    pre = Preprocessing(**job["preprocessing"])
    samples, _ = list_samples(job["data"])
    if job.get("limit"):
        samples = samples[: job["limit"]]
    launch = check(framework)
    device = job.get("device", "cpu")
    if launch is not None and launch.scheduler:
        # Serve the ranks until they are done; MindSpore ends this process from inside init().
        Path(job["output"]).write_text(json.dumps({"rank": -1}))
        resolve_framework(framework).backend("collective").Collective(device)
        return
    runner = runner_class(framework)(device, job.get("mode"))
    collective = None
    if launch is not None:
        collective = resolve_framework(framework).backend("collective").Collective(device)
    rank, world = (collective.rank, collective.world_size) if collective else (0, 1)
    model = runner.load(spec, job.get("weights"))
    batch_size = job.get("batch_size", 32)
    # One untimed pass at the evaluation's shape: graph compilation (MindSpore GRAPH, Jittor) and
    # a runtime's export happen here, so images/s is the steady rate in every mode.
    runner(model, np.zeros((min(batch_size, len(samples)), spec.in_chans, pre.input_size, pre.input_size), np.float32))
    n = len(samples)
    begin, end = shard(n, rank, world)
    mine = samples[begin:end]
    # Every rank takes the same number of steps (the largest shard's), so the progress count can
    # be summed at each step; a rank whose shard is done contributes nothing.
    steps = math.ceil(math.ceil(n / world) / batch_size)
    top1 = top5 = 0
    predictions, infer_seconds = [], 0.0
    wall = time.perf_counter()
    with progress(n, f"eval {framework}" + (f" ({world} ranks)" if world > 1 else ""), enabled=rank == 0) as bar:
        for step in range(steps):
            chunk = mine[step * batch_size:(step + 1) * batch_size]
            if chunk:
                batch = np.stack([preprocess(p, pre) for p, _ in chunk])
                labels = np.array([label for _, label in chunk])
                t = time.perf_counter()
                logits = runner(model, batch)
                infer_seconds += time.perf_counter() - t
                ranked = np.argsort(-logits, axis=1, kind="stable")[:, :5]
                top1 += int((ranked[:, 0] == labels).sum())
                top5 += int((ranked == labels[:, None]).any(axis=1).sum())
                predictions.extend(int(i) for i in ranked[:, 0])
            bar.update(int(collective.sum([len(chunk)])[0]) if collective else len(chunk))
    if collective:
        total_top1, total_top5, images, seconds = collective.sum([top1, top5, len(mine), infer_seconds])
        longest = math.ceil(n / world)
        padded = np.full(longest, -1, np.int32)
        padded[:len(predictions)] = predictions
        rows = collective.gather(padded)
        predictions = [int(p) for r in range(world) for p in rows[r][:shard(n, r, world)[1] - shard(n, r, world)[0]]]
        collective.close()
        infer_seconds = seconds / world  # the ranks ran side by side
        top1, top5 = int(total_top1), int(total_top5)
        if int(images) != n or len(predictions) != n:
            raise RuntimeError(f"the ranks evaluated {int(images)} images and returned {len(predictions)} "
                               f"predictions for {n}")
    result = {
        "framework": framework, "device": device, "images": n, "world_size": world, "rank": rank,
        "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n,
        "images_per_s": n / infer_seconds if infer_seconds else None,
        "wall_s": time.perf_counter() - wall,
    }
    if job.get("predictions") and rank == 0:
        np.save(job["predictions"], np.array(predictions, dtype=np.int64))
    Path(job["output"]).write_text(json.dumps(result))


def model_of(name: str | None, weights: str | None):
    """(label, spec, registered variant or None): a name, a JSON spec file, or — without a name —
    the checkpoint itself, identified exactly as ``zoo convert`` identifies it."""
    from .spec import Res2NetSpec, get_variant

    if name is not None and name.endswith(".json") and Path(name).is_file():
        try:
            return Path(name).stem, Res2NetSpec.from_json(Path(name).read_text()), None
        except ValueError as exc:
            raise UsageError(f"{name}: {exc}") from None
    if name is not None:
        variant = get_variant(name)
        return variant.name, variant.spec, variant
    if not weights:
        raise UsageError("give a model NAME, or --weights to identify it from")
    from .convert import identify_model
    from .converters.read import read_raw
    from .spec import VARIANTS

    label, spec = identify_model(read_raw(weights), Path(weights), None)
    return label, spec, VARIANTS.get(label)


def model_weights(label: str, spec, variant, weights: str | None, target: str, *, source: str | None = None,
                  sources_file: str | None = None):
    """(spec, weights file) to run: the file given, or the variant's released weights fetched for
    ``target``; the spec's classifier as the file has it (MindCV's factory default is 1001 classes)."""
    if weights is None:
        if variant is None:
            raise UsageError("a custom model needs --weights")
        from .pretrained import fetch

        weights = str(fetch(label, target, source=source, sources_file=sources_file))
    if variant is not None:
        from .convert import identify_model
        from .converters.read import read_raw

        spec = identify_model(read_raw(weights), Path(weights), label)[1]
    return spec, weights


def evaluate(name: str | None, framework: str, data: str | Path, *, weights: str | None = None,
             source: str | None = None, device: str = "cpu", mode: str | None = None, batch_size: int = 32,
             limit: int | None = None, image_size: int | None = None, predictions: str | None = None) -> dict:
    """Run ``zoo eval`` in a worker of ``framework``; returns the result with the published figure."""
    import dataclasses
    import tempfile

    from .errors import CheckpointFormatError
    from .frameworks import resolve_framework
    from .preflight import check_device, check_mode
    from .worker import require_installed, run_job

    from .distributed import check

    fw = resolve_framework(framework).name
    # Everything that can be refused is refused before any weights are fetched or images read.
    require_installed(fw)
    check(fw)  # under a launcher, the framework's own
    chosen = mode
    mode = check_mode(fw, mode, purpose="eval")
    if weights and not Path(weights).is_file():
        raise CheckpointFormatError(f"{weights}: no such file")
    if batch_size < 1 or (limit is not None and limit < 1):
        raise UsageError("--batch-size and --limit must be at least 1")
    list_samples(data)
    check_device(fw, device)
    label, spec, variant = model_of(name, weights)
    if chosen is None:  # said once the request is known to be valid, so a refusal stays one line
        from .progress import say

        say(f"{fw} runs in its {mode} mode (the default for eval: exact and fastest here; --mode to choose)")
    pre = variant.preprocessing if variant else Preprocessing()
    if image_size:
        pre = dataclasses.replace(pre, input_size=image_size)
    spec, weights = model_weights(label, spec, variant, weights, fw, source=source)
    with tempfile.TemporaryDirectory(prefix="zoo-eval-") as tmp:
        out = Path(tmp) / "result.json"
        job = {"spec": spec.to_json(), "weights": str(weights), "data": str(data), "device": device, "mode": mode,
               "batch_size": batch_size, "limit": limit, "output": str(out), "predictions": predictions,
               "preprocessing": dataclasses.asdict(pre)}
        run_job(fw, "eval", job, tmp)
        result = json.loads(out.read_text())
    published = variant.published if variant else None
    return {"model": label, "mode": mode, **result, "published_top1": published.top1 if published else None,
            "published_top5": published.top5 if published else None}
