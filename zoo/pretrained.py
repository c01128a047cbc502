"""Released weights as framework X: downloaded once through the cache (``zoo.hub``), converted once
per framework (``zoo.convert``), keyed by the download's checksum::

    <ZOO_HOME>/native/<framework>/<sha256 of the download>/<model><ext>

Above both: the cache knows nothing of conversion, the converter nothing of downloads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .atomic import atomic_output
from .convert import CANONICAL, EXTENSIONS, IN_PROCESS, convert, model_name, normalize_target
from .errors import OutputError, UsageError
from .hub import download, resolve_source, zoo_home
from .spec import resolve_name


def fetch(name: str, framework: str | None = None, *, source: str = "official",
          sources_file: str | Path | None = None) -> Path:
    """Download (once) and convert (once) the released weights of ``name`` for ``framework``
    (or to canonical ``safetensors``); returns the native file, or the verified download itself
    when ``framework`` is None."""
    from filelock import FileLock

    from .frameworks import resolve_framework
    from .worker import require_installed

    name = resolve_name(name)
    fw = None
    if framework is not None:
        fw = CANONICAL if framework.lower() == CANONICAL else resolve_framework(framework).name
    if fw is not None and fw not in IN_PROCESS:
        require_installed(fw)  # before a download that could not be used
    blob = download(resolve_source(name, source, sources_file))
    if fw is None:
        return blob
    home = zoo_home()
    out = home / "native" / fw / blob.name / f"{name}{EXTENSIONS[fw]}"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(home / "locks" / f"native-{fw}-{blob.name[:32]}-{name}.lock")):
        if not out.is_file():
            convert(blob, fw, model=name, out=out)
    return out


def convert_pretrained(name: str, to: str, *, model: str | None = None, out: str | Path | None = None,
                       dtype: str = "float32", allow_non_finite: bool = False, source: str = "official",
                       sources_file: str | Path | None = None) -> Path:
    """The released weights of ``name`` in ``to``'s format: downloaded once (checked, cached),
    converted once (cached by the download's checksum); copied to ``out`` if given, else the
    cached file itself is returned."""
    if out is not None and not Path(out).parent.is_dir():  # before a download that could not be written
        raise OutputError(f"{out}: the directory {Path(out).parent} does not exist; create it first")
    if model is not None and resolve_name(model) != name:
        raise UsageError(f"the source names {name} but --model names {resolve_name(model)}; give one of them")
    to = normalize_target(to)
    if dtype != "float32" or allow_non_finite:  # not the cached float32 conversion: convert the download itself
        blob = download(resolve_source(name, source, sources_file))
        return convert(blob, to, model=name, out=out or Path.cwd() / f"{name}{EXTENSIONS[to]}", dtype=dtype,
                       allow_non_finite=allow_non_finite)
    native = fetch(name, to, source=source, sources_file=sources_file)
    if out is None:
        return native
    out = Path(out)
    with atomic_output(out) as tmp:
        shutil.copyfile(native, tmp)
    return out


def convert_any(src: str | Path, to: str, *, model: str | None = None, out: str | Path | None = None,
                dtype: str = "float32", allow_non_finite: bool = False, source: str = "official",
                sources_file: str | Path | None = None) -> Path:
    """``zoo convert``: ``src`` is a checkpoint file or, where no such file exists, a model name
    whose released weights (``source``: official, timm ...; mirrors from ``sources_file``) are
    fetched and converted through the cache."""
    name = model_name(str(src))
    if not Path(src).exists() and name is not None:
        return convert_pretrained(name, to, model=model, out=out, dtype=dtype, allow_non_finite=allow_non_finite,
                                  source=source, sources_file=sources_file)
    return convert(src, to, model=model, out=out, dtype=dtype, allow_non_finite=allow_non_finite)


__all__ = ["CANONICAL", "convert_any", "convert_pretrained", "fetch"]
