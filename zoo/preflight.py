"""Checks that refuse a request before any work starts: the execution mode, the training mode and
the device, each against the framework record; a device that is present is confirmed by the
framework itself, in a worker (its import, a few seconds)."""

from __future__ import annotations

import importlib.util

from .errors import FrameworkNotInstalledError, UsageError
from .frameworks import DEVICES, Framework, resolve_framework


def runtime_installed(fw: Framework, mode: str) -> bool:
    """Whether what the mode needs beyond its framework (ONNX Runtime ...) is installed."""
    return all(importlib.util.find_spec(m) is not None for m in fw.mode(mode).needs)


def require_runtime(fw: Framework, mode: str, what: str, why: str = "") -> None:
    m = fw.mode(mode)
    if not runtime_installed(fw, mode):
        raise FrameworkNotInstalledError(f"{what} needs {', '.join(m.needs[:-1])} and {m.needs[-1]}{why}; install "
                                         f"with: pip install 'res2net-zoo[{m.extra}]'")


def check_mode(framework: str, mode: str | None, *, purpose: str = "verify") -> str:
    """The execution mode to use; an unknown one is refused. Without one: verify checks the
    framework's own eager port (the first mode), eval runs the exact mode measured fastest, unless
    its runtime is not installed (ONNX Runtime is an extra), then the first mode."""
    fw = resolve_framework(framework)
    if mode is None:
        if purpose == "eval" and fw.eval_mode and runtime_installed(fw, fw.eval_mode):
            return fw.eval_mode
        return fw.modes[0]
    if mode not in fw.modes:
        raise UsageError(f"{fw.name} has no mode {mode!r}; its modes: {', '.join(fw.modes)}")
    require_runtime(fw, mode, f"--mode {mode}")
    return mode


def check_train_mode(framework: str, mode: str | None) -> str:
    """The mode to train in: the framework's own training step (its first training mode by default)."""
    fw = resolve_framework(framework)
    if mode is None:
        return fw.training.modes[0]
    if mode not in fw.training.modes:
        raise UsageError(f"{fw.name} trains in {', '.join(fw.training.modes)} mode, not {mode!r} "
                         f"(--train checks the framework's own training step)")
    return mode


def check_device(framework: str, device: str) -> None:
    """Refuse a device this machine lacks before any work starts: without the device node at
    once, otherwise by asking the framework in a worker."""
    import glob

    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    if device == "cpu":
        return
    node = {"gpu": "/dev/nvidia[0-9]*", "ascend": "/dev/davinci[0-9]*"}[device]
    if not glob.glob(node):
        raise UsageError(f"--device {device}: this machine has no {'CUDA' if device == 'gpu' else 'Ascend'} "
                         "device; use --device cpu")
    from .worker import run_worker

    run_worker(framework, "probe", device)
