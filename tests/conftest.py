"""Shared test policy.

- A framework test whose framework is missing skips locally but fails in CI (CI=true), where
  every framework is installed: a skipped framework proves nothing.
- One framework per process: a session that ends with two frameworks imported fails. Run the
  suite with ``python -m tests``, which gives each framework its own session.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import sys

import pytest

# Jittor forks a compiler pool at import; forking a threaded process can deadlock the child.
# Test sessions, like zoo's workers, use spawned children instead.
multiprocessing.set_start_method("spawn", force=True)

from zoo.frameworks import FRAMEWORKS

FRAMEWORK_MODULES = {name: fw.import_name for name, fw in FRAMEWORKS.items()}
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _has_gpu() -> bool:
    import glob

    return bool(glob.glob("/dev/nvidia[0-9]*"))


def pytest_configure(config):
    # Hub sources are the default of several variants: no test may read or fill the machine's own
    # Hugging Face cache (a test that wants one sets HF_HOME for its commands).
    import tempfile

    global _HF_HOME
    _HF_HOME = os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="zoo-test-hf-")
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    for name, fw in FRAMEWORKS.items():  # one marker per framework of the record
        config.addinivalue_line("markers", f"{name}: needs {fw.title}")


def pytest_runtest_setup(item):
    # Hardware and data that this machine may lack skip cleanly, in CI too.
    if item.get_closest_marker("gpu") and not _has_gpu():
        pytest.skip("no CUDA device on this machine")
    if item.get_closest_marker("ascend") and not os.path.exists("/dev/davinci0"):
        pytest.skip("no Ascend device on this machine")
    if item.get_closest_marker("imagenet") and not os.environ.get("ZOO_IMAGENET"):
        pytest.skip("set ZOO_IMAGENET=/path/to/imagenet/val to run")
    for marker, module in FRAMEWORK_MODULES.items():
        if item.get_closest_marker(marker) and importlib.util.find_spec(module) is None:
            message = f"{module} is not installed (pip install -e '.[{marker},test]')"
            if IN_CI:
                pytest.fail(f"CI must run every framework's tests: {message}")
            pytest.skip(message)


_HF_HOME = None


def pytest_sessionfinish(session, exitstatus):
    if _HF_HOME:
        import shutil

        shutil.rmtree(_HF_HOME, ignore_errors=True)
    loaded = sorted(m for m in FRAMEWORK_MODULES.values() if m in sys.modules)
    if len(loaded) > 1:
        print(f"\nERROR: one test session imported several frameworks: {loaded}; "
              "run the suite with `python -m tests`", file=sys.stderr)
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    path = os.environ.get("ZOO_TEST_SUMMARY")
    if path:
        stats = terminalreporter.stats
        counts = {k: len(stats.get(k, [])) for k in ("passed", "failed", "skipped", "error")}
        with open(path, "w") as f:
            json.dump(counts, f)
