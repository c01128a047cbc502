"""The framework record: everything zoo knows about each framework, as data, in one place.

``FRAMEWORKS`` holds one :class:`Framework` per supported framework; conversion (extensions,
rename tables, writers), the command line (names, aliases, modes and formats in every help
text), execution modes and their runtimes, deployment formats, launchers, training conventions,
the test harness (sessions, isolation, markers) and the benchmarks all read it, and nothing else
lists the frameworks. Importing this module imports no framework: the native libraries of the
frameworks collide inside one process (torch or paddle loaded before mindspore breaks
mindspore), so nothing may pull one in by accident.

The backend contract. ``zoo.frameworks.<name>`` is the only package that imports its framework;
its submodules, named in ``Framework.submodules``, provide (``tests/test_record.py`` checks it):

    model       build_model(spec, *, features_only=False, out_indices=None) -> native model
                (built with ``_common.plan_outputs`` and ``_common.model_builder``)
    io          native_shapes(model) -> {native name: shape} of the tensors a checkpoint fills;
                load_state(model, state, *, reset_head, model_name, allow_non_finite): a
                canonical state, checked strictly (``_common.checked_native_state``), loaded;
                save_native(native, path) unless ``numpy_writer`` names a framework-free writer
    runner      Runner(device, mode) with load(spec, weights, features=False) and
                __call__(model, batch) -> numpy logits or stage outputs
    train       create_optimizer(model, sgd) -> the framework's own optimizer in torch's
                semantics; Trainer(model, sgd, device, label_smoothing) with step, predict
                (eval-mode logits), named_state, momentum_buffers, load_state, set_lr (see
                zoo.training; zoo.train_loop runs them)
    collective  Collective(device) with rank, world_size, sum, gather, close (with a launcher)
    explain     activation_and_gradient(model, images, index, classes) -> (logits, stage output,
                gradient of each image's class logit with respect to it) (zoo.cam)
    deploy      export(model, fmt, directory, example, metadata), load(fmt, directory, device)
                (with export formats)

The package itself re-exports ``build_model`` and ``load_state``.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType

from ..errors import FrameworkNotInstalledError, UnknownNameError

# The framework whose training and inference are the reference of every parity check.
REFERENCE = "torch"
DEVICES = ("cpu", "gpu", "ascend")


@dataclass(frozen=True)
class Rule:
    """How a framework stores one role of the canonical layout: its leaf name (the part after
    the last dot; None: torch's) and whether the tensor is stored transposed ([in, out])."""

    leaf: str | None = None
    transpose: bool = False


@dataclass(frozen=True)
class Mode:
    """An execution mode of ``zoo verify``/``zoo eval``: the framework's own execution, or a
    deployment runtime that runs an exported artefact (``runtime``: the export format), which
    may need packages beyond the framework (``needs``, installed by the extra ``extra``)."""

    name: str
    runtime: str = ""
    needs: tuple[str, ...] = ()
    extra: str = ""


@dataclass(frozen=True)
class ExportFormat:
    name: str
    runtime: str         # what loads and checks the artefact
    suffix: str          # the output's suffix; "" for a directory

    @property
    def is_directory(self) -> bool:
        return not self.suffix


@dataclass(frozen=True)
class Launcher:
    """A data-parallel launcher: the command a user types and the environment it gives each rank."""

    name: str            # as messages name it
    command: str         # how to start it
    rank_var: str
    size_var: str
    needs_program: str = ""   # a program the framework needs for it (Jittor's MPI: OpenMPI's mpicc)
    needs_hint: str = ""      # ... and how to get it


@dataclass(frozen=True)
class Training:
    """How the framework's own BatchNorm differs from torch's in train mode (measured on this
    machine with a lone BatchNorm; tests/test_train_parity.py checks each field against the
    framework), and the modes zoo trains in.

    bn_momentum: "new" when momentum weighs the batch statistic (torch, Jittor: 0.1), "old" when
        it weighs the running value (Paddle, MindSpore: 0.9 means torch's 0.1).
    running_var: the batch variance the framework stores in its running variance, "unbiased"
        (n/(n-1), torch, MindSpore) or "biased" (Paddle, Jittor); zoo's ports store the unbiased
        one everywhere.
    """

    bn_momentum: str = "new"
    running_var: str = "unbiased"
    modes: tuple[str, ...] = ()

    def native_bn_momentum(self, torch_momentum: float) -> float:
        return 1.0 - torch_momentum if self.bn_momentum == "old" else torch_momentum


@dataclass(frozen=True)
class Framework:
    name: str
    title: str                   # as people write it
    import_name: str             # the top-level module of the framework itself
    extra: str                   # pip extra of res2net-zoo that installs it
    aliases: tuple[str, ...]
    extension: str               # its native checkpoint file
    rename: Mapping[str, Rule]   # canonical role -> how it stores that tensor (converters.tables)
    execution: tuple[Mode, ...]  # verify's default first
    eval_mode: str               # eval's default: exact and fastest (benchmarks/bench.py measures)
    training: Training
    exports: tuple[ExportFormat, ...] = ()   # deployment formats it writes, its default first
    launcher: Launcher | None = None
    # a writer in zoo.converters.native_files that writes its file without the framework
    numpy_writer: str = ""
    submodules: tuple[str, ...] = ("model", "io", "runner", "train", "explain")

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.execution)

    @property
    def runtimes(self) -> tuple[tuple[str, str], ...]:
        """(mode, export format) of the deployment runtimes."""
        return tuple((m.name, m.runtime) for m in self.execution if m.runtime)

    def mode(self, name: str) -> Mode:
        return next(m for m in self.execution if m.name == name)

    @property
    def backend_module(self) -> str:
        return f"{__name__}.{self.name}"

    def backend(self, submodule: str = "") -> ModuleType:
        """The backend package or one of its submodules (imports the framework)."""
        return importlib.import_module(f"{self.backend_module}.{submodule}" if submodule else self.backend_module)

    def is_installed(self) -> bool:
        return importlib.util.find_spec(self.import_name) is not None


_ONNX = ("onnx", "onnxscript", "onnxruntime")
_SUBMODULES = ("model", "io", "runner", "train", "explain", "collective")

FRAMEWORKS: dict[str, Framework] = {f.name: f for f in (
    Framework("torch", "PyTorch", "torch", "torch", ("pytorch", "pt"), ".pth", {},
              (Mode("eager"), Mode("onnxruntime", "onnx", _ONNX, "onnx")), "onnxruntime",
              Training("new", "unbiased", ("eager",)),
              exports=(ExportFormat("onnx", "ONNX Runtime", ".onnx"), ExportFormat("torchscript", "torch.jit", ".pt")),
              launcher=Launcher("torchrun", "torchrun --nproc_per_node N", "RANK", "WORLD_SIZE"),
              submodules=(*_SUBMODULES, "deploy", "calibrate")),
    Framework("paddle", "PaddlePaddle", "paddle", "paddle", ("paddlepaddle", "pd"), ".pdparams",
              {"bn_mean": Rule("_mean"), "bn_var": Rule("_variance"), "linear_weight": Rule(transpose=True)},
              (Mode("dynamic"), Mode("to_static"), Mode("inference", "paddle-inference")), "inference",
              Training("old", "biased", ("dynamic",)),
              exports=(ExportFormat("paddle-inference", "Paddle Inference", ""),),
              launcher=Launcher("paddle.distributed.launch", "python -m paddle.distributed.launch --nproc_per_node N",
                                "PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM"),
              numpy_writer="write_pdparams", submodules=(*_SUBMODULES, "deploy")),
    Framework("mindspore", "MindSpore", "mindspore", "mindspore", ("ms",), ".ckpt",
              {"bn_weight": Rule("gamma"), "bn_bias": Rule("beta"), "bn_mean": Rule("moving_mean"),
               "bn_var": Rule("moving_variance")},
              (Mode("pynative"), Mode("graph"), Mode("mindir", "mindir")), "graph",
              Training("old", "unbiased", ("pynative",)),
              exports=(ExportFormat("mindir", "MindSpore GraphCell", ".mindir"),),
              launcher=Launcher("msrun", "msrun --worker_num N --local_worker_num N --join True", "RANK_ID",
                                "RANK_SIZE"),
              submodules=(*_SUBMODULES, "deploy", "setup")),
    Framework("jittor", "Jittor", "jittor", "jittor", ("jt",), ".pkl", {},
              (Mode("lazy"), Mode("eager")), "lazy", Training("new", "biased", ("lazy", "eager")),
              launcher=Launcher("mpirun", "mpirun -np N", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                                needs_program="mpicc", needs_hint="OpenMPI's mpicc (apt-get install libopenmpi-dev)"),
              numpy_writer="write_jittor_pkl", submodules=(*_SUBMODULES, "setup", "pooling")),
)}


def _aliases() -> dict[str, str]:
    return {a: f.name for f in FRAMEWORKS.values() for a in f.aliases}


def names(last: str = "or") -> str:
    """"torch, paddle, mindspore or jittor", for messages and help texts."""
    listed = list(FRAMEWORKS)
    return ", ".join(listed[:-1]) + f" {last} {listed[-1]}" if len(listed) > 1 else listed[0]


def modes_help() -> str:
    """Every execution mode, per framework, for the help of verify and eval."""
    def described(m: Mode) -> str:
        runtime = next((e.runtime for f in FRAMEWORKS.values() for e in f.exports if e.name == m.runtime), "")
        return f"{m.name} ({runtime})" if runtime and runtime.lower().replace(" ", "") != m.name else m.name

    return "Execution mode: " + "; ".join(f"{f.name} {', '.join(described(m) for m in f.execution)}"
                                          for f in FRAMEWORKS.values()) + "."


def resolve_framework(name: str) -> Framework:
    key = name.strip().lower()
    aliases = _aliases()
    key = aliases.get(key, key)
    if key in FRAMEWORKS:
        return FRAMEWORKS[key]
    close = difflib.get_close_matches(key, sorted(set(FRAMEWORKS) | set(aliases)), n=2, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(f"unknown framework {name!r}{hint} (available: {', '.join(FRAMEWORKS)})")


def export_formats() -> dict[str, tuple[ExportFormat, Framework]]:
    """Every deployment format and the framework that writes it."""
    return {e.name: (e, f) for f in FRAMEWORKS.values() for e in f.exports}


def get_backend(name: str) -> ModuleType:
    """The backend package of a framework; a clear error when the framework is missing."""
    fw = resolve_framework(name)
    if not fw.is_installed():
        raise FrameworkNotInstalledError(
            f"{fw.name} is not installed; install it with: pip install 'res2net-zoo[{fw.extra}]'"
        )
    return fw.backend()
