"""Files of Hugging Face Hub repositories (timm's copies of the release), fetched with
huggingface_hub into its own cache: ``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_TOKEN``
and ``HF_HUB_OFFLINE`` mean what they mean to timm, and a file timm already downloaded is used
where it lies. zoo's cache keeps only what it converts from such a file, never a copy of it.

huggingface_hub names a cached blob by the file's ETag, for an LFS file the sha256 the Hub
recorded at upload, but does not check the bytes against it. zoo does, each time it uses the
file: a blob that does not hash to its name is deleted with the snapshot link that points at it.

A file the cache holds for the revision asked (a branch or tag through the cache's ``refs/``) is
used with no request at all; ``--revision`` pins a commit, and the commit a file came from is
recorded in what is converted from it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from contextlib import contextmanager
from pathlib import Path

from .errors import DownloadError, UsageError
from .hub import Fetched, Source, offline, sha256_file

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")


def _where(src: Source) -> str:
    return f"hf://{src.hf_repo}/{src.hf_filename} at {src.revision}"


def _git_blob_sha1(path: Path) -> str:
    """The ETag of a file kept in git rather than LFS: git's blob hash."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(src: Source, pointer: Path) -> Fetched:
    """``pointer`` (snapshots/<commit>/<file>) checked against the digest its blob is named by."""
    blob = pointer.resolve()
    commit = pointer.parent.name
    etag = blob.name
    sha256 = sha256_file(blob)
    if _SHA256.match(etag):
        expected, got, kind = etag, sha256, "sha256"
    elif _GIT_SHA1.match(etag):
        expected, got, kind = etag, _git_blob_sha1(blob), "git blob sha1"
    else:
        raise DownloadError(f"{_where(src)}: the Hugging Face cache holds {pointer} without the Hub's digest "
                            "(no blob named by its ETag: HF_HUB_DISABLE_SYMLINKS?); delete it and run again")
    if got != expected:
        pointer.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise DownloadError(f"checksum mismatch for {_where(src)}: the Hub records {kind} {expected}, the bytes "
                            f"hash to {got}; the cached copy was deleted, run again to download it anew")
    return Fetched(src, pointer, sha256, commit)


def cached(src: Source) -> Fetched | None:
    """The verified file if the Hugging Face cache holds it for ``src.revision``; no request."""
    from huggingface_hub import try_to_load_from_cache

    try:
        path = try_to_load_from_cache(src.hf_repo, src.hf_filename, revision=src.revision)
    except ValueError as exc:  # a revision or file name the cache cannot hold
        raise UsageError(f"{_where(src)}: {exc}") from None
    return _verified(src, Path(path)) if isinstance(path, str) else None


def _cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


@contextmanager
def _retries_unsaid():
    """huggingface_hub retries a Hub out of reach five times (about 23 s), warning at each try; the
    user gets zoo's one line at the end instead."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def download(src: Source) -> Fetched:
    """The verified file of ``src``: from the Hugging Face cache, else fetched into it."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, HFValidationError,
                                        LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)

    hit = cached(src)
    if hit is not None:
        return hit
    if offline() or constants.is_offline_mode():
        raise DownloadError(f"offline (ZOO_OFFLINE / HF_HUB_OFFLINE) and {_where(src)} is not in the Hugging Face "
                            f"cache {_cache_dir()}; fetch it once with network (zoo or timm), or set HF_HOME to "
                            "the cache that holds it")
    try:
        with _retries_unsaid():
            path = hf_hub_download(src.hf_repo, src.hf_filename, revision=src.revision)
    except RevisionNotFoundError:
        raise UsageError(f"{src.hf_repo} has no revision {src.revision!r}; give a branch, tag or commit of the "
                         "repository (--revision)") from None
    except GatedRepoError:
        raise DownloadError(f"{src.hf_repo} is gated: accept its terms on the Hub, then set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise DownloadError(f"{src.hf_repo}: no such repository at {constants.ENDPOINT} (or it is private: "
                            "set HF_TOKEN); check HF_ENDPOINT") from None
    except LocalEntryNotFoundError:  # before EntryNotFoundError: it is one, for a Hub out of reach
        raise DownloadError(f"cannot reach {constants.ENDPOINT} for {_where(src)}, and the Hugging Face cache "
                            f"{_cache_dir()} does not hold it; check the network or HF_ENDPOINT") from None
    except EntryNotFoundError:
        raise DownloadError(f"{src.hf_repo} has no file {src.hf_filename} at {src.revision}; "
                            "choose another --revision or --source") from None
    except HFValidationError as exc:
        raise UsageError(f"{_where(src)}: {exc}") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise DownloadError(f"{_where(src)}: the Hub answered HTTP {status}; try again later") from None
    except OSError as exc:
        raise DownloadError(f"cannot store {_where(src)} in the Hugging Face cache {_cache_dir()}: "
                            f"{exc.strerror or exc}") from None
    return _verified(src, Path(path))
