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
        "sources": [{k: val for k, val in vars(src).items() if val} for src in v.sources],
        "note": v.note,
    })
    return out


@app.command("info")
@_user_errors
def info_cmd(
    name: str = typer.Argument(..., help="Variant name or alias, e.g. res2net101_v1b."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
):
    """Spec, stage channels, preprocessing, published numbers and weight sources of a variant."""
    v = zspec.get_variant(name)
    info = _info(v)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
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
        where = src.url or f"hf://{src.hf_hub_id}"
        extra = f" (hub {src.hf_hub_id})" if src.url and src.hf_hub_id else ""
        if src.tag != "official":
            extra += f" [{src.framework} file, {src.layout} names]"
        if src.top1 is not None:
            extra += f" top-1 {src.top1:.2f}"
        lines.append(f"  weights [{src.tag}] {where}{extra}")
    if not v.sources:
        lines.append("  weights: none released")
    if v.note:
        lines.append(f"  note: {v.note}")
    typer.echo("\n".join(lines))


@app.command("convert")
@_user_errors
def convert_cmd(
    src: str = typer.Argument(..., help="A checkpoint file (.pth, .safetensors, .ckpt, .pdparams, .pkl), or a model "
                                        "name: its released weights are fetched through the cache."),
    to: str = typer.Option(..., "--to", help="Target: safetensors, torch, paddle, mindspore or jittor."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Variant; default: from metadata, file name or shapes."),
    out: Optional[str] = typer.Option(None, "--output", "-o", help="Output file; default: SRC with the target's extension."),
    dtype: str = typer.Option("float32", "--dtype", help="safetensors output: float32, float16 or keep."),
    allow_non_finite: bool = typer.Option(False, "--allow-non-finite", help="Keep NaN/Inf values instead of refusing."),
    source: str = typer.Option("official", "--source", help="For a model name: official or timm."),
    sources: Optional[str] = typer.Option(None, "--sources", help="For a model name: JSON manifest of mirrors "
                                                                  "(default: $ZOO_SOURCES)."),
):
    """Convert a checkpoint (or a model's released weights) between frameworks, exactly.

    Needs only the target framework: every source format is read without a framework."""
    from .convert import convert

    path = convert(src, to, model=model, out=out, dtype=dtype, allow_non_finite=allow_non_finite, source=source,
                   sources_file=sources)
    typer.echo(str(path))


@app.command("download")
@_user_errors
def download_cmd(
    name: str = typer.Argument(..., help="Variant name or alias."),
    framework: Optional[str] = typer.Option(None, "--framework", "-f",
                                            help="Convert once to this framework; default: the checkpoint as released."),
    source: str = typer.Option("official", "--source", help="official or timm."),
    sources: Optional[str] = typer.Option(None, "--sources", help="JSON manifest of mirrors (default: $ZOO_SOURCES)."),
):
    """Fetch pretrained weights once, verify them, convert once; prints the file's path last."""
    from .hub import fetch

    typer.echo(str(fetch(name, framework, source=source, sources_file=sources)))


DEVICES = ("cpu", "gpu", "ascend")


def _device(value: str) -> str:
    if value not in DEVICES:
        from .errors import UsageError

        raise UsageError(f"unknown device {value!r}; choose one of: {', '.join(DEVICES)}")
    return value


@app.command("verify")
@_user_errors
def verify_cmd(
    framework: str = typer.Option(..., "--framework", "-f", help="torch, paddle, mindspore or jittor."),
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help="Variant(s); default: every variant."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Checkpoint to verify (one --model)."),
    device: str = typer.Option("cpu", "--device", help="cpu, gpu or ascend (the candidate's device)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="Execution mode, e.g. graph (mindspore), to_static (paddle)."),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="Limit on max|d| / max(1, max|reference|)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Default 224 (pretrained) or 64 (random)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
):
    """Parity of a framework port with the PyTorch reference, per stage and for the logits."""
    from .errors import VerificationFailed
    from .verify import as_json as to_json, as_table, verify

    results = verify(framework, model, weights=weights, device=_device(device), mode=mode,
                     tolerance=tolerance, image_size=image_size)
    typer.echo(to_json(results) if as_json else as_table(results, tolerance))
    failed = [r.model for r in results if not r.passed]
    if failed:
        raise VerificationFailed(f"{len(failed)} of {len(results)} model(s) outside the limit: {', '.join(failed)}")


@app.command("eval")
@_user_errors
def eval_cmd(
    name: Optional[str] = typer.Argument(
        None, help="Variant, or a JSON file holding a custom spec; default: the model in the --weights metadata."),
    framework: str = typer.Option("torch", "--framework", "-f"),
    data: str = typer.Option(..., "--data", help="DIR/<class>/*.JPEG (sorted classes) or a list file 'path label'."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Checkpoint; default: the pretrained weights."),
    source: str = typer.Option("official", "--source", help="Pretrained source when --weights is not given."),
    device: str = typer.Option("cpu", "--device", help="cpu, gpu or ascend."),
    mode: Optional[str] = typer.Option(None, "--mode", help="Execution mode, e.g. graph (mindspore)."),
    batch_size: int = typer.Option(32, "--batch-size"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate the first N images only."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Crop size; default: the variant's."),
    predictions: Optional[str] = typer.Option(None, "--predictions", help="Save the top-1 predictions (.npy)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
):
    """Top-1/top-5 and images/s on ImageNet-style data, with the published figure beside them."""
    from .evaluate import evaluate

    result = evaluate(name, framework, data, weights=weights, source=source, device=_device(device), mode=mode,
                      batch_size=batch_size, limit=limit, image_size=image_size, predictions=predictions)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    published = f"{result['published_top1']:.2f}" if result["published_top1"] is not None else "-"
    typer.echo(f"{result['model']} [{result['framework']}, {result['device']}] on {result['images']} images: "
               f"top-1 {result['top1']:.2f}  top-5 {result['top5']:.2f}  (published top-1 {published})  "
               f"{result['images_per_s']:.1f} images/s")


def main() -> None:  # console-script entry point
    from .atomic import terminate_on_sigterm

    terminate_on_sigterm()
    app(prog_name="zoo")


if __name__ == "__main__":
    sys.exit(main())
