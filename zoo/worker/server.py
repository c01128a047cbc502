"""Server side: the worker process, ``python -m zoo.worker FRAMEWORK COMMAND ARGS``.

    convert JOB.json      any checkpoint -> this framework's file
    logits JOBS.json      run models on .npy inputs
    eval JOB.json         ImageNet-style evaluation
    calibrate JOBS.json   realistic random weights (torch)
    export JOB.json       write a deployment artefact (zoo.export)
    run-deployed JOB.json run an artefact in its runtime, from its files alone
    train-check JOBS.json K training steps, every gradient, statistic and parameter saved
    train JOB.json        a training run into its RUNDIR (zoo.train_loop)
    cam JOB.json          a stage output and the gradient of the class logit with respect to it
    probe DEVICE [MODE]   check that the framework can run there, before any work starts

The outcome goes to the JSON file named by ``ZOO_WORKER_RESULT`` (see client.py).
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from .. import errors
from .client import RESULT_ENV


# The commands that take a JSON job file, called as handler(framework, job). Each imports what
# its job needs when it runs, so a worker loads only that.
def _convert(framework: str, job: dict) -> None:
    from ..convert import convert_here

    convert_here(**job)


def _logits(framework: str, jobs: list[dict]) -> None:
    from ..frameworks._common import run_jobs

    run_jobs(framework, jobs)


def _eval(framework: str, job: dict) -> None:
    from ..evaluate import run_eval_job

    run_eval_job(framework, job)


def _calibrate(framework: str, jobs: list[dict]) -> None:
    from ..frameworks import get_backend

    get_backend(framework).calibrate_jobs(jobs)


def _export(framework: str, job: dict) -> None:
    from ..export import export_job

    export_job(framework, job)


def _run_deployed(framework: str, job: dict) -> None:
    from ..export import run_deployed_job

    run_deployed_job(framework, job)


def _train_check(framework: str, jobs: list[dict]) -> None:
    from ..verify_train import run_train_check

    run_train_check(framework, jobs)


def _cam(framework: str, job: dict) -> None:
    from ..cam import run_cam_job

    run_cam_job(framework, job)


def _train(framework: str, job: dict) -> None:
    from ..train_loop import run_train_job

    run_train_job(framework, job)


_JOB_COMMANDS = {"convert": _convert, "logits": _logits, "eval": _eval, "calibrate": _calibrate,
                 "export": _export, "run-deployed": _run_deployed, "train-check": _train_check, "cam": _cam,
                 "train": _train}


def _run(argv: list[str]) -> None:
    framework, command, *args = argv
    if command in _JOB_COMMANDS:
        with open(args[0]) as f:
            _JOB_COMMANDS[command](framework, json.load(f))
    elif command == "probe":
        from ..frameworks._common import runner_class

        runner_class(framework)(args[0], args[1] if len(args) > 1 else None)
    else:
        raise errors.UsageError(f"unknown worker command {command!r}")


def _report(outcome: dict) -> None:
    path = os.environ.get(RESULT_ENV)
    if path:
        with open(path, "w") as f:
            json.dump(outcome, f)


def main() -> None:
    import multiprocessing

    from ..atomic import terminate_on_sigterm

    # Jittor forks a pool of compiler processes at every import; a fork taken while other
    # threads hold locks can leave a child deadlocked (seen here: a worker hung for good).
    # Spawned children start clean. Only zoo's own worker processes are changed this way.
    multiprocessing.set_start_method("spawn", force=True)
    terminate_on_sigterm()
    try:
        _run(sys.argv[1:])
    except errors.ZooError as exc:
        _report({"classes": [c.__name__ for c in type(exc).__mro__ if c.__module__ == errors.__name__],
                 "message": str(exc),
                 "traceback": traceback.format_exc() if os.environ.get("ZOO_DEBUG") == "1" else None})
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a bug, or a framework failing in its own way
        text = str(exc).strip().splitlines()
        _report({"classes": [], "message": f"{type(exc).__name__}: {text[0] if text else ''}"[:300],
                 "traceback": traceback.format_exc()})
        raise
    # Written last: the work is done and its outputs are in place, whatever the interpreter's
    # shutdown does next (Jittor's compiler pool has been seen to fail there).
    _report({"ok": True})
