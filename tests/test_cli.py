"""The zoo command as a user runs it, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from zoo.spec import gflops, list_variants, param_count

FRAMEWORK_MODULES = ("torch", "mindspore", "paddle", "jittor", "tensorflow")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_list_json_has_every_variant_with_published_numbers():
    result = run("list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {v.name for v in list_variants()}
    for v in list_variants():
        row = rows[v.name]
        assert row["params"] == param_count(v.spec) and isinstance(row["params"], int)
        assert abs(row["gflops"] - gflops(v.spec)) < 1e-3
        assert row["aliases"] == list(v.aliases)
        assert row["top1"] == (v.published.top1 if v.published else None)
    assert rows["res2net101_v1b_26w_4s"]["top1"] == 81.23
    assert rows["se_res2net50_26w_4s"]["weights"] == []


def test_list_table():
    result = run("list")
    assert result.returncode == 0
    line = next(l for l in result.stdout.splitlines() if l.startswith("res2net50_v1b_26w_4s"))
    assert "25.72M" in line and "80.27" in line and "res2net50d" in line


def test_info_by_alias():
    result = run("info", "res2net101_v1b")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("res2net101_v1b_26w_4s (Res2Net-v1b-101)")
    assert "stem deep, shortcut avgpool_conv" in out
    assert "[4] layer4 2048ch /32" in out
    assert "res2net101_v1b_26w_4s-0812c246.pth" in out
    info = json.loads(run("info", "dla60_res2net", "--json").stdout)
    assert info["name"] == "res2net_dla60"
    assert info["params_official_checkpoint"] - info["params"] == 297_472
    assert info["preprocessing"]["resize_size"] == 256


@pytest.mark.parametrize("args", [("info", "res2net5"), ("info", "resnet50")])
def test_unknown_name_is_one_line_and_exit_2(args):
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown model")
    assert "Traceback" not in result.stderr


def test_debug_env_shows_traceback():
    result = run("info", "nope", env={"ZOO_DEBUG": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.parametrize("code", [
    "import zoo, zoo.spec, zoo.converters, zoo.frameworks, zoo.cli",
    "import sys; sys.argv = ['zoo', 'list']; import zoo.cli; zoo.cli.main()",
    "import sys; sys.argv = ['zoo', '--help']; import zoo.cli; zoo.cli.main()",
])
def test_no_framework_is_imported(code):
    probe = (f"import sys\ntry:\n    exec({code!r})\nexcept SystemExit:\n    pass\n"
             f"print(sorted(m for m in {FRAMEWORK_MODULES!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_unknown_framework_suggests():
    result = subprocess.run(
        [sys.executable, "-c", "import zoo\nzoo.create_model('res2net50', framework='pytroch')"],
        capture_output=True, text=True, timeout=60)
    assert "did you mean pytorch" in result.stderr or "did you mean torch" in result.stderr
