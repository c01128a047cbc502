"""One framework per process.

The frameworks' native libraries collide inside one process (torch or paddle loaded before
mindspore breaks mindspore), so work that needs a framework other than the caller's runs here,
in a child process that imports exactly one framework; arrays travel through safetensors files.

    python -m zoo.worker FRAMEWORK read SRC OUT.safetensors         native file -> canonical
    python -m zoo.worker FRAMEWORK write MODEL STATE.safetensors OUT canonical -> native file
    python -m zoo.worker FRAMEWORK logits JOBS.json                 run models on .npy inputs
    python -m zoo.worker FRAMEWORK eval JOB.json                    ImageNet-style evaluation
    python -m zoo.worker torch calibrate JOBS.json                  realistic random weights
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from . import errors

_ERRORS_BY_CODE = {cls.exit_code: cls for cls in (
    errors.UsageError, errors.FrameworkNotInstalledError, errors.CheckpointFormatError,
    errors.CheckpointMismatchError, errors.UnsafeCheckpointError, errors.DownloadError, errors.OutputError,
    errors.VerificationFailed,
)}


def run_worker(framework: str, *args: str) -> str:
    """Run a worker command; its ZooError comes back as the same error class and message."""
    from .frameworks import resolve_framework

    fw = resolve_framework(framework)
    if not fw.is_installed():
        raise errors.FrameworkNotInstalledError(
            f"{fw.name} is needed for this step but not installed; install it with: "
            f"pip install 'res2net-zoo[{fw.extra}]'")
    env = {**os.environ, "ZOO_WORKER": "1"}
    proc = subprocess.run([sys.executable, "-m", "zoo.worker", fw.name, *args],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        # The framework may log after our message; ours is the last line starting "error: ".
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        ours = [line[len("error: "):] for line in lines if line.startswith("error: ")]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        message = ours[-1] if ours else f"{fw.name} worker failed: {last}"
        raise _ERRORS_BY_CODE.get(proc.returncode, errors.ZooError)(message)
    return proc.stdout


def _main(argv: list[str]) -> int:
    from .frameworks import get_backend

    framework, command, *args = argv
    backend = get_backend(framework)
    if command == "read":
        backend.read_to_safetensors(*args)
    elif command == "write":
        backend.write_native(*args)
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
    try:
        sys.exit(_main(sys.argv[1:]))
    except errors.ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
