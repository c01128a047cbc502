"""The download cache: where released weights live, fetched once, verified, content-addressed.
(Converting them, once per framework: ``zoo.pretrained``.)

Cache layout under ``$ZOO_HOME`` (default: the platform's user cache dir, ``res2net-zoo``)::

    blobs/sha256/<digest>                    verified downloads, content-addressed
    refs/<key>.json                          source URL -> digest and size (found again offline)
    partial/<key>.part                       an interrupted transfer, resumed with HTTP Range
    native/<framework>/<digest>/<model><ext> the download converted once, keyed by its checksum
    locks/<key>.lock                         one lock per file: concurrent processes share a transfer

The transfer uses requests (streaming, Range) under filelock, with progress on stderr (zoo.progress).
pooch was the first choice but cannot resume an interrupted transfer or lock a file across
processes. Nothing enters ``blobs/`` before its size and checksum are verified, and a file that
fails verification is deleted. Files of Hugging Face Hub repositories (timm's copies) are not
kept here: ``zoo.hf`` fetches them with huggingface_hub into its own cache, where timm finds
them too, and checks their full sha256.

Mirrors and air-gapped sites: a JSON manifest (``ZOO_SOURCES=/path/sources.json`` or
``--sources``) adds or overrides sources:
``{"res2net50_26w_4s": {"url": "http://host/res2net50_26w_4s.pth", "sha256": "<64 hex>"}}``.
A ``url`` may also be a ``file://`` URL or a path (relative paths start at the manifest's
folder): a share mounted on a machine without internet. Such files are checked and cached like
downloads. ``ZOO_OFFLINE=1`` uses only the cache and local files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .atomic import atomic_output
from .errors import DownloadError, UsageError
from .spec import get_variant, resolve_name
from .spec.registry import SHA256_IN_FILE_NAME

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_ATTEMPTS = 4


@dataclass(frozen=True)
class Source:
    model: str
    url: str
    tag: str
    sha256: str = ""         # full digest when published or given by a manifest
    sha256_prefix: str = ""  # the official file names' prefix
    hf_repo: str = ""        # a file of this Hugging Face Hub repository (zoo.hf) ...
    hf_filename: str = ""
    revision: str = ""       # ... at this branch, tag or commit

    @property
    def on_hub(self) -> bool:
        return bool(self.hf_repo)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.url.encode()).hexdigest()[:32]

    @property
    def local_path(self) -> Path | None:
        """The file of a ``file://`` URL or a plain path; None for network URLs and Hub files."""
        return None if self.on_hub else local_path(self.url)

    def check(self, digest: str) -> None:
        if self.sha256 and digest != self.sha256:
            raise DownloadError(f"checksum mismatch for {self.url}: expected sha256 {self.sha256}, got {digest}; "
                                "the download was deleted")
        if self.sha256_prefix and not digest.startswith(self.sha256_prefix):
            raise DownloadError(f"checksum mismatch for {self.url}: expected sha256 starting "
                                f"{self.sha256_prefix}, got {digest}; the download was deleted")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def zoo_home() -> Path:
    if os.environ.get("ZOO_HOME"):
        return Path(os.environ["ZOO_HOME"]).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("res2net-zoo"))


def offline() -> bool:
    return os.environ.get("ZOO_OFFLINE", "").lower() in ("1", "true", "yes")


def load_manifest(path: str | Path | None = None) -> dict[str, dict]:
    path = path or os.environ.get("ZOO_SOURCES")
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"sources manifest {path}: cannot read it ({exc.strerror})") from exc
    except ValueError as exc:
        raise UsageError(f"sources manifest {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"sources manifest {path}: expected an object of model name -> {{url, sha256}}")
    manifest = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise UsageError(f"sources manifest {path}: entry {name!r} needs a \"url\"")
        sha = str(entry.get("sha256", "")).lower()
        if sha and not _HEX64.match(sha):
            raise UsageError(f"sources manifest {path}: entry {name!r} has a sha256 that is not 64 hex digits")
        url = entry["url"]
        if not _split(url).scheme and not Path(url).expanduser().is_absolute():
            url = str((Path(path).parent / url).resolve())  # relative to the manifest, not the cwd
        manifest[resolve_name(name)] = {"url": url, "sha256": sha}
    return manifest


_NETWORK_SCHEMES = ("http", "https")


def _split(url: str):
    try:
        return urlsplit(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL"
        raise DownloadError(f"cannot fetch {url}: not a valid URL ({exc}); check the sources manifest") from None


def local_path(url: str) -> Path | None:
    parts = _split(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise DownloadError(f"cannot fetch {url}: file:// URLs name a local path (file:///mnt/...), "
                                f"not host {parts.netloc!r}")
        return Path(unquote(parts.path))
    if parts.scheme in _NETWORK_SCHEMES:
        return None
    if parts.scheme and len(parts.scheme) > 1:  # one letter: a Windows drive
        raise DownloadError(f"cannot fetch {url}: {parts.scheme}:// is not supported; "
                            "use http(s)://, file:// or a path in the sources manifest")
    return Path(url)


def _prefix_from_url(url: str) -> str:
    m = SHA256_IN_FILE_NAME.search(url.rsplit("/", 1)[-1])
    return m.group(1) if m else ""


def resolve_source(name: str, source: str | None = None, sources_file: str | Path | None = None,
                   revision: str | None = None) -> Source:
    """The download of ``name``: the manifest's entry if it has one, else the registry's
    ``source`` (default: the variant's default source, ``zoo info`` says which and why)."""
    variant = get_variant(name)
    manifest = load_manifest(sources_file)
    if variant.name in manifest:
        entry = manifest[variant.name]
        if revision:
            raise UsageError(f"--revision applies to Hugging Face Hub sources; the sources manifest gives "
                             f"{variant.name} as a plain URL ({entry['url']})")
        return Source(variant.name, entry["url"], "manifest", entry["sha256"],
                      "" if entry["sha256"] else _prefix_from_url(entry["url"]))
    if not variant.has_weights:
        raise UsageError(f"{variant.name} has no released weights; convert a checkpoint file instead, "
                         "or add the model to a sources manifest (ZOO_SOURCES)")
    tags = [s.tag for s in variant.sources]
    if source is None:
        source = variant.default_source.tag
    if source not in tags:
        raise UsageError(f"{variant.name} has no {source!r} weights; available: {', '.join(tags)}")
    ws = next(s for s in variant.sources if s.tag == source)
    if not ws.on_hub:
        if revision:
            raise UsageError(f"--revision applies to Hugging Face Hub sources; {variant.name}'s {source!r} "
                             f"weights are a plain URL ({ws.url})")
        return Source(variant.name, ws.url, ws.tag, ws.sha256, ws.sha256_prefix)
    revision = revision or "main"
    return Source(variant.name, f"hf://{ws.hf_hub_id}/{ws.hf_filename}@{revision}", ws.tag, ws.sha256,
                  hf_repo=ws.hf_hub_id, hf_filename=ws.hf_filename, revision=revision)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """A verified file of a source: where it lies, its full sha256, and for a Hub file the
    commit it came from."""

    source: Source
    path: Path
    sha256: str
    commit: str = ""

    @property
    def provenance(self) -> dict[str, str]:
        """What a converted file records of where its tensors came from."""
        out = {"zoo.source": self.source.url.rsplit("@", 1)[0] if self.source.on_hub else self.source.url,
               "zoo.source_tag": self.source.tag, "zoo.sha256": self.sha256}
        if self.commit:
            out["zoo.revision"] = self.commit
        return out


def cached(src: Source) -> Fetched | None:
    """The verified file of a URL source if the cache holds it; never touches the network."""
    home = zoo_home()
    blob = _cached(home, src)
    return Fetched(src, blob, blob.name) if blob is not None else None


def _cached(home: Path, src: Source) -> Path | None:
    ref = home / "refs" / f"{src.key}.json"
    try:
        digest = json.loads(ref.read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        return None
    blob = home / "blobs" / "sha256" / digest
    if not blob.is_file():
        return None
    src.check(digest)  # a manifest may now demand another file than the one cached
    return blob


def _copy_local(src: Source, path: Path, part: Path) -> None:
    """A mirror on a mounted share: copied into the cache like a download, then checked."""
    from .progress import progress

    if not path.is_file():
        raise DownloadError(f"mirror file {path} for {src.model} does not exist or is not a file; "
                            "check the sources manifest (ZOO_SOURCES)")
    try:
        with path.open("rb") as f, part.open("wb") as out, progress(
                path.stat().st_size, path.name[:40], unit="B", unit_scale=True) as bar:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                out.write(chunk)
                bar.update(len(chunk))
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"cannot copy mirror file {path}: {exc.strerror or exc}") from None


def _transfer(src: Source, part: Path) -> None:
    """Stream ``src.url`` into ``part``, resuming what is there; retries dropped connections."""
    import requests

    from .progress import progress

    path = src.local_path
    if path is not None:
        _copy_local(src, path, part)
        return

    last_error = None
    for _ in range(_ATTEMPTS):
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with requests.get(src.url, headers=headers, stream=True, timeout=(15, 60)) as resp:
                if resp.status_code == 416 and have:  # nothing left to fetch
                    return
                if resp.status_code not in (200, 206):
                    raise DownloadError(f"{src.url}: HTTP {resp.status_code} {resp.reason}")
                if resp.status_code == 200:
                    have = 0  # the server ignored the Range: start over
                length = resp.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                with part.open("ab" if have else "wb") as f, progress(
                        total, src.url.rsplit("/", 1)[-1][:40], unit="B", unit_scale=True, initial=have) as bar:
                    for chunk in resp.iter_content(_CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
            if total is not None and part.stat().st_size != total:
                last_error = f"got {part.stat().st_size} of {total} bytes"
                continue
            return
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            last_error = _reason(exc, src.url)
            if last_error.startswith("cannot resolve"):
                break  # no retry brings a host name back
        except requests.RequestException as exc:  # an URL requests cannot use at all: no retry helps
            raise DownloadError(f"cannot fetch {src.url}: {type(exc).__name__}; "
                                "check the URL in the sources manifest (ZOO_SOURCES)") from None
    kept = part.exists() and part.stat().st_size > 0
    raise DownloadError(f"cannot download {src.url.rsplit('/', 1)[-1]}: {last_error}; "
                        + ("run the command again to resume, or " if kept else "")
                        + "point ZOO_SOURCES at a mirror")


def _reason(exc: Exception, url: str) -> str:
    """What went wrong, in a few words: requests nests urllib3's internals in its messages."""
    import requests

    host = urlsplit(url).hostname or url
    text = str(exc)
    if "NameResolutionError" in text or "Name or service not known" in text or "nodename nor servname" in text:
        return f"cannot resolve {host} (no network or DNS?)"
    if "Connection refused" in text:
        return f"{host} refused the connection"
    if isinstance(exc, requests.Timeout):
        return f"{host} did not answer in time"
    return f"the connection to {host} broke off"



def download(src: Source) -> Fetched:
    """The verified file of a URL source in the cache, downloading it if needed."""
    blob = _download_url(src)
    return Fetched(src, blob, blob.name)  # blobs are named by their sha256


def _download_url(src: Source) -> Path:
    from filelock import FileLock

    home = zoo_home()
    blob = _cached(home, src)
    if blob is not None:
        return blob
    if offline() and src.local_path is None:
        raise DownloadError(f"ZOO_OFFLINE=1 and {src.model} ({src.url}) is not in the cache {home}; "
                            "download it once with network, or point ZOO_SOURCES at a local mirror")
    for sub in ("locks", "partial", "refs", "blobs/sha256"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    with FileLock(str(home / "locks" / f"{src.key}.lock")):
        blob = _cached(home, src)  # another process may have finished it while we waited
        if blob is not None:
            return blob
        part = home / "partial" / f"{src.key}.part"
        _transfer(src, part)
        digest = sha256_file(part)
        try:
            src.check(digest)
        except DownloadError:
            part.unlink(missing_ok=True)
            raise
        blob = home / "blobs" / "sha256" / digest
        os.replace(part, blob)
        with atomic_output(home / "refs" / f"{src.key}.json") as tmp:
            tmp.write_text(json.dumps({"url": src.url, "sha256": digest, "size": blob.stat().st_size,
                                       "model": src.model}))
        if not (src.sha256 or src.sha256_prefix):
            print(f"note: {src.url} has no published checksum; recorded sha256 {digest}", file=sys.stderr)
    return blob
