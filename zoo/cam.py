"""``zoo cam``: class activation maps in every framework (the paper's Figure 4 as a command).

Grad-CAM (Selvaraju et al.), as the paper uses it: the gradient of the class **logit** (not its
softmax probability) with respect to a stage's output A, averaged over the positions into one
weight per channel, w_c = mean_ij dy/dA_cij, and the map ReLU(sum_c w_c A_c) at the stage's
resolution. Grad-CAM++ (``--method gradcam++``) weighs the positive gradients by
alpha = g^2 / (2 g^2 + sum_ij A * g^3), as pytorch-grad-cam does. The forward and backward run in
the framework's worker (each backend's ``explain`` module); the map is computed from the
activation and gradient in numpy, the same for every framework, so the same weights give the
same map. The picture min-max scales each map, as pytorch-grad-cam does; ``--map`` saves it raw.

The image is preprocessed as ``zoo eval`` does (the variant's resize and center crop), and the
picture shows it as the model saw it, at its size.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import UnreadableImageError, UsageError

METHODS = ("gradcam", "gradcam++")


@lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """Class index -> its WordNet lemmas ("tabby, tabby cat"), from the table shipped in zoo/data
    (generated from timm's synset files)."""
    from importlib.resources import files

    rows = [line.split("\t") for line in files("zoo").joinpath("data/imagenet_classes.tsv").read_text().splitlines()
            if line and not line.startswith("#")]
    return [lemmas for _, _, lemmas in rows]


def label_of(index: int, num_classes: int) -> str:
    return imagenet_labels()[index] if num_classes == 1000 else f"class {index}"


def class_map(activation: np.ndarray, gradient: np.ndarray, method: str = "gradcam") -> np.ndarray:
    """(N, C, h, w) activation and gradient -> (N, h, w) maps, float32, not normalized."""
    a, g = activation.astype(np.float64), gradient.astype(np.float64)
    if method == "gradcam":
        weights = g.mean(axis=(2, 3))
    else:  # Grad-CAM++
        g2, g3 = g ** 2, g ** 3
        denominator = 2 * g2 + a.sum(axis=(2, 3), keepdims=True) * g3
        alpha = g2 / np.where(denominator != 0, denominator, 1.0)
        weights = (alpha * np.maximum(g, 0)).sum(axis=(2, 3))
    return np.maximum((weights[:, :, None, None] * a).sum(axis=1), 0).astype(np.float32)


def scaled(maps: np.ndarray) -> np.ndarray:
    """Each map to [0, 1]: minus its minimum, over its maximum."""
    low = maps.min(axis=(1, 2), keepdims=True)
    return (maps - low) / (1e-7 + (maps - low).max(axis=(1, 2), keepdims=True))


@dataclass
class CamResult:
    model: str
    framework: str
    layer: str
    method: str
    images: list[dict] = field(default_factory=list)  # image, class, label, logit, probability
    map_shape: list[int] = field(default_factory=list)
    output: str = ""
    map_file: str | None = None


# --- worker command (see zoo.worker) -----------------------------------------------------------


def run_cam_job(framework: str, job: dict) -> None:
    """Worker command ``cam``: logits, the stage output and its gradient, into ``job["out"]``."""
    from .frameworks import resolve_framework
    from .frameworks._common import inference_model, job_spec, runner_class

    _, spec = job_spec(job)
    runner_class(framework)(job.get("device", "cpu"), None)  # the device, as the other commands set it
    model = inference_model(framework, spec, job["weights"])
    logits, activation, gradient = resolve_framework(framework).backend("explain").activation_and_gradient(
        model, np.load(job["images"]), job["layer_index"], job.get("classes"))
    np.savez(job["out"], logits=logits, activation=activation, gradient=gradient)


# --- the picture -------------------------------------------------------------------------------


def render(crops: list[np.ndarray], maps: np.ndarray, captions: list[str], path: Path) -> None:
    """The images as the model saw them, each with its map over it, a colour bar and a caption:
    one image per tile, each tile exactly the image's size, up to four tiles a row."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from PIL import Image

    height, width = crops[0].shape[:2]
    columns = min(len(crops), 4)
    rows = math.ceil(len(crops) / columns)
    dpi = 100
    figure = Figure(figsize=(columns * width / dpi, rows * height / dpi), dpi=dpi)
    norm = Normalize(0.0, 1.0)
    for i, (crop, cam, caption) in enumerate(zip(crops, scaled(maps), captions)):
        row, column = divmod(i, columns)
        left, bottom, w, h = column / columns, 1 - (row + 1) / rows, 1 / columns, 1 / rows
        axes = figure.add_axes((left, bottom, w, h))
        axes.imshow(crop)
        upsampled = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((width, height),
                                                                                         Image.BILINEAR))
        axes.imshow(np.clip(upsampled, 0, 1), cmap="jet", norm=norm, alpha=0.45)
        axes.set_axis_off()
        axes.text(0.5, 0.98, caption, transform=axes.transAxes, ha="center", va="top", fontsize=7, color="white",
                  bbox={"facecolor": "black", "alpha": 0.6, "pad": 2, "edgecolor": "none"})
        bar = figure.add_axes((left + 0.1 * w, bottom + 0.04 * h, 0.8 * w, 0.035 * h))
        colorbar = figure.colorbar(ScalarMappable(norm=norm, cmap=colormaps["jet"]), cax=bar, orientation="horizontal")
        colorbar.ax.tick_params(labelsize=6, colors="white", length=2, pad=1)
        colorbar.outline.set_edgecolor("white")
    FigureCanvasAgg(figure).print_png(str(path))


# --- the command -------------------------------------------------------------------------------


def cam(name: str | None, framework: str, images: list[str], out: str | Path, *, weights: str | None = None,
        source: str | None = None, klass: int | None = None, layer: str | None = None, method: str = "gradcam",
        map_file: str | Path | None = None, device: str = "cpu", image_size: int | None = None) -> CamResult:
    import dataclasses

    from .atomic import atomic_output, check_writable
    from .errors import CheckpointFormatError
    from .evaluate import center_crop, model_of, model_weights, normalize
    from .frameworks import resolve_framework
    from .preflight import check_device
    from .progress import say
    from .spec import Preprocessing
    from .worker import require_installed, run_job

    fw = resolve_framework(framework).name
    # Everything that can be refused is refused before any weights are fetched or models built.
    if not images:
        raise UsageError("give at least one --image")
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if weights and not Path(weights).is_file():
        raise CheckpointFormatError(f"{weights}: no such file")
    require_installed(fw)
    label, spec, variant = model_of(name, weights)
    stages = [f.module for f in spec.plan().features]
    layer = layer or stages[-1]
    if layer not in stages:
        raise UsageError(f"{label} has no stage {layer!r}; its stages: {', '.join(stages)}")
    if spec.num_classes == 0:
        raise UsageError(f"{label} has no classifier, so no class to explain")
    if klass is not None and not 0 <= klass < spec.num_classes:
        raise UsageError(f"--class {klass} is out of range: {label} has classes 0 to {spec.num_classes - 1}")
    for target in (out, map_file):
        if target is not None:
            check_writable(target)
    pre = variant.preprocessing if variant else Preprocessing()
    if image_size:
        pre = dataclasses.replace(pre, input_size=image_size)
    missing = [p for p in images if not Path(p).is_file()]
    if missing:
        raise UnreadableImageError(f"{missing[0]}: no such file")
    crops = [center_crop(Path(p), pre) for p in images]  # an unreadable image: one line, exit 4
    check_device(fw, device)
    spec, weights = model_weights(label, spec, variant, weights, fw, source=source)
    if klass is not None and klass >= spec.num_classes:
        raise UsageError(f"--class {klass} is out of range: the weights have classes 0 to {spec.num_classes - 1}")
    say(f"{method} of {label} at {layer} in {fw}, {len(crops)} image(s)")
    with tempfile.TemporaryDirectory(prefix="zoo-cam-") as tmp:
        d = Path(tmp)
        np.save(d / "images.npy", np.stack([normalize(c, pre) for c in crops]))
        job = {"spec": spec.to_json(), "label": label, "weights": str(weights), "images": str(d / "images.npy"),
               "layer_index": stages.index(layer), "classes": None if klass is None else [klass] * len(crops),
               "device": device, "out": str(d / "cam.npz")}
        run_job(fw, "cam", job, d)
        result = np.load(d / "cam.npz")
        logits, activation, gradient = result["logits"], result["activation"], result["gradient"]
    maps = class_map(activation, gradient, method)
    chosen = logits.argmax(1) if klass is None else np.full(len(crops), klass)
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    summary = CamResult(label, fw, layer, method, map_shape=list(maps.shape[1:]), output=str(out),
                        map_file=str(map_file) if map_file else None)
    captions = []
    for path, k, row, p in zip(images, chosen, logits, probabilities):
        k = int(k)
        summary.images.append({"image": str(path), "class": k, "label": label_of(k, spec.num_classes),
                               "logit": float(row[k]), "probability": float(p[k])})
        name = label_of(k, spec.num_classes).split(",")[0]  # the first of the lemmas fits a tile
        captions.append(f"{name} ({k})  p {p[k]:.2f}  {layer}")
    with atomic_output(out) as picture:  # both files, or neither
        render(crops, maps, captions, picture)
        if map_file is not None:
            with atomic_output(map_file) as raw, open(raw, "wb") as f:
                np.save(f, maps)
    return summary


def as_json(result: CamResult) -> str:
    return json.dumps(asdict(result), indent=2)
