"""Shared fixtures. A framework test whose framework is missing skips locally but fails in CI
(CI=true), where every framework is installed: a skipped framework proves nothing."""

from __future__ import annotations

import importlib.util
import os

import pytest

FRAMEWORK_MARKERS = {"torch": "torch", "paddle": "paddle"}
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_runtest_setup(item):
    for marker, module in FRAMEWORK_MARKERS.items():
        if item.get_closest_marker(marker) and importlib.util.find_spec(module) is None:
            message = f"{module} is not installed (pip install -e '.[{marker},test]')"
            if IN_CI:
                pytest.fail(f"CI must run every framework's tests: {message}")
            pytest.skip(message)
