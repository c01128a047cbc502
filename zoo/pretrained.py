"""Released weights as framework X: downloaded once through the cache (``zoo.hub``), converted once
per framework (``zoo.convert``), keyed by the download's checksum::

    <ZOO_HOME>/native/<framework>/<sha256 of the download>/<model><ext>
    <ZOO_HOME>/native/<framework>/<sha256>/<commit>/<model><ext>     (a Hub file: zoo.hf)

so a converted file is found again by content, and the commit it came from (which its metadata
records) is part of its place. Above both: the cache knows nothing of conversion, the converter
nothing of downloads.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .atomic import atomic_output
from .convert import CANONICAL, EXTENSIONS, IN_PROCESS, convert, model_name, normalize_target
from .errors import OutputError, UsageError
from . import hf, hub
from .hub import Fetched, Source, resolve_source, zoo_home
from .spec import resolve_name


def obtain(src: Source) -> Fetched:
    """The verified file of a source: a Hub file through huggingface_hub's cache, any other
    through zoo's."""
    return hf.download(src) if src.on_hub else hub.download(src)


def cached(src: Source) -> Fetched | None:
    """The verified file of a source if a cache holds it; no network."""
    return hf.cached(src) if src.on_hub else hub.cached(src)


def fetch(name: str, framework: str | None = None, *, source: str | None = None,
          sources_file: str | Path | None = None, revision: str | None = None) -> Path:
    """Download (once) and convert (once) the released weights of ``name`` for ``framework``
    (or to canonical ``safetensors``); returns the native file, or the verified download itself
    when ``framework`` is None. ``source``: a tag of ``zoo info`` (default: the variant's
    default source); ``revision``: a branch, tag or commit of a Hub source."""
    from filelock import FileLock

    from .frameworks import resolve_framework
    from .worker import require_installed

    name = resolve_name(name)
    fw = None
    if framework is not None:
        fw = CANONICAL if framework.lower() == CANONICAL else resolve_framework(framework).name
    if fw is not None and fw not in IN_PROCESS:
        require_installed(fw)  # before a download that could not be used
    got = obtain(resolve_source(name, source, sources_file, revision))
    if fw is None:
        return got.path
    home = zoo_home()
    place = home / "native" / fw / got.sha256 / got.commit
    out = place / f"{name}{EXTENSIONS[fw]}"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    (home / "locks").mkdir(exist_ok=True)
    with FileLock(str(home / "locks" / f"native-{fw}-{got.sha256[:32]}-{got.commit[:12]}-{name}.lock")):
        if not out.is_file():
            convert(got.path, fw, model=name, out=out, provenance=got.provenance)
    if got.commit:
        print(f"note: {name} from hf://{got.source.hf_repo} at commit {got.commit} (sha256 {got.sha256})",
              file=sys.stderr)
    return out


def convert_pretrained(name: str, to: str, *, model: str | None = None, out: str | Path | None = None,
                       dtype: str = "float32", allow_non_finite: bool = False, source: str | None = None,
                       sources_file: str | Path | None = None, revision: str | None = None) -> Path:
    """The released weights of ``name`` in ``to``'s format: downloaded once (checked, cached),
    converted once (cached by the download's checksum); copied to ``out`` if given, else the
    cached file itself is returned."""
    if out is not None and not Path(out).parent.is_dir():  # before a download that could not be written
        raise OutputError(f"{out}: the directory {Path(out).parent} does not exist; create it first")
    if model is not None and resolve_name(model) != name:
        raise UsageError(f"the source names {name} but --model names {resolve_name(model)}; give one of them")
    to = normalize_target(to)
    if dtype != "float32" or allow_non_finite:  # not the cached float32 conversion: convert the download itself
        got = obtain(resolve_source(name, source, sources_file, revision))
        return convert(got.path, to, model=name, out=out or Path.cwd() / f"{name}{EXTENSIONS[to]}", dtype=dtype,
                       allow_non_finite=allow_non_finite, provenance=got.provenance)
    native = fetch(name, to, source=source, sources_file=sources_file, revision=revision)
    if out is None:
        return native
    out = Path(out)
    with atomic_output(out) as tmp:
        shutil.copyfile(native, tmp)
    return out


def convert_any(src: str | Path, to: str, *, model: str | None = None, out: str | Path | None = None,
                dtype: str = "float32", allow_non_finite: bool = False, source: str | None = None,
                sources_file: str | Path | None = None, revision: str | None = None) -> Path:
    """``zoo convert``: ``src`` is a checkpoint file or, where no such file exists, a model name
    whose released weights (``source``: official, timm ...; mirrors from ``sources_file``) are
    fetched and converted through the cache."""
    name = model_name(str(src))
    if not Path(src).exists() and name is not None:
        return convert_pretrained(name, to, model=model, out=out, dtype=dtype, allow_non_finite=allow_non_finite,
                                  source=source, sources_file=sources_file, revision=revision)
    if revision:
        raise UsageError(f"--revision applies to a model name's Hub weights; {src} is a file")
    return convert(src, to, model=model, out=out, dtype=dtype, allow_non_finite=allow_non_finite)


__all__ = ["CANONICAL", "convert_any", "convert_pretrained", "fetch"]
