"""Run the test suite with one framework per process: ``python -m tests [pytest args]``.

The frameworks' native libraries collide inside one process, so the suite runs as one pytest
session per framework group: the framework-free and PyTorch tests, then one session per other
framework (whose tests get their PyTorch references from worker processes). Prints the combined
count as the closing line and exits non-zero if any session failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from zoo.frameworks import FRAMEWORKS, REFERENCE


def groups() -> list[tuple[str, str]]:
    """(session name, pytest marker expression): the framework-free tests with the reference
    framework's, then one session per other framework of the record."""
    others = [fw for fw in FRAMEWORKS if fw != REFERENCE]
    return [(f"core+{REFERENCE}", " and ".join(f"not {fw}" for fw in others))] + [(fw, fw) for fw in others]


def main(argv: list[str]) -> int:
    totals = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    failed_groups = []
    for name, marker in groups():
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            summary_path = f.name
        start = time.time()
        print(f"\n=== tests: {name} (-m \"{marker}\") ===", flush=True)
        env = {**os.environ, "ZOO_TEST_SUMMARY": summary_path}
        code = subprocess.call([sys.executable, "-m", "pytest", "-m", marker, *argv], env=env)
        try:
            with open(summary_path) as f:
                counts = json.load(f)
        except (OSError, ValueError):
            counts = {}
        finally:
            os.unlink(summary_path)
        for key in totals:
            totals[key] += counts.get(key, 0)
        print(f"=== {name}: exit {code} in {time.time() - start:.0f} s ===", flush=True)
        if code != 0:
            failed_groups.append(name)
    print()
    if failed_groups:
        print(f"failed sessions: {', '.join(failed_groups)}")
    line = f"{totals['passed']} passed, {totals['failed'] + totals['error']} failed"
    print(line + (f", {totals['skipped']} skipped" if totals["skipped"] else ""))
    return 1 if failed_groups else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
