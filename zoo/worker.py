"""One framework per process.

The frameworks' native libraries collide inside one process (torch or paddle loaded before
mindspore breaks mindspore), so work that needs a framework other than the caller's runs here,
in a child process that imports exactly one framework; arrays travel through safetensors files.

    python -m zoo.worker FRAMEWORK convert JOB.json                 any checkpoint -> this framework's file
    python -m zoo.worker FRAMEWORK logits JOBS.json                 run models on .npy inputs
    python -m zoo.worker FRAMEWORK eval JOB.json                    ImageNet-style evaluation
    python -m zoo.worker torch calibrate JOBS.json                  realistic random weights
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from . import errors

_ERRORS_BY_CODE = {cls.exit_code: cls for cls in (
    errors.UsageError, errors.FrameworkNotInstalledError, errors.CheckpointFormatError,
    errors.CheckpointMismatchError, errors.UnsafeCheckpointError, errors.DownloadError, errors.OutputError,
    errors.VerificationFailed,
)}


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies, however it dies, so a killed
    ``zoo convert`` leaves no worker writing on behind it."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the worker then finishes on its own
        pass


def require_installed(framework: str):
    """The framework's description, or the error that names the extra to install."""
    from .frameworks import resolve_framework

    fw = resolve_framework(framework)
    if not fw.is_installed():
        raise errors.FrameworkNotInstalledError(
            f"{fw.name} is needed for this step but not installed; install it with: "
            f"pip install 'res2net-zoo[{fw.extra}]'")
    return fw


def run_worker(framework: str, *args: str) -> str:
    """Run a worker command; its ZooError comes back as the same error class and message."""
    fw = require_installed(framework)
    proc = subprocess.Popen([sys.executable, "-m", "zoo.worker", fw.name, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        # Ctrl-C or SIGTERM here: ask the worker to stop so it removes its partial output
        # (subprocess.run would SIGKILL it, leaving the partial file behind).
        proc.terminate()
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    for line in stderr.splitlines():
        if line.startswith("note: "):
            print(line, file=sys.stderr)
    if proc.returncode != 0:
        # The framework may log after our message; ours is the last line starting "error: ".
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        ours = [line[len("error: "):] for line in lines if line.startswith("error: ")]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        message = ours[-1] if ours else f"{fw.name} worker failed: {last}"
        raise _ERRORS_BY_CODE.get(proc.returncode, errors.ZooError)(message)
    return stdout


def _main(argv: list[str]) -> int:
    from .frameworks import get_backend

    framework, command, *args = argv
    backend = get_backend(framework)
    if command == "convert":
        from .convert import convert_here

        with open(args[0]) as f:
            convert_here(**json.load(f))
    elif command == "logits":
        from .frameworks._common import run_jobs

        with open(args[0]) as f:
            run_jobs(framework, json.load(f))
    elif command == "eval":
        from .evaluate import run_eval_job

        with open(args[0]) as f:
            run_eval_job(framework, json.load(f))
    elif command == "calibrate":
        with open(args[0]) as f:
            backend.calibrate_jobs(json.load(f))
    else:
        raise errors.UsageError(f"unknown worker command {command!r}")
    return 0


if __name__ == "__main__":
    import multiprocessing

    from .atomic import terminate_on_sigterm

    # Jittor forks a pool of compiler processes at every import; a fork taken while other
    # threads hold locks can leave a child deadlocked (seen here: a worker hung for good).
    # Spawned children start clean. Only zoo's own worker processes are changed this way.
    multiprocessing.set_start_method("spawn", force=True)
    terminate_on_sigterm()
    try:
        sys.exit(_main(sys.argv[1:]))
    except errors.ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
