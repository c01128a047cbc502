"""Outputs appear whole or not at all.

Writers get a temporary path beside the target (same file system), which replaces the target in
one rename once the write succeeded. Any failure (a full disk, a file-size limit, Ctrl-C, or
SIGTERM, which the CLI and the workers turn into an exception) removes the temporary file. A
process killed outright cannot clean up after itself: its temporary file carries its PID, and
the next writer into that directory removes temporary files whose process is gone. Workers are
started so that they receive SIGTERM when their parent dies (see zoo.worker).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

from .errors import OutputError, ZooError

_PARTIAL = re.compile(r"^\..+\.zoo-(\d+)-[^.]+\.partial(\.[A-Za-z0-9]+)?$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_partials(directory: Path) -> None:
    """Remove temporary files left by zoo processes that were killed."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        m = _PARTIAL.match(entry.name)
        if m and not _alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


def terminate_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that ``finally`` blocks (and atomic_output) run."""
    def _raise(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)


def _partial_prefix(path: Path) -> str:
    # The form _PARTIAL matches: the PID lets a later writer sweep what a killed process left.
    return f".{path.name}.zoo-{os.getpid()}-"


def _partial_beside(path: Path, make, suffix: str):
    """``make`` (tempfile.mkstemp or mkdtemp) beside ``path``, once stale partials of interrupted
    runs there are swept; an error the user can act on when that cannot be done."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"{path}: the directory {directory} does not exist; create it first")
    sweep_stale_partials(directory)
    try:
        return make(prefix=_partial_prefix(path), suffix=suffix, dir=directory)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {directory} ({exc.strerror})") from exc


def check_writable(path: str | Path) -> None:
    """Refuse an output whose directory is missing or cannot be written, before any work starts
    (a mode-555 directory can still be written by root: the probe writes a file to find out)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{path}: cannot write under {directory}: it is a file, not a directory")
    if not directory.is_dir():
        raise OutputError(f"{path}: the directory {directory} does not exist; create it first")
    try:
        fd, probe = tempfile.mkstemp(prefix=".zoo-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {directory} ({exc.strerror})") from None


def _writing_failed(path: Path, exc: BaseException) -> OutputError:
    # The frameworks' writers raise their own types for a full disk or a size limit.
    text = str(exc).strip()
    reason = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else type(exc).__name__)
    return OutputError(f"{path}: writing failed ({reason}); nothing was written")


@contextlib.contextmanager
def atomic_output(path: str | Path):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    # Keep the extension last: some writers (MindSpore) append their own otherwise.
    fd, tmp = _partial_beside(path, tempfile.mkstemp, f".partial{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs follow the umask
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, (ZooError, KeyboardInterrupt, SystemExit)):
            raise
        raise _writing_failed(path, exc) from exc


@contextlib.contextmanager
def atomic_directory(path: str | Path):
    """Yield an empty temporary directory beside ``path``; on success it takes the place of
    ``path`` (a previous directory there is moved aside first and removed after)."""
    path = Path(path)
    tmp = Path(_partial_beside(path, tempfile.mkdtemp, ".partial"))
    old = None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_partial_prefix(path), suffix=".partial", dir=tmp.parent))
            os.replace(path, old / "previous")
        os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "previous").exists() and not path.exists():
            os.replace(old / "previous", path)  # put the previous export back
        if isinstance(exc, (ZooError, KeyboardInterrupt, SystemExit)):
            raise
        raise _writing_failed(path, exc) from exc
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
