"""``zoo convert``: any supported checkpoint -> canonical state -> any framework's native file.

The calling process imports no framework. A conversion to safetensors runs in it, as do those to
the native files numpy writes exactly; any other runs inside a worker process of the target
framework (``zoo.worker``), which reads the source itself with zoo's framework-free readers
(every supported format), checks it strictly against the canonical layout, renames it with the
framework's table and writes it with the framework's own writer. So converting to one framework
needs that framework alone. A model's released weights go through ``zoo.pretrained``.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import numpy as np

from .atomic import atomic_output
from .converters.layouts import GRAPH_OF
from .converters.native_files import numpy_writer
from .converters.read import RawState, canonical_state, read_raw
from .converters.state import match_layout
from .converters.tables import to_native
from .errors import CheckpointFormatError, CheckpointMismatchError, UnknownNameError, UsageError
from .frameworks import FRAMEWORKS
from .hub import sha256_file
from .spec import Res2NetSpec, get_spec, get_variant, list_variants, resolve_name

CANONICAL = "safetensors"  # the hub format between frameworks
EXTENSIONS = {CANONICAL: ".safetensors", **{name: fw.extension for name, fw in FRAMEWORKS.items()}}
TARGETS = tuple(EXTENSIONS)
# Targets written in this process without their framework (numpy writes them exactly).
IN_PROCESS = (CANONICAL, *(name for name, fw in FRAMEWORKS.items() if fw.numpy_writer))


def _from_file_name(path: Path) -> str | None:
    for v in list_variants():
        if any(s.filename == path.name for s in v.sources):
            return v.name
    try:
        return resolve_name(path.name.split("-", 1)[0].split(".", 1)[0])
    except UnknownNameError:
        return None


def _with_file_head(raw: RawState, spec: Res2NetSpec) -> Res2NetSpec:
    """``spec`` with the classifier the file has: another class count (MindCV's factory default is
    1001), or none (a detection backbone)."""
    state = canonical_state(raw, spec)
    head = state.get("fc.weight")
    if head is not None and head.shape[0] != spec.num_classes:
        return spec.replace(num_classes=int(head.shape[0]))
    if head is None and spec.num_classes and not any(k.startswith("fc.") for k in state):
        return spec.replace(num_classes=0)
    return spec


def _fitting_spec(raw: RawState, spec: Res2NetSpec) -> Res2NetSpec | None:
    for candidate in dict.fromkeys((spec, _with_file_head(raw, spec))):
        try:  # names and shapes only; the values are checked once the variant is known
            match_layout(canonical_state(raw, candidate), candidate, allow_non_finite=True)
        except CheckpointMismatchError:
            continue
        return candidate
    return None


def _say_head(label: str, registered: Res2NetSpec, spec: Res2NetSpec) -> None:
    if spec.num_classes != registered.num_classes:
        what = f"a {spec.num_classes}-class classifier" if spec.num_classes else "no classifier (a backbone: " \
            "load it with features_only=True)"
        print(f"note: the checkpoint has {what}; {label} is registered with {registered.num_classes} classes",
              file=sys.stderr)


def identify_model(raw: RawState, src: Path, model: str | None) -> tuple[str, Res2NetSpec]:
    """The variant a checkpoint is for: ``--model``, our metadata, an official file name, or the
    tensor names and shapes, in that order; a peer's checkpoint is matched against its own graph
    first (PaddleClas' and MMDetection's differ from the official one). The classifier follows
    the file's (another class count, or none)."""
    if "zoo.spec" in raw.metadata and not model:
        return raw.metadata.get("zoo.model", "custom spec"), Res2NetSpec.from_json(raw.metadata["zoo.spec"])
    graph = GRAPH_OF.get(raw.flavour, "official")
    how = "--model"
    name = resolve_name(model) if model else None
    if name is None and raw.metadata.get("zoo.model"):
        name, how = resolve_name(raw.metadata["zoo.model"]), "the file's metadata"
    if name is None:
        by_file = _from_file_name(src)
        if by_file and get_variant(by_file).graph == graph:
            name, how = by_file, "the file name"
    if name is not None:
        spec = _with_file_head(raw, get_spec(name))
    else:
        candidates = [v for v in list_variants() if v.graph == graph] or list_variants()
        matches = [(v.name, fit) for v in candidates if (fit := _fitting_spec(raw, v.spec)) is not None]
        if len(matches) > 1:
            raise UsageError(f"{src}: the tensors fit several variants ({', '.join(n for n, _ in matches)}); "
                             "pass --model NAME")
        if not matches:
            raise UsageError(f"{src}: the tensors fit no registered variant; pass --model NAME to see what differs")
        (name, spec), how = matches[0], "the tensor names and shapes"
    layout = f", {raw.flavour} layout" if raw.flavour not in ("torch",) else ""
    if how != "--model":
        print(f"note: {src.name}: {name} (identified by {how}{layout})", file=sys.stderr)
    _say_head(name, get_spec(name), spec)
    return name, spec


def default_output(src: Path, to: str) -> Path:
    out = src.with_suffix(EXTENSIONS[to])
    if out.resolve() == src.resolve():
        out = src.with_name(f"{src.stem}.converted{EXTENSIONS[to]}")
    return out


def write_canonical(state: dict, path: Path, metadata: dict[str, str]) -> None:
    from safetensors.numpy import save_file

    with atomic_output(path) as tmp:
        save_file({k: state[k] for k in state}, str(tmp), metadata=metadata)


DTYPES = ("float32", "float16", "keep")


def _cast(state: dict, src: Path, dtype: str) -> dict:
    """Canonical files are float32 unless asked; say what was converted."""
    odd = sorted({str(v.dtype) for v in state.values() if v.dtype.kind == "f" and v.dtype != np.float32})
    if dtype == "keep":
        return state
    target = np.dtype(dtype)
    if odd and target == np.float32:
        count = sum(1 for v in state.values() if v.dtype.kind == "f" and v.dtype != np.float32)
        print(f"note: {src}: {count} {'/'.join(odd)} tensors converted to float32 "
              "(keep them with --dtype keep or --dtype float16)", file=sys.stderr)
    return {k: v.astype(target, copy=False) if v.dtype.kind == "f" else v for k, v in state.items()}


def normalize_target(to: str) -> str:
    """A conversion target: safetensors or a framework (its aliases accepted)."""
    key = to.strip().lower()
    key = next((f.name for f in FRAMEWORKS.values() if key in f.aliases), key)
    if key not in TARGETS:
        close = difflib.get_close_matches(key, TARGETS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UsageError(f"cannot convert to {key!r}{hint} (choose one of: {', '.join(TARGETS)})")
    return key


def model_name(text: str) -> str | None:
    try:
        return resolve_name(text)
    except UnknownNameError:
        return None


def convert(src: str | Path, to: str, *, model: str | None = None, out: str | Path | None = None,
            dtype: str = "float32", allow_non_finite: bool = False, provenance: dict[str, str] | None = None) -> Path:
    """Convert the checkpoint file ``src`` to ``to`` (safetensors or a framework); returns the
    written path. ``dtype`` (float32, float16, keep) applies to safetensors output; the
    frameworks' native files hold float32, as their models do. (A model's released weights:
    ``zoo.pretrained``; their ``provenance``, where the file came from, goes into safetensors
    metadata.)

    safetensors and the files numpy writes exactly (Paddle, Jittor) are written here, without
    their framework; the others inside a worker process of that framework, with its own writer
    (one framework per process).
    """
    from .worker import require_installed, run_job

    to = normalize_target(to)
    if dtype not in DTYPES:
        raise UsageError(f"unknown --dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    if dtype != "float32" and to != CANONICAL:
        raise UsageError(f"--dtype {dtype} applies to --to safetensors; {to} files hold float32")
    src = Path(src)
    name = model_name(str(src))
    if not src.exists() and name is None and not src.suffix and len(src.parts) == 1:
        close = difflib.get_close_matches(str(src).lower(), [v.name for v in list_variants()]
                                          + [a for v in list_variants() for a in v.aliases], n=1)
        hint = f"; did you mean {close[0]}?" if close else " (`zoo list` shows the model names)"
        raise CheckpointFormatError(f"{src}: no such file, nor a model name{hint}")
    if name is not None and src.is_file():
        print(f"note: converting the file {src}; {name} is also a model name: give another path "
              f"(or run elsewhere) to fetch its released weights instead", file=sys.stderr)
    if to not in IN_PROCESS:
        require_installed(to)
    out = Path(out) if out else default_output(src, to)
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise UsageError(f"{out}: the output would overwrite the input; choose another -o")
    job = {"src": str(src), "to": to, "model": model, "out": str(out), "dtype": dtype,
           "allow_non_finite": allow_non_finite, "provenance": provenance}
    if to in IN_PROCESS:
        return convert_here(**job)
    run_job(to, "convert", job)
    return out


def convert_here(src: str | Path, to: str, *, model: str | None = None, out: str | Path, dtype: str = "float32",
                 allow_non_finite: bool = False, provenance: dict[str, str] | None = None) -> Path:
    """The conversion itself, in this process (which may import the target framework)."""
    src, out = Path(src), Path(out)
    raw = read_raw(src)
    label, spec = identify_model(raw, src, model)
    dropped: list[str] = []
    state, report = match_layout(canonical_state(raw, spec, dropped), spec, model_name=label,
                                 allow_non_finite=allow_non_finite)
    dropped += report.dropped
    if dropped:
        shown = ", ".join(dropped[:3]) + (" ..." if len(dropped) > 3 else "")
        print(f"note: {src.name}: left out {len(dropped)} entries the model does not use ({shown})", file=sys.stderr)
    state = _cast(state, src, dtype)
    if to == CANONICAL:
        metadata = {"zoo.model": label, "zoo.spec": spec.to_json(), "zoo.source": src.name,
                    "zoo.sha256": sha256_file(src), "zoo.flavour": "torch", **(provenance or {})}
        write_canonical(state, out, metadata)
        return out
    native = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in to_native(state, spec, to).items()}
    save = numpy_writer(to)
    if save is None:
        from .frameworks import get_backend

        get_backend(to)  # the error that names the extra, if it is missing
        save = FRAMEWORKS[to].backend("io").save_native
    with atomic_output(out) as tmp:
        save(native, tmp)
    return out
