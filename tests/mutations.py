"""Ports with one deliberate bug, in a process tree of their own.

A ``sitecustomize`` module on PYTHONPATH runs the mutation in every process of the tree (the
``zoo`` command and its workers): framework-free code at start-up, or code that needs a framework
right after the module it changes has been imported, so a process that never imports that
framework stays free of it (one framework per process).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

_AFTER_IMPORT = '''
import importlib.abc, importlib.machinery, sys

class _AfterImport(importlib.abc.MetaPathFinder):
    def __init__(self, name, patch):
        self.name, self.patch = name, patch

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        run, patch = spec.loader.exec_module, self.patch

        def exec_module(module):
            run(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec

def _patch(module):
{body}

sys.meta_path.insert(0, _AfterImport({name!r}, _patch))
'''


def mutated(directory: Path, *, at_start: str = "", after_import: tuple[str, str] | None = None) -> dict[str, str]:
    """Environment additions for a process tree with the mutation: ``at_start`` runs at interpreter
    start; ``after_import = (module, code)`` runs ``code`` with ``module`` bound to that module
    right after it is first imported."""
    directory.mkdir(parents=True, exist_ok=True)
    text = textwrap.dedent(at_start)
    if after_import:
        name, code = after_import
        text += _AFTER_IMPORT.format(name=name, body=textwrap.indent(textwrap.dedent(code), "    "))
    (directory / "sitecustomize.py").write_text(text)
    # this checkout's zoo for the mutation, which runs before the working directory joins sys.path
    paths = (str(directory), str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", ""))
    return {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}
