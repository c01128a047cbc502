"""Per-framework backends, imported lazily.

Each backend package ``zoo.frameworks.<name>`` exposes the same few functions
(``build_model(spec, ...)``, ``load_weights(model, path, ...)``, ``state_dict(model)``) and is the
only place its framework is imported. Importing this module imports no framework: the native
libraries of the frameworks collide inside one process (torch or paddle loaded before mindspore
breaks mindspore), so nothing may pull one in by accident.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from ..errors import FrameworkNotInstalledError, UnknownNameError


@dataclass(frozen=True)
class Training:
    """How the framework's own BatchNorm differs from torch's in train mode (measured on this
    machine with a lone BatchNorm; the backends' tests check each field against the framework).

    bn_momentum: "new" when momentum weighs the batch statistic (torch, Jittor: 0.1), "old" when
        it weighs the running value (Paddle, MindSpore: 0.9 means torch's 0.1).
    running_var: the batch variance the framework stores in its running variance, "unbiased"
        (n/(n-1), torch, MindSpore) or "biased" (Paddle, Jittor); zoo's ports store the unbiased
        one everywhere.
    """

    bn_momentum: str = "new"
    running_var: str = "unbiased"
    modes: tuple[str, ...] = ()   # the execution modes zoo trains in (a subset of the framework's modes)

    def native_bn_momentum(self, torch_momentum: float) -> float:
        return 1.0 - torch_momentum if self.bn_momentum == "old" else torch_momentum


@dataclass(frozen=True)
class Framework:
    name: str
    import_name: str       # the top-level module of the framework itself
    extra: str             # pip extra of res2net-zoo that installs it
    aliases: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()   # execution modes of verify/eval, verify's default first
    eval_mode: str = ""           # eval's default: exact and fastest (benchmarks/bench.py measures)
    runtimes: tuple[tuple[str, str], ...] = ()  # (mode, export format) of the deployment runtimes
    training: Training = Training()

    @property
    def backend_module(self) -> str:
        return f"{__name__}.{self.name}"

    def is_installed(self) -> bool:
        return importlib.util.find_spec(self.import_name) is not None


FRAMEWORKS: dict[str, Framework] = {f.name: f for f in (
    Framework("torch", "torch", "torch", ("pytorch", "pt"), ("eager", "onnxruntime"), "onnxruntime",
              (("onnxruntime", "onnx"),), Training("new", "unbiased", ("eager",))),
    Framework("paddle", "paddle", "paddle", ("paddlepaddle", "pd"), ("dynamic", "to_static", "inference"),
              "inference", (("inference", "paddle-inference"),), Training("old", "biased", ("dynamic",))),
    Framework("mindspore", "mindspore", "mindspore", ("ms",), ("pynative", "graph", "mindir"), "graph",
              (("mindir", "mindir"),), Training("old", "unbiased", ("pynative",))),
    Framework("jittor", "jittor", "jittor", ("jt",), ("lazy", "eager"), "lazy", (), Training("new", "biased", ("lazy", "eager"))),
)}
DEVICES = ("cpu", "gpu", "ascend")

_ALIASES = {a: f.name for f in FRAMEWORKS.values() for a in f.aliases}


def resolve_framework(name: str) -> Framework:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in FRAMEWORKS:
        return FRAMEWORKS[key]
    close = difflib.get_close_matches(key, sorted(set(FRAMEWORKS) | set(_ALIASES)), n=2, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(f"unknown framework {name!r}{hint} (available: {', '.join(FRAMEWORKS)})")


def check_mode(framework: str, mode: str | None, *, purpose: str = "verify") -> str:
    """The execution mode to use; an unknown one is refused. Without one: verify checks the
    framework's own eager port (the first mode), eval runs the exact mode measured fastest, unless
    its runtime is not installed (ONNX Runtime is an extra), then the first mode."""
    from ..errors import UsageError

    fw = resolve_framework(framework)
    if mode is None:
        if purpose == "eval" and fw.eval_mode and _runtime_installed(fw, fw.eval_mode):
            return fw.eval_mode
        return fw.modes[0]
    if mode not in fw.modes:
        raise UsageError(f"{fw.name} has no mode {mode!r}; its modes: {', '.join(fw.modes)}")
    if not _runtime_installed(fw, mode):
        from ..errors import FrameworkNotInstalledError

        raise FrameworkNotInstalledError(f"--mode {mode} needs onnx, onnxscript and onnxruntime; install with: "
                                         "pip install 'res2net-zoo[onnx]'")
    return mode


def check_train_mode(framework: str, mode: str | None) -> str:
    """The mode to train in: the framework's own training step (its first training mode by default)."""
    from ..errors import UsageError

    fw = resolve_framework(framework)
    if mode is None:
        return fw.training.modes[0]
    if mode not in fw.training.modes:
        raise UsageError(f"{fw.name} trains in {', '.join(fw.training.modes)} mode, not {mode!r} "
                         f"(--train checks the framework's own training step)")
    return mode


def _runtime_installed(fw: Framework, mode: str) -> bool:
    if mode != "onnxruntime":
        return True  # the other runtimes ship with their framework
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


def check_device(framework: str, device: str) -> None:
    """Refuse a device this machine lacks before any work starts: without the device node at
    once, otherwise by asking the framework in a worker (its import, a few seconds)."""
    import glob

    from ..errors import UsageError

    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    if device == "cpu":
        return
    node = {"gpu": "/dev/nvidia[0-9]*", "ascend": "/dev/davinci[0-9]*"}[device]
    if not glob.glob(node):
        raise UsageError(f"--device {device}: this machine has no {'CUDA' if device == 'gpu' else 'Ascend'} "
                         "device; use --device cpu")
    from ..worker import run_worker

    run_worker(framework, "probe", device)


def get_backend(name: str) -> ModuleType:
    """The backend module of a framework; a clear error when the framework is missing."""
    fw = resolve_framework(name)
    if not fw.is_installed():
        raise FrameworkNotInstalledError(
            f"{fw.name} is not installed; install it with: pip install 'res2net-zoo[{fw.extra}]'"
        )
    return importlib.import_module(fw.backend_module)
