"""Processes in which some frameworks cannot be imported, as on a machine that lacks them.

A ``sitecustomize`` module on PYTHONPATH marks the hidden frameworks as absent in
``sys.modules`` before anything runs: ``import torch`` then raises ImportError and
``importlib.util.find_spec("torch")`` answers None, in that process and in every process it
starts (they inherit PYTHONPATH).
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.frameworks import FRAMEWORKS as _RECORD

FRAMEWORKS = tuple(fw.import_name for fw in _RECORD.values())


def hiding(directory: Path, *hidden: str) -> dict[str, str]:
    """Environment additions that hide ``hidden`` from a process tree."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        "import sys\n"
        f"for _name in {sorted(hidden)!r}:\n"
        "    sys.modules[_name] = None  # import fails; find_spec() answers None\n")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(directory), os.environ.get("PYTHONPATH", "")) if p)}


def only(directory: Path, framework: str | None) -> dict[str, str]:
    """Environment additions under which ``framework`` (or none) is the only importable one."""
    keep = _RECORD[framework].import_name if framework else None
    return hiding(directory, *(f for f in FRAMEWORKS if f != keep))
