"""Downloads through a loopback HTTP server started here: verification, resume, locking,
offline mode, and the native file of every framework matching the torch logits."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo.frameworks import FRAMEWORKS

from .loopback import LoopbackServer
from .reference import PARITY_LIMIT, calibrated, images, relative_diff, torch_logits

NAME = "res2net50_26w_4s"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A realistic official-style checkpoint, named as the release names its files."""
    d = tmp_path_factory.mktemp("release")
    state = calibrated(d, [NAME], 64, pth=[NAME])[NAME]
    pth = state.with_suffix(".pth")
    digest = hashlib.sha256(pth.read_bytes()).hexdigest()
    served = d / "served"
    served.mkdir()
    official = served / f"{NAME}-{digest[:8]}.pth"
    os.link(pth, official)
    x = images(d / "x.npy", 64)
    reference = torch_logits(d, {NAME: (NAME, pth, x)})[NAME]
    return {"file": official, "sha256": digest, "input": x, "reference": reference, "dir": d}


@pytest.fixture
def server(release):
    with LoopbackServer(release["file"].parent) as srv:
        yield srv


def zoo_cli(*args, home: Path, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    environment = {**os.environ, "ZOO_HOME": str(home), **(env or {})}
    environment.pop("ZOO_OFFLINE", None) if "ZOO_OFFLINE" not in (env or {}) else None
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True,
                          env=environment, timeout=900, **kwargs)


def manifest(tmp_path: Path, url: str, sha256: str = "") -> Path:
    path = tmp_path / "sources.json"
    entry = {"url": url} | ({"sha256": sha256} if sha256 else {})
    path.write_text(json.dumps({NAME: entry}))
    return path


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.parent.name != "locks")


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_download_converts_once_and_matches_torch(framework, release, server, tmp_path):
    home = tmp_path / "home"
    sources = manifest(tmp_path, f"{server.url}/{release['file'].name}", release["sha256"])
    first = zoo_cli("download", "res2net50", "--framework", framework, "--sources", str(sources), home=home)
    assert first.returncode == 0, first.stderr
    native = Path(first.stdout.strip().splitlines()[-1])
    assert native.is_file() and native.parent.name == release["sha256"]
    # Cached: no second transfer, no second conversion, same path.
    mtime = native.stat().st_mtime_ns
    again = zoo_cli("download", NAME, "--framework", framework, "--sources", str(sources), home=home)
    assert again.stdout.strip().splitlines()[-1] == str(native)
    assert native.stat().st_mtime_ns == mtime
    assert len(server.behaviour.log) == 1
    out = tmp_path / "logits.npy"
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"model": NAME, "weights": str(native), "input": str(release["input"]),
                                 "output": str(out)}]))
    from zoo.worker import run_worker

    run_worker(framework, "logits", str(jobs))
    assert relative_diff(np.load(out), release["reference"]) <= PARITY_LIMIT


def test_checksum_mismatch_leaves_nothing(release, server, tmp_path):
    home = tmp_path / "home"
    sources = manifest(tmp_path, f"{server.url}/{release['file'].name}", "0" * 64)
    result = zoo_cli("download", NAME, "--sources", str(sources), home=home)
    assert result.returncode == 7
    assert "checksum mismatch" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert _files(home) == []


def test_official_name_prefix_is_checked(release, server, tmp_path):
    home = tmp_path / "home"
    good = zoo_cli("download", NAME, "--sources", str(manifest(tmp_path, f"{server.url}/{release['file'].name}")),
                   home=home)
    assert good.returncode == 0, good.stderr
    assert hashlib.sha256(Path(good.stdout.strip()).read_bytes()).hexdigest() == release["sha256"]
    wrong = release["file"].parent / f"{NAME}-deadbeef.pth"
    os.link(release["file"], wrong)
    try:
        bad = zoo_cli("download", NAME, "--sources", str(manifest(tmp_path, f"{server.url}/{wrong.name}")),
                      home=tmp_path / "other")
    finally:
        wrong.unlink()
    assert bad.returncode == 7 and "expected sha256 starting deadbeef" in bad.stderr
    assert _files(tmp_path / "other") == []


def test_dropped_connection_is_resumed(release, server, tmp_path):
    home = tmp_path / "home"
    server.behaviour.drop_after = release["file"].stat().st_size // 3
    sources = manifest(tmp_path, f"{server.url}/{release['file'].name}", release["sha256"])
    result = zoo_cli("download", NAME, "--sources", str(sources), home=home)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).read_bytes() == release["file"].read_bytes()
    first, second = server.behaviour.log
    assert first["range"] is None and second["range"].startswith("bytes=")
    # The second request resumes where the client's partial file ended, and completes the file
    # (bytes the server wrote before the drop may have been lost in flight).
    resumed_at = int(second["range"][len("bytes="):].split("-")[0])
    assert 0 < resumed_at <= first["sent"]
    assert resumed_at + second["sent"] == release["file"].stat().st_size


def test_two_processes_share_one_transfer(release, server, tmp_path):
    home = tmp_path / "home"
    server.behaviour.delay_per_chunk = 0.002  # ~3 s for the file: both processes overlap
    sources = manifest(tmp_path, f"{server.url}/{release['file'].name}", release["sha256"])
    env = {**os.environ, "ZOO_HOME": str(home)}
    cmd = [sys.executable, "-m", "zoo.cli", "download", NAME, "--sources", str(sources)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert outputs[0][0].strip() == outputs[1][0].strip()
    assert len(server.behaviour.log) == 1


def test_offline_mode(release, server, tmp_path):
    home = tmp_path / "home"
    sources = manifest(tmp_path, f"{server.url}/{release['file'].name}", release["sha256"])
    missing = zoo_cli("download", NAME, "--sources", str(sources), home=home, env={"ZOO_OFFLINE": "1"})
    assert missing.returncode == 7
    assert "ZOO_OFFLINE=1" in missing.stderr and "not in the cache" in missing.stderr
    assert server.behaviour.log == []
    assert zoo_cli("download", NAME, "--sources", str(sources), home=home).returncode == 0
    cached = zoo_cli("download", NAME, "--sources", str(sources), home=home, env={"ZOO_OFFLINE": "1"})
    assert cached.returncode == 0 and Path(cached.stdout.strip()).is_file()
    assert len(server.behaviour.log) == 1


def test_no_weights_and_bad_manifest(tmp_path):
    result = zoo_cli("download", "se_res2net50_26w_4s", home=tmp_path)
    assert result.returncode == 2 and "no released weights" in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"res2net50": {"sha256": "abc"}}')
    result = zoo_cli("download", NAME, "--sources", str(bad), home=tmp_path)
    assert result.returncode == 2 and "needs a \"url\"" in result.stderr


def test_registry_sources_point_at_the_real_release():
    from zoo.hub import resolve_source

    src = resolve_source("res2net101_v1b")
    assert src.url == "https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/res2net101_v1b_26w_4s-0812c246.pth"
    assert src.sha256_prefix == "0812c246"
    hub = resolve_source("res2net50d", "timm", revision="v1")
    assert (hub.hf_repo, hub.hf_filename, hub.revision) == ("timm/res2net50d.in1k", "model.safetensors", "v1")
    # The Hub copy of the release file is the default where timm's copy is that file; for v1b it is
    # timm's own upload, so the release stays the default.
    assert resolve_source("res2net50_26w_4s").tag == "timm" and resolve_source("res2net50d").tag == "official"


def test_peer_weights_are_registered_sources_with_their_own_top1(tmp_path):
    from zoo.hub import resolve_source
    from zoo.spec import get_variant

    sources = {s.tag: s for s in get_variant("res2net101_v1b").sources}
    assert list(sources) == ["official", "timm", "mindcv"]
    assert sources["mindcv"].top1 == 81.26 and sources["mindcv"].sha256_prefix == "7e6db001"
    assert sources["mindcv"].layout == "mindcv" and sources["mindcv"].framework == "mindspore"
    ssld = resolve_source("Res2Net50_vd_26w_4s", "paddleclas-ssld")
    assert ssld.url.endswith("/dygraph/Res2Net50_vd_26w_4s_ssld_pretrained.pdparams")
    assert resolve_source("res2net50_vd_26w_4s").tag == "paddleclas"  # a peer's own graph: its weights
    assert resolve_source("res2net101_v1d_26w_4s").sha256_prefix == "f0a600f9"
    result = zoo_cli("download", "res2net50", "--source", "paddleclas", home=tmp_path)
    assert result.returncode == 2 and "available: official, timm, mindcv, jittor" in result.stderr
    listing = json.loads(subprocess.run([sys.executable, "-m", "zoo.cli", "list", "--json"], capture_output=True,
                                        text=True, check=True).stdout)
    row = next(r for r in listing if r["name"] == "res2net50_vd_26w_4s")
    assert row["weights"] == ["paddleclas", "paddleclas-ssld"] and row["weights_top1"]["paddleclas-ssld"] == 83.1
    assert row["graph"] == "paddleclas"


def test_create_model_pretrained_downloads_converts_and_loads(release, server, tmp_path):
    sources = manifest(tmp_path, f"{server.url}/{release['file'].name}", release["sha256"])
    out = tmp_path / "logits.npy"
    code = ("import numpy as np, torch, zoo\n"
            f"m = zoo.create_model('res2net50', framework='torch', pretrained=True).eval()\n"
            f"x = torch.from_numpy(np.load({str(release['input'])!r}))\n"
            f"np.save({str(out)!r}, m(x).detach().numpy())\n")
    env = {**os.environ, "ZOO_HOME": str(tmp_path / "home"), "ZOO_SOURCES": str(sources)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert relative_diff(np.load(out), release["reference"]) <= PARITY_LIMIT
    assert len(server.behaviour.log) == 1
