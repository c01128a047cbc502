"""The framework record is the one place that lists the frameworks; every backend keeps the
contract written in zoo/frameworks/__init__.py; no module of zoo imports one that imports it back.

Framework-free: the backends are read as source (ast), not imported.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.frameworks import FRAMEWORKS

from .mutations import mutated

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "zoo"

# submodule -> the names it defines, and the methods of the classes among them
CONTRACT = {
    "model": {"build_model": ()},
    "io": {"native_shapes": (), "load_state": ()},
    "runner": {"Runner": ("load", "__call__")},
    "train": {"create_optimizer": (), "Trainer": ("step", "predict", "named_state", "momentum_buffers", "load_state",
                                                 "set_lr")},
    "explain": {"activation_and_gradient": ()},
    "collective": {"Collective": ("sum", "gather", "close")},
    "deploy": {"export": (), "load": ()},
}


def _definitions(path: Path) -> dict[str, set[str]]:
    """Module-level names a file defines (functions, classes, assignments), with class methods."""
    out: dict[str, set[str]] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)} if isinstance(
                node, ast.ClassDef) else set()
        elif isinstance(node, ast.Assign):
            out.update({t.id: set() for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.ImportFrom):
            out.update({(a.asname or a.name): set() for a in node.names})
    return out


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_every_backend_keeps_the_contract(framework):
    fw = FRAMEWORKS[framework]
    package = ZOO / "frameworks" / framework
    needed = {"model", "io", "runner", "train", "explain"} | ({"collective"} if fw.launcher else set()) \
        | ({"deploy"} if fw.exports else set())
    assert needed <= set(fw.submodules), f"{framework}: the record omits {needed - set(fw.submodules)}"
    for sub in fw.submodules:
        assert (package / f"{sub}.py").is_file(), f"{framework}: the record names {sub}.py, which is missing"
    for sub in needed:
        defined = _definitions(package / f"{sub}.py")
        wanted = dict(CONTRACT[sub])
        if sub == "io" and not fw.numpy_writer:
            wanted["save_native"] = ()
        for name, methods in wanted.items():
            assert name in defined, f"zoo/frameworks/{framework}/{sub}.py lacks {name}"
            assert set(methods) <= defined[name], f"{framework}.{sub}.{name} lacks {set(methods) - defined[name]}"
    exported = _definitions(package / "__init__.py")
    assert {"build_model", "load_state"} <= set(exported)


def test_a_numpy_writer_named_by_a_record_exists():
    from zoo.converters import native_files

    for fw in FRAMEWORKS.values():
        if fw.numpy_writer:
            assert callable(getattr(native_files, fw.numpy_writer))


# --- a sixth framework, added in the record alone ----------------------------------------------

SIXTH = """
import zoo.frameworks as f

f.FRAMEWORKS["dummy"] = f.Framework(
    "dummy", "Dummy", "dummyfw", "dummy", ("dm",), ".dmy", {"bn_mean": f.Rule("avg")},
    (f.Mode("quick"), f.Mode("careful")), "quick", f.Training("new", "unbiased", ("quick",)),
    exports=(f.ExportFormat("dummy-format", "Dummy Runtime", ".dmyx"),),
    launcher=f.Launcher("dummyrun", "dummyrun -n N", "DUMMY_RANK", "DUMMY_SIZE"))
"""


@pytest.fixture(scope="module")
def sixth(tmp_path_factory):
    return {**mutated(tmp_path_factory.mktemp("sixth"), at_start=SIXTH), "COLUMNS": "400"}


def _run(args, env, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT, timeout=120,
                          **kwargs)


def test_a_sixth_record_reaches_every_commands_help(sixth):
    for command, expected in (("verify", ("dummy", "quick", "careful")), ("eval", ("dummy", "quick", "careful")),
                              ("convert", ("dummy", ".dmy")), ("export", ("dummy-format (from dummy)", "dummy")),
                              ("download", ("framework",))):
        text = _run([sys.executable, "-m", "zoo.cli", command, "--help"], sixth).stdout
        flat = " ".join(text.replace("│", " ").split())
        for word in expected:
            assert word in flat, (command, word)


def test_a_sixth_record_reaches_the_harness_and_the_framework_lists(sixth):
    probe = """
import json
from tests.__main__ import groups
from tests.isolation import FRAMEWORKS as hidden
from tests.conftest import FRAMEWORK_MODULES
from zoo.convert import EXTENSIONS, TARGETS
from zoo.converters.tables import TABLES
from zoo.frameworks import resolve_framework, export_formats
print(json.dumps({"groups": groups(), "hidden": list(hidden), "markers": FRAMEWORK_MODULES, "targets": list(TARGETS),
                  "extension": EXTENSIONS["dummy"], "table": "dummy" in TABLES, "alias": resolve_framework("dm").name,
                  "formats": list(export_formats())}))
"""
    out = _run([sys.executable, "-c", probe], sixth)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert ["dummy", "dummy"] in seen["groups"] and "not dummy" in seen["groups"][0][1]
    assert "dummyfw" in seen["hidden"] and seen["markers"]["dummy"] == "dummyfw"
    assert "dummy" in seen["targets"] and seen["extension"] == ".dmy" and seen["table"] and seen["alias"] == "dummy"
    assert "dummy-format" in seen["formats"]
    markers = _run([sys.executable, "-m", "pytest", "--markers", "-p", "no:cacheprovider"], sixth).stdout
    assert "@pytest.mark.dummy: needs Dummy" in markers


def test_a_sixth_record_reaches_preflight_and_launchers(sixth):
    # not installed: refused with the extra to install, before any work
    result = _run([sys.executable, "-m", "zoo.cli", "verify", "res2net50", "-f", "dummy"], sixth)
    assert result.returncode == 3 and "pip install 'res2net-zoo[dummy]'" in result.stderr
    probe = ("from zoo.preflight import check_mode\n"
             "print(check_mode('dummy', None), check_mode('dm', None, purpose='eval'))\n"
             "check_mode('dummy', 'fast')")
    result = _run([sys.executable, "-c", probe], sixth)
    assert result.stdout.split() == ["quick", "quick"]
    assert "UsageError: dummy has no mode 'fast'; its modes: quick, careful" in result.stderr
    launched = _run([sys.executable, "-c", "from zoo.distributed import detect; print(detect().framework)"],
                    {**sixth, "DUMMY_RANK": "1", "DUMMY_SIZE": "2"})
    assert launched.stdout.strip() == "dummy"


def test_the_readme_counts_what_a_new_framework_needs():
    text = (ROOT / "README.md").read_text()
    assert "a new package `zoo/frameworks/<name>/`, its record in `zoo/frameworks/__init__.py`" in text


# --- no import circles -------------------------------------------------------------------------


def _import_graph() -> dict[str, set[str]]:
    """module -> the zoo modules it imports, at its top or lazily inside functions (explicit
    imports; ``from X import name`` counts X.name where that is a module)."""
    modules = {}
    for path in ZOO.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if package else parts)] = (path, package)
    graph = {}
    for name, (path, package) in modules.items():
        base = name.split(".") if package else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                target = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else (node.module or "")
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    deps.add(sub if sub in modules else target)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_no_module_imports_one_that_imports_it_back():
    graph = _import_graph()
    assert "zoo.hub" in graph and graph["zoo.pretrained"] >= {"zoo.hub", "zoo.convert"}

    def reaches(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for dep in graph[todo.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    circles = sorted({tuple(sorted((m, d))) for m in graph for d in graph[m] if m in reaches(d)})
    assert not circles, f"import circles: {circles}"


def test_the_download_cache_knows_nothing_of_conversion_or_frameworks():
    graph = _import_graph()
    assert not graph["zoo.hub"] & {"zoo.convert", "zoo.pretrained", "zoo.frameworks", "zoo.worker"}
    assert "zoo.worker" not in graph["zoo.frameworks"]  # the record starts no worker: zoo.preflight does
