"""The ``zoo`` command. Thin: parse, call, print. Data goes to stdout, messages to stderr.

Known errors (:class:`zoo.errors.ZooError`) become one line on stderr and their exit code;
set ZOO_DEBUG=1 for the traceback. No framework is imported unless a command needs one.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Optional

import typer

from . import spec as zspec
from .errors import ZooError
from .frameworks import FRAMEWORKS, REFERENCE, export_formats, modes_help
from .frameworks import names as framework_names
from .parity import GRADIENT_LIMIT, PARITY_LIMIT

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Res2Net model zoo for PyTorch, MindSpore, PaddlePaddle and Jittor.",
    pretty_exceptions_enable=False,
)


def _user_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ZooError as exc:
            if os.environ.get("ZOO_DEBUG") == "1":
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _summary(v: zspec.Variant) -> dict:
    pub = v.published
    return {
        "name": v.name,
        "title": v.title,
        "aliases": list(v.aliases),
        "params": zspec.param_count(v.spec),
        "gflops": round(zspec.gflops(v.spec), 3),
        "top1": pub.top1 if pub else None,
        "top5": pub.top5 if pub else None,
        "published_params_m": pub.params_m if pub else None,
        "published_gflops": pub.gflops if pub else None,
        "weights": [s.tag for s in v.sources],
        # each source's own published top-1 (the peers' trainings differ from the paper's)
        "weights_top1": {s.tag: s.top1 if s.top1 is not None else (pub.top1 if pub and s.framework == "torch"
                                                                    else None) for s in v.sources},
        "graph": v.graph,
    }


@app.command("list")
@_user_errors
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print a JSON list for machines.")):
    """Every variant: parameters, GFLOPs (multiply-adds at 224), published top-1, weights."""
    rows = [_summary(v) for v in zspec.list_variants()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    header = f"{'name':28} {'params':>8} {'GFLOPs':>7} {'top-1':>6}  {'weights (top-1)':56} aliases"
    typer.echo(header)
    typer.echo("-" * len(header))
    for r in rows:
        top1 = f"{r['top1']:.2f}" if r["top1"] is not None else "-"
        weights = ", ".join(tag + (f" {t:.2f}" if (t := r["weights_top1"][tag]) is not None else "")
                            for tag in r["weights"]) or "none"
        typer.echo(f"{r['name']:28} {r['params'] / 1e6:7.2f}M {r['gflops']:7.2f} {top1:>6}  "
                   f"{weights:56} {', '.join(r['aliases'])}")


def _info(v: zspec.Variant) -> dict:
    s = v.spec
    out = _summary(v)
    out.update({
        "spec": {
            "topology": s.topology, "depths": list(s.depths), "base_width": s.base_width,
            "scale": s.scale, "cardinality": s.cardinality, "stem": s.stem, "shortcut": s.shortcut,
            "stage_blocks": s.stage_blocks, "stage_pool_count_pad": s.stage_pool_count_pad,
            "stage_pool_stride1": s.stage_pool_stride1, "graph": v.graph,
            "se": s.se, "channels": list(s.channels), "num_classes": s.num_classes,
        },
        "params_with_bn_stats": zspec.param_count(s, with_bn_stats=True),
        "params_official_checkpoint": zspec.param_count(s, with_unused=True),
        "gflops_official_code": round(zspec.gflops(s, with_unused=True), 3),
        "features": [{"index": i, "module": f.module, "channels": f.channels, "reduction": f.reduction}
                     for i, f in enumerate(zspec.feature_info(s))],
        "default_out_indices": list(zspec.plan(s).default_out_indices),
        "preprocessing": {
            "input_size": v.preprocessing.input_size, "resize_size": v.preprocessing.resize_size,
            "crop_pct": v.preprocessing.crop_pct, "interpolation": v.preprocessing.interpolation,
            "mean": list(v.preprocessing.mean), "std": list(v.preprocessing.std),
        },
        "published": None if v.published is None else {
            "params_m": v.published.params_m, "gflops": v.published.gflops,
            "top1_err": v.published.top1_err, "top5_err": v.published.top5_err,
        },
        "sources": [{k: val for k, val in vars(src).items() if val and (k != "hf_filename" or src.on_hub)}
                    | {"location": src.location, "integrity": src.integrity, "runs_no_code": src.runs_no_code}
                    for src in v.sources],
        "default_source": v.default_source.tag if v.default_source else None,
        "default_source_why": v.why_default(),
        "note": v.note,
    })
    return out


# One grammar for every command: the model(s) positional, ``-m/--model`` accepted as well;
# ``-f/--framework`` wherever a framework is chosen; the same meaning of --weights, --source,
# --sources, --device, --mode and --json everywhere.
_MODEL_HELP = "Variant name or alias (also accepted as -m/--model)."
_MODES_HELP = modes_help()
_FRAMEWORKS_HELP = framework_names()
_EXTENSIONS_HELP = ", ".join([".safetensors", *dict.fromkeys(f.extension for f in FRAMEWORKS.values())])
_NUMPY_WRITTEN_HELP = ", ".join([*(n for n, f in FRAMEWORKS.items() if f.numpy_writer), "safetensors"])
_FORMATS_HELP = ", ".join(f"{e.name} (from {fw.name})" for e, fw in export_formats().values())
_EXPORTERS_HELP = ", ".join(n for n, f in FRAMEWORKS.items() if f.exports)
_SOURCE_HELP = "Which released weights: official, timm (the Hugging Face Hub), mindcv, paddleclas, paddleclas-ssld, " \
               "jittor, mmpretrain, mmdet; default: the model's default source (`zoo info` says which and why)."
_REVISION_HELP = "Branch, tag or commit of a Hugging Face Hub source (default: main); the commit is recorded."
_SOURCES_HELP = "JSON manifest of mirrors: model -> {url (http, file:// or path), sha256} (default: $ZOO_SOURCES)."
_JSON_HELP = "Print JSON for machines (on stdout; messages stay on stderr)."
_DEVICE_HELP = "cpu, gpu or ascend."


def _models(positional: Optional[list[str]], option: Optional[list[str]]) -> list[str]:
    return list(positional or []) + list(option or [])


def _one_model(positional: Optional[str], option: Optional[str], *, required: bool = True) -> Optional[str]:
    from .errors import UsageError

    if positional and option and positional != option:
        raise UsageError(f"two models given ({positional} and -m {option}); give one")
    name = positional or option
    if required and not name:
        raise UsageError("give a model name (`zoo list` shows them)")
    return name


@app.command("info")
@_user_errors
def info_cmd(
    names: Optional[list[str]] = typer.Argument(None, help="Variant names or aliases, e.g. res2net101_v1b."),
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
):
    """Spec, stage channels, preprocessing, published numbers and weight sources of variants."""
    from .errors import UsageError

    wanted = _models(names, model)
    if not wanted:
        raise UsageError("give a model name (`zoo list` shows them)")
    variants = [zspec.get_variant(n) for n in wanted]
    if as_json:
        infos = [_info(v) for v in variants]
        typer.echo(json.dumps(infos[0] if len(infos) == 1 else infos, indent=2))
        return
    typer.echo("\n\n".join(_info_text(v) for v in variants))


def _info_text(v: zspec.Variant) -> str:
    info = _info(v)
    s = info["spec"]
    lines = [
        f"{v.name} ({v.title})" + (f"  aliases: {', '.join(v.aliases)}" if v.aliases else ""),
        f"  topology {s['topology']}, depths {s['depths']}, width {s['base_width']}, scale {s['scale']}, "
        f"cardinality {s['cardinality']}, stem {s['stem']}, shortcut {s['shortcut']}, SE {s['se']}",
        f"  stage blocks: {'strided (dla.py rule)' if s['topology'] == 'dla' else s['stage_blocks']} "
        f"(last split AvgPool2d(3, stride, padding=1), "
        f"count_include_pad={s['stage_pool_count_pad']}"
        + ("" if s["stage_pool_stride1"] else ", none at stride 1") + f"); {v.graph} graph",
        f"  params {info['params']:,} trainable; {info['params_with_bn_stats']:,} with BN statistics"
        + (f"; {info['params_official_checkpoint']:,} in the official checkpoint"
           if info["params_official_checkpoint"] != info["params"] else ""),
        f"  GFLOPs (multiply-adds, 224x224) {info['gflops']:.3f}"
        + (f"; {info['gflops_official_code']:.3f} as the official code computes"
           if info["gflops_official_code"] != info["gflops"] else ""),
        "  features: " + ", ".join(f"[{f['index']}] {f['module']} {f['channels']}ch /{f['reduction']}"
                                   for f in info["features"])
        + f"  (features_only default {tuple(info['default_out_indices'])})",
    ]
    pre = info["preprocessing"]
    lines.append(f"  preprocessing: resize {pre['resize_size']} {pre['interpolation']}, center crop "
                 f"{pre['input_size']}, mean {pre['mean']}, std {pre['std']}")
    if v.published:
        p = v.published
        lines.append(f"  published: {p.params_m}M params, {p.gflops} GFLOPs, top-1 {p.top1:.2f}% "
                     f"(err {p.top1_err}), top-5 {p.top5:.2f}% (err {p.top5_err})")
    else:
        lines.append("  published: none")
    for src in v.sources:
        extra = ""
        if src.tag != "official":
            extra += f" [{src.framework} file, {src.layout} names]"
        if src.top1 is not None:
            extra += f" top-1 {src.top1:.2f}"
        lines.append(f"  weights [{src.tag}] {src.location}{extra}; checked by {src.integrity}")
    if v.sources:
        lines.append(f"  default weights [{v.default_source.tag}]: {v.why_default()}")
    else:
        lines.append("  weights: none released")
    if v.note:
        lines.append(f"  note: {v.note}")
    return "\n".join(lines)


@app.command("convert")
@_user_errors
def convert_cmd(
    src: str = typer.Argument(..., help=f"A checkpoint file ({_EXTENSIONS_HELP}), or a model name: its released "
                                        "weights are fetched through the cache."),
    to: str = typer.Option(..., "--to", help=f"Target: safetensors, {_FRAMEWORKS_HELP} (only the target's "
                                             f"framework is needed; {_NUMPY_WRITTEN_HELP} need none)."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="The variant a file holds; default: from its metadata, name or tensors."),
    out: Optional[str] = typer.Option(None, "--output", "-o", help="Output file; default: SRC with the target's "
                                                                   "extension, or the cache for a model name."),
    dtype: str = typer.Option("float32", "--dtype", help="safetensors output: float32, float16 or keep."),
    allow_non_finite: bool = typer.Option(False, "--allow-non-finite", help="Keep NaN/Inf values instead of refusing."),
    source: Optional[str] = typer.Option(None, "--source", help=_SOURCE_HELP),
    sources: Optional[str] = typer.Option(None, "--sources", help=_SOURCES_HELP),
    revision: Optional[str] = typer.Option(None, "--revision", help=_REVISION_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
):
    """Convert a checkpoint (or a model's released weights) between frameworks, exactly.

    Says on stderr which variant it found and how, and what it left out; prints the written
    file's path last on stdout."""
    from .pretrained import convert_any

    path = convert_any(src, to, model=model, out=out, dtype=dtype, allow_non_finite=allow_non_finite, source=source,
                       sources_file=sources, revision=revision)
    typer.echo(json.dumps({"output": str(path), "to": to}) if as_json else str(path))


@app.command("download")
@_user_errors
def download_cmd(
    names: Optional[list[str]] = typer.Argument(None, help="Variant names or aliases."),
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    framework: Optional[str] = typer.Option(None, "--framework", "-f",
                                            help="Convert once to this framework (or safetensors); default: the "
                                                 "file as released."),
    source: Optional[str] = typer.Option(None, "--source", help=_SOURCE_HELP),
    sources: Optional[str] = typer.Option(None, "--sources", help=_SOURCES_HELP),
    revision: Optional[str] = typer.Option(None, "--revision", help=_REVISION_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
):
    """Fetch released weights once, check them, convert once; prints each file's path."""
    from .errors import UsageError
    from .pretrained import fetch

    wanted = _models(names, model)
    if not wanted:
        raise UsageError("give a model name (`zoo list` shows the ones with weights)")
    paths = {zspec.resolve_name(n): str(fetch(n, framework, source=source, sources_file=sources, revision=revision))
             for n in wanted}
    if as_json:
        typer.echo(json.dumps([{"model": n, "path": p, "framework": framework} for n, p in paths.items()], indent=2))
    else:
        typer.echo("\n".join(paths.values()))


@app.command("verify")
@_user_errors
def verify_cmd(
    names: Optional[list[str]] = typer.Argument(None, help="Variants (or JSON files of custom specs) to verify; "
                                                           "default: every variant."),
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    framework: str = typer.Option(..., "--framework", "-f", help=f"The port to check: {_FRAMEWORKS_HELP}."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Checkpoint to verify (one model); default: the "
                                                                  "cached pretrained weights, else realistic random."),
    device: str = typer.Option("cpu", "--device", help=_DEVICE_HELP + " The candidate's; the reference runs on cpu."),
    mode: Optional[str] = typer.Option(None, "--mode", help=_MODES_HELP + " Default: the framework's own port, the "
                                                                     "first named."),
    tolerance: float = typer.Option(PARITY_LIMIT, "--tolerance", help="Limit on max|d| / max(1, max|reference|), per stage "
                                                              "and for the logits (with --train: also losses, BN "
                                                              "statistics and parameters)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Default 224 (pretrained) or 64 (random)."),
    train: bool = typer.Option(False, "--train", help="Check training instead: train-mode forward, every gradient, "
                                                      "BN statistics, momentum buffers and parameters over --steps "
                                                      "SGD steps, against torch's own."),
    steps: int = typer.Option(3, "--steps", help="With --train: optimizer steps."),
    batch_size: int = typer.Option(4, "--batch-size", help="With --train: images per step."),
    lr: float = typer.Option(0.01, "--lr", help="With --train: SGD learning rate."),
    momentum: float = typer.Option(0.9, "--momentum", help="With --train: SGD momentum."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", help="With --train: coupled weight decay."),
    nesterov: bool = typer.Option(False, "--nesterov", help="With --train: Nesterov momentum."),
    decay_norm_and_bias: bool = typer.Option(True, "--decay-norm-and-bias/--no-decay-norm-and-bias",
                                             help="With --train: weight decay on BN parameters and biases too."),
    grad_tolerance: float = typer.Option(GRADIENT_LIMIT, "--grad-tolerance", help="With --train: limit on max|d| / "
                                                                        "max|reference| per gradient and momentum "
                                                                        "buffer."),
    data: Optional[str] = typer.Option(None, "--data", help="With --train: take the first batches zoo train takes "
                                                            "from this ImageFolder (--seed, no augmentation) "
                                                            "instead of random images."),
    seed: int = typer.Option(0, "--seed", help="With --train --data: the data order, as zoo train's --seed."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
):
    """Parity of a framework port with the PyTorch reference, per stage and for the logits; with
    --train, parity of its training step."""
    from .errors import VerificationFailed

    if train:
        from .training import SGD
        from .verify_train import as_json as to_json, as_table, verify_train

        sgd = SGD(lr, momentum, weight_decay, nesterov, decay_norm_and_bias)
        trained = verify_train(framework, _models(names, model), weights=weights, device=device, mode=mode,
                               tolerance=tolerance, grad_tolerance=grad_tolerance, image_size=image_size,
                               batch=batch_size, steps=steps, sgd=sgd, data=data, seed=seed)
        typer.echo(to_json(trained) if as_json else as_table(trained, tolerance, grad_tolerance))
        failed = [r for r in trained if not r.passed]
        if failed:
            where = ", ".join(f"{r.model} (first: {r.first_over_text})" for r in failed[:3])
            raise VerificationFailed(f"{len(failed)} of {len(trained)} model(s) do not train like the reference: "
                                     f"{where}")
        return
    from .verify import as_json as to_json, as_table, verify

    results = verify(framework, _models(names, model) or None, weights=weights, device=device, mode=mode,
                     tolerance=tolerance, image_size=image_size)
    typer.echo(to_json(results) if as_json else as_table(results, tolerance))
    failed = [r for r in results if not r.passed]
    if failed:
        where = ", ".join(f"{r.model} (first at {r.first_stage_over})" for r in failed[:4])
        raise VerificationFailed(f"{len(failed)} of {len(results)} model(s) outside the limit: {where}")


@app.command("eval")
@_user_errors
def eval_cmd(
    name: Optional[str] = typer.Argument(
        None, help="Variant, or a JSON file of a custom spec; default: the model --weights holds."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    framework: str = typer.Option(REFERENCE, "--framework", "-f", help=f"{_FRAMEWORKS_HELP}."),
    data: str = typer.Option(..., "--data", help="DIR/<class>/*.JPEG (sorted classes) or a list file 'path label'."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Checkpoint (any supported format; the model is "
                                                                  "identified from it); default: released weights."),
    source: Optional[str] = typer.Option(None, "--source", help=_SOURCE_HELP),
    device: str = typer.Option("cpu", "--device", help=_DEVICE_HELP),
    mode: Optional[str] = typer.Option(None, "--mode", help=_MODES_HELP + " Default: the exact mode measured "
                                                                     "fastest (torch onnxruntime when installed, "
                                                                     "paddle inference, mindspore graph, jittor lazy)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per forward pass."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate the first N images only."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Crop size; default: the variant's."),
    predictions: Optional[str] = typer.Option(None, "--predictions", help="Save the top-1 predictions (.npy), in "
                                                                          "dataset order."),
    result_file: Optional[str] = typer.Option(None, "--result", help="Also write the result as JSON to this file "
                                                                     "(one file per table cell; see README)."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
):
    """Top-1/top-5 and images/s on ImageNet-style data, with the published figure beside them.

    Under torchrun, paddle.distributed.launch or msrun each rank evaluates its own share of the
    images; rank 0 alone reports."""
    from .evaluate import evaluate

    result = evaluate(_one_model(name, model, required=False), framework, data, weights=weights, source=source,
                      device=device, mode=mode, batch_size=batch_size, limit=limit, image_size=image_size,
                      predictions=predictions)
    if result.get("rank", 0) != 0:  # other ranks print nothing but errors
        return
    if result_file:
        from .atomic import atomic_output

        with atomic_output(result_file) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    published = f"{result['published_top1']:.2f}" if result["published_top1"] is not None else "-"
    typer.echo(f"{result['model']} [{result['framework']} {result['mode']}, {result['device']}] on {result['images']} "
               f"images: top-1 {result['top1']:.2f}  top-5 {result['top5']:.2f}  (published top-1 {published})  "
               f"{result['images_per_s']:.1f} images/s")


@app.command("export")
@_user_errors
def export_cmd(
    name: Optional[str] = typer.Argument(
        None, help="Variant, or a JSON file of a custom spec; default: the model --weights holds."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    export_format: Optional[str] = typer.Option(None, "--format", help=f"{_FORMATS_HELP}; default: the framework's "
                                                                       "own."),
    framework: Optional[str] = typer.Option(None, "--framework", "-f", help=f"The exporting framework "
                                                                            f"({_EXPORTERS_HELP}); implied by "
                                                                            "--format."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Checkpoint in any supported format; default: the "
                                                                  "released weights (--source)."),
    source: Optional[str] = typer.Option(None, "--source", help=_SOURCE_HELP),
    sources: Optional[str] = typer.Option(None, "--sources", help=_SOURCES_HELP),
    out: Optional[str] = typer.Option(None, "--output", "-o", help="Output file (.onnx, .pt, .mindir) or directory "
                                                                   "(paddle-inference); default: MODEL.<format> here."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Input height and width; default: the "
                                                                        "variant's. The batch dimension stays free."),
    features_only: bool = typer.Option(False, "--features-only", help="Export the stage outputs instead of logits."),
    out_indices: Optional[str] = typer.Option(None, "--out-indices", help="With --features-only: stage outputs to "
                                                                          "keep, e.g. 1,2,3,4 (`zoo info` lists them)."),
    tolerance: float = typer.Option(PARITY_LIMIT, "--tolerance", help="Limit on max|d| / max(1, max|reference|) of the "
                                                              "artefact against the PyTorch reference."),
    device: str = typer.Option("cpu", "--device", help=_DEVICE_HELP + " Where the artefact is checked."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
):
    """Export a model with its weights to a deployment format, checked in its own runtime.

    The artefact is run at batch 1 and 3 against the PyTorch reference; only one within the limit
    is written (exit 9 otherwise, and nothing at the output). Prints the output path last."""
    from dataclasses import asdict

    from .errors import UsageError
    from .export import export

    indices = None
    if out_indices:
        try:
            indices = [int(i) for i in out_indices.split(",") if i.strip()]
        except ValueError:
            raise UsageError(f"--out-indices: expected integers separated by commas, got {out_indices!r}") from None
    result = export(_one_model(name, model, required=False), export_format, framework=framework, weights=weights,
                    source=source, sources_file=sources, out=out, image_size=image_size, features_only=features_only,
                    out_indices=indices, tolerance=tolerance, device=device)
    if as_json:
        typer.echo(json.dumps(asdict(result), indent=2))
        return
    worst = max(c["rel"] for c in result.checks)
    shape = "x".join(str(d) for d in result.input_shape)
    typer.echo(f"{result.model} -> {result.format} ({result.framework}, {result.export_s:.1f} s): input {shape}, "
               f"outputs {', '.join(result.outputs)}; in {result.runtime} at batch "
               f"{', '.join(sorted({str(c['batch']) for c in result.checks}))}: rel {worst:.2e} <= "
               f"{result.tolerance:g} against {result.reference}", err=True)
    typer.echo(result.output)


@app.command("cam")
@_user_errors
def cam_cmd(
    name: Optional[str] = typer.Argument(
        None, help="Variant, or a JSON file of a custom spec; default: the model --weights holds."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    framework: str = typer.Option(REFERENCE, "--framework", "-f", help=f"{_FRAMEWORKS_HELP}."),
    image: list[str] = typer.Option(..., "--image", help="An image file; repeat for several (one picture, a tile "
                                                         "each)."),
    out: str = typer.Option(..., "--output", "-o", help="The picture to write (PNG)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Checkpoint in any supported format; default: the "
                                                                  "released weights (--source)."),
    source: Optional[str] = typer.Option(None, "--source", help=_SOURCE_HELP),
    klass: Optional[int] = typer.Option(None, "--class", help="The class to explain; default: each image's top-1."),
    layer: Optional[str] = typer.Option(None, "--layer", help="The stage whose output is explained (as `zoo info` "
                                                              "lists them); default: the last."),
    method: str = typer.Option("gradcam", "--method", help="gradcam (the class logit's gradient, averaged per "
                                                           "channel) or gradcam++."),
    map_file: Optional[str] = typer.Option(None, "--map", help="Also save the raw maps (float32, images x stage "
                                                               "height x width) as .npy."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Crop size; default: the variant's."),
    device: str = typer.Option("cpu", "--device", help=_DEVICE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
):
    """Class activation maps (Grad-CAM): where the model looks for the class it sees, in any framework.

    Prints the picture's path last; --json gives each image's class, label, logit and probability."""
    from .cam import as_json as to_json, cam

    result = cam(_one_model(name, model, required=False), framework, image, out, weights=weights, source=source,
                 klass=klass, layer=layer, method=method, map_file=map_file, device=device, image_size=image_size)
    if as_json:
        typer.echo(to_json(result))
        return
    for entry in result.images:
        typer.echo(f"{entry['image']}: {entry['label']} ({entry['class']}), p {entry['probability']:.3f}, "
                   f"logit {entry['logit']:.2f}", err=True)
    typer.echo(result.output)


@app.command("train")
@_user_errors
def train_cmd(
    name: Optional[str] = typer.Argument(None, help="Variant, or a JSON file of a custom spec."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    framework: str = typer.Option(REFERENCE, "--framework", "-f", help=f"{_FRAMEWORKS_HELP}."),
    data: str = typer.Option(..., "--data", help="Training images: DIR/<class>/<image> (the layout zoo eval reads)."),
    out: str = typer.Option(..., "--output", "-o", help="RUNDIR: metrics, checkpoint, final weights, curves.png."),
    val: Optional[str] = typer.Option(None, "--val", help="Validation images, the same classes; top-1 after each "
                                                          "epoch."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Start from this checkpoint (any supported "
                                                                  "format); default: drawn from --seed."),
    pretrained: bool = typer.Option(False, "--pretrained", help="Start from the released weights (--source)."),
    source: Optional[str] = typer.Option(None, "--source", help=_SOURCE_HELP),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Classes of the new head; must match "
                                                                          "--data's class folders (the default)."),
    recipe: str = typer.Option("finetune", "--recipe", help="finetune (default), paper, mindcv, paddleclas "
                                                            "(zoo.recipes: the optimizer, schedule and defaults)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Default: the recipe's."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Default: the recipe's."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate; default: the recipe's."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Training crop; default: the variant's."),
    augment: str = typer.Option("none", "--augment", help="none (resize and center crop) or standard (random "
                                                          "resized crop and flip)."),
    seed: int = typer.Option(0, "--seed", help="Data order, augmentation and new weights: the same in every "
                                               "framework."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every",
                                                   help="Steps between checkpoints; default: each epoch's end."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in RUNDIR (running again into it does "
                                                        "the same; --resume insists there is one)."),
    device: str = typer.Option("cpu", "--device", help=_DEVICE_HELP),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="Under a launcher: BatchNorm with the statistics of the "
                                 "global batch (default: each rank's own share, as DDP does)."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
):
    """Fine-tune (or train) a Res2Net in any framework with one recipe and one data pipeline.

    The same seed gives the same batches and starting weights in every framework. Prints
    RUNDIR's final weights last; --json gives the run's summary. Under torchrun,
    paddle.distributed.launch or msrun it trains data-parallel: --batch-size is the global batch,
    split over the ranks; rank 0 writes RUNDIR and prints."""
    import dataclasses

    from .train import train

    result = train(_one_model(name, model), framework, data, out, val=val, weights=weights, pretrained=pretrained,
                   source=source, num_classes=num_classes, recipe=recipe, epochs=epochs, batch_size=batch_size,
                   lr=lr, image_size=image_size, augment=augment, seed=seed, device=device, resume=resume,
                   checkpoint_every=checkpoint_every, sync_bn=sync_bn)
    if result is None:  # another rank of a launch: rank 0 reports
        return
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result), indent=2))
        return
    top1 = f", validation top-1 {result.top1:.2f}%" if result.top1 is not None else ""
    typer.echo(f"{result.model} on {result.framework}: {result.steps} steps, final loss {result.final_loss:.4f}"
               f"{top1}; curves in {result.curves}", err=True)
    typer.echo(result.weights)


def main() -> None:  # console-script entry point
    from .atomic import terminate_on_sigterm

    terminate_on_sigterm()
    app(prog_name="zoo")


if __name__ == "__main__":
    sys.exit(main())
