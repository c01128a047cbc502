"""Client side: start a worker, stream its messages and progress, rebuild its error.

The worker writes its outcome to a JSON file (``ZOO_WORKER_RESULT``): on failure the error's
class, its message, and with ``ZOO_DEBUG=1`` its traceback. The client raises the same
:mod:`zoo.errors` class with the same message, so a ``NonFiniteError`` stays a
``NonFiniteError`` and nothing is guessed from exit codes. The worker's stderr is relayed as it
comes: ``note:``/``zoo:`` lines and progress bars always, everything with ``ZOO_DEBUG=1``
(frameworks log freely; their chatter is kept for the error of a crashed worker).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path

from .. import errors

RESULT_ENV = "ZOO_WORKER_RESULT"
PROGRESS_ENV = "ZOO_PROGRESS"  # "tty": progress bars; "lines": a plain line now and then
_RELAYED = ("note: ", "zoo: ", "warning: ")


def require_installed(framework: str):
    """The framework's description, or the error that names the extra to install."""
    from ..frameworks import resolve_framework

    fw = resolve_framework(framework)
    if not fw.is_installed():
        raise errors.FrameworkNotInstalledError(
            f"{fw.name} is needed for this step but not installed; install it with: "
            f"pip install 'res2net-zoo[{fw.extra}]'")
    return fw


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies, however it dies, so a killed
    ``zoo convert`` leaves no worker writing on behind it."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the worker then finishes on its own
        pass


class _Relay(threading.Thread):
    """Copies the worker's stderr to ours as it arrives (see the module docstring)."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.tail = stream, deque(maxlen=40)
        self.everything = os.environ.get("ZOO_DEBUG") == "1"

    def _emit(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    def run(self) -> None:
        pending = ""
        while chunk := os.read(self.stream.fileno(), 1 << 16):
            pending += chunk.decode("utf-8", "replace")
            *lines, pending = pending.split("\n")
            for line in lines:
                self.tail.append(line)
                shown = line.rsplit("\r", 1)[-1]
                if self.everything or shown.startswith(_RELAYED):
                    self._emit(shown + "\n")
                elif "\r" in line:  # a progress bar's last drawing, ended by its newline on close
                    self._emit("\r" + shown + "\n")
            if "\r" in pending:  # a progress bar redrawing its line
                self._emit("\r" + pending.rsplit("\r", 1)[-1])
        if pending:
            self.tail.append(pending)


def _outcome(result: Path) -> dict:
    try:
        return json.loads(result.read_text())
    except (OSError, ValueError):
        return {}


def _error(outcome: dict, tail: deque, name: str, code: int) -> errors.ZooError:
    if outcome.get("traceback") and os.environ.get("ZOO_DEBUG") == "1":
        sys.stderr.write(f"{name} worker traceback:\n{outcome['traceback']}")
    classes = [getattr(errors, c, None) for c in outcome.get("classes", [])]
    cls = next((c for c in classes if isinstance(c, type) and issubclass(c, errors.ZooError)), None)
    if cls is not None:
        return cls(outcome.get("message", ""))
    last = next((line.strip() for line in reversed(tail) if line.strip()), f"exit code {code}")
    if code < 0:
        last = f"killed by signal {-code} ({last})"
    return errors.ZooError(f"{name} worker failed: {outcome.get('message') or last[:200]}")


def run_job(framework: str, command: str, job, directory: str | Path | None = None) -> str:
    """Run a worker command on one JSON job (or a list of jobs): written as ``<command>.json``
    into ``directory`` (or a private temporary one), the worker started on it."""
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="zoo-job-") as tmp:
            return run_job(framework, command, job, tmp)
    path = Path(directory) / f"{command}.json"
    path.write_text(json.dumps(job))
    return run_worker(framework, command, str(path))


def run_worker(framework: str, *args: str) -> str:
    """Run ``python -m zoo.worker FRAMEWORK *args``; returns its stdout, raises its error."""
    fw = require_installed(framework)
    with tempfile.TemporaryDirectory(prefix="zoo-worker-") as tmp:
        result = Path(tmp) / "result.json"
        env = {**os.environ, RESULT_ENV: str(result),
               PROGRESS_ENV: os.environ.get(PROGRESS_ENV) or ("tty" if sys.stderr.isatty() else "lines")}
        proc = subprocess.Popen([sys.executable, "-m", "zoo.worker", fw.name, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, preexec_fn=_die_with_parent)
        relay = _Relay(proc.stderr)
        relay.start()
        try:
            stdout = proc.stdout.read().decode("utf-8", "replace")
            proc.wait()
        except BaseException:
            # Ctrl-C or SIGTERM here: ask the worker to stop so it removes its partial output
            # (a SIGKILL would leave the partial file behind).
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            relay.join(timeout=10)
        outcome = _outcome(result)
        if proc.returncode != 0 and not outcome.get("ok"):
            raise _error(outcome, relay.tail, fw.name, proc.returncode)
        if proc.returncode != 0 and os.environ.get("ZOO_DEBUG") == "1":
            sys.stderr.write(f"note: the {fw.name} worker finished its work, then exited with {proc.returncode}\n")
    return stdout
