"""Hub sources through the real huggingface_hub client, against a loopback Hub (tests/hub_server.py):
its cache shared with timm, the full sha256 checked, revisions, offline use, and the bad cases."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo.frameworks import FRAMEWORKS
from zoo.spec import canonical_layout, get_spec

from .hub_server import HubServer

NAME = "res2net50_26w_4s"
REPO = "timm/res2net50_26w_4s.in1k"
COMMIT_A = "a" * 40
COMMIT_B = "b" * 39 + "c"


def hub_weights(seed: int) -> bytes:
    """A timm-style model.safetensors of NAME: official tensor names, random values."""
    from safetensors.numpy import save

    rng = np.random.default_rng(seed)
    tensors = {}
    for t in canonical_layout(get_spec(NAME)):
        value = rng.standard_normal(t.shape).astype(np.float32) * 0.05
        tensors[t.name] = np.abs(value) + 0.5 if t.name.endswith("running_var") else value
    tensors["bn1.num_batches_tracked"] = np.array(1000, dtype=np.int64)  # timm keeps it
    return save(tensors)


@pytest.fixture(scope="module")
def weights():
    return {"A": hub_weights(1), "B": hub_weights(2)}


@pytest.fixture
def hub(weights):
    with HubServer() as server:
        repo = server.repo(REPO)
        repo.add(COMMIT_A, {"model.safetensors": weights["A"]}, "v1.0")
        repo.add(COMMIT_B, {"model.safetensors": weights["B"], "README.md": b"timm"}, "main")
        server.repo("timm/empty").add("e" * 40, {"README.md": b"no weights"}, "main")
        yield server


def zoo(*args, tmp: Path, endpoint: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ZOO_"))}
    environment |= {"ZOO_HOME": str(tmp / "zoo"), "HF_HOME": str(tmp / "hf"), "HF_ENDPOINT": endpoint,
                    "HF_HUB_DISABLE_TELEMETRY": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True,
                          env=environment, timeout=600)


def hf_files(tmp: Path) -> list[str]:
    root = tmp / "hf" / "hub" / f"models--{REPO.replace('/', '--')}"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()) \
        if root.exists() else []


def zoo_files(tmp: Path) -> list[str]:
    root = tmp / "zoo"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.parent.name != "locks") if root.exists() else []


def same_tensors(path: Path, data: bytes, tmp: Path) -> bool:
    """Whether the file at ``path`` (any format) holds the model's tensors of ``data`` exactly."""
    from zoo.converters.read import read_canonical

    source = tmp / "expected.safetensors"
    source.write_bytes(data)
    spec = get_spec(NAME)
    expected, got = read_canonical(source, spec), read_canonical(path, spec)
    names = [t.name for t in canonical_layout(spec)]
    return all(np.array_equal(got[k], expected[k]) and got[k].dtype == expected[k].dtype for k in names)


def metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return f.metadata()


def test_hub_file_downloaded_once_then_served_from_the_cache_and_offline(hub, weights, tmp_path):
    sha_b = hashlib.sha256(weights["B"]).hexdigest()
    first = zoo("download", NAME, "--source", "timm", tmp=tmp_path, endpoint=hub.url)
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip().splitlines()[-1])
    # huggingface_hub's own layout, where timm looks: snapshot link -> blob named by the sha256
    assert path.parts[-3:] == ("snapshots", COMMIT_B, "model.safetensors") and path.resolve().name == sha_b
    assert [m for m, _ in hub.log] == ["HEAD", "GET"]
    again = zoo("download", NAME, "--source", "timm", tmp=tmp_path, endpoint=hub.url)
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == str(path)
    assert len(hub.log) == 2, "a cached file must be used with no request"
    # The Hub is the default source of this variant; the converted file records where it came from.
    out = tmp_path / "out.safetensors"
    converted = zoo("convert", NAME, "--to", "safetensors", "-o", str(out), tmp=tmp_path, endpoint=hub.url)
    assert converted.returncode == 0, converted.stderr
    meta = metadata(out)
    assert meta["zoo.revision"] == COMMIT_B and meta["zoo.sha256"] == sha_b
    assert meta["zoo.source"] == f"hf://{REPO}/model.safetensors" and meta["zoo.source_tag"] == "timm"
    assert f"at commit {COMMIT_B}" in converted.stderr
    assert len(hub.log) == 2
    hub.__exit__()
    for env in ({"ZOO_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "1"}, {}):  # the server is gone
        offline = zoo("convert", NAME, "--to", "paddle", tmp=tmp_path, endpoint=hub.url, env=env)
        assert offline.returncode == 0, offline.stderr
    # zoo keeps what it converted, never a copy of the Hub's blob
    kept = zoo_files(tmp_path)
    assert kept and all(p.startswith(f"native/") and f"/{sha_b}/{COMMIT_B}/" in p for p in kept), kept


def test_a_blob_that_does_not_hash_to_its_digest_is_refused_and_deleted(hub, weights, tmp_path):
    sha_b = hashlib.sha256(weights["B"]).hexdigest()
    hub.tamper.add(sha_b)  # the server sends other bytes than its LFS metadata names
    bad = zoo("download", NAME, "--source", "timm", tmp=tmp_path, endpoint=hub.url)
    assert bad.returncode == 7 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert f"checksum mismatch for hf://{REPO}/model.safetensors" in bad.stderr and sha_b in bad.stderr
    assert not any(p.startswith(("blobs/", "snapshots/")) for p in hf_files(tmp_path)), hf_files(tmp_path)
    assert zoo_files(tmp_path) == []
    hub.tamper.clear()
    good = zoo("download", NAME, "--source", "timm", tmp=tmp_path, endpoint=hub.url)
    assert good.returncode == 0, good.stderr
    # A cache corrupted on disk (a bad copy, a disk error) is found before use, and deleted.
    blob = Path(good.stdout.strip().splitlines()[-1]).resolve()
    blob.write_bytes(b"\0" + weights["B"][1:])
    again = zoo("convert", NAME, "--source", "timm", "--to", "jittor", tmp=tmp_path, endpoint=hub.url)
    assert again.returncode == 7 and "the cached copy was deleted" in again.stderr
    assert not blob.exists() and zoo_files(tmp_path) == []
    assert zoo("download", NAME, "--source", "timm", tmp=tmp_path, endpoint=hub.url).returncode == 0


def test_a_revision_pins_the_commit_and_the_tensors(hub, weights, tmp_path):
    sha_a = hashlib.sha256(weights["A"]).hexdigest()
    out = tmp_path / "v1.safetensors"
    pinned = zoo("convert", NAME, "--source", "timm", "--revision", "v1.0", "--to", "safetensors", "-o", str(out),
                 tmp=tmp_path, endpoint=hub.url)
    assert pinned.returncode == 0, pinned.stderr
    assert metadata(out)["zoo.revision"] == COMMIT_A and metadata(out)["zoo.sha256"] == sha_a
    assert same_tensors(out, weights["A"], tmp_path)
    # The same commit by its hash: served from the cache, the server stopped.
    hub.__exit__()
    by_commit = zoo("download", NAME, "--source", "timm", "--revision", COMMIT_A, tmp=tmp_path, endpoint=hub.url)
    assert by_commit.returncode == 0, by_commit.stderr
    assert Path(by_commit.stdout.strip().splitlines()[-1]).resolve().name == sha_a


@pytest.mark.parametrize("case", ["unknown revision", "no model.safetensors", "unreachable endpoint",
                                  "revision of a plain URL"])
def test_bad_hub_input_is_one_line_and_leaves_both_caches_clean(case, hub, tmp_path):
    args, endpoint, code, words = {
        "unknown revision": (["--source", "timm", "--revision", "no-such-tag"], hub.url, 2,
                             f"{REPO} has no revision 'no-such-tag'"),
        "no model.safetensors": (["--source", "timm"], hub.url, 7, "timm/empty has no file model.safetensors"),
        "unreachable endpoint": (["--source", "timm"], "http://127.0.0.1:9", 7, "cannot reach http://127.0.0.1:9"),
        "revision of a plain URL": (["--source", "official", "--revision", "main"], hub.url, 2,
                                    "--revision applies to Hugging Face Hub sources"),
    }[case]
    env = {}
    if case == "no model.safetensors":  # a registry entry pointing at a repository without the file
        env = {"PYTHONPATH": _retarget(tmp_path, "timm/empty")}
    result = zoo("convert", NAME, "--to", "paddle", *args, tmp=tmp_path, endpoint=endpoint, env=env)
    assert result.returncode == code, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr, result.stderr
    assert not any(p.startswith(("blobs/", "snapshots/")) or p.endswith(".incomplete")
                   for p in hf_files(tmp_path)), hf_files(tmp_path)
    assert zoo_files(tmp_path) == []


def _retarget(tmp: Path, repo: str) -> str:
    """A sitecustomize that points the variant's timm source at ``repo``, as a registry edit would."""
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import dataclasses\n"
        "from zoo.spec import registry\n"
        f"v = registry.VARIANTS[{NAME!r}]\n"
        f"sources = tuple(dataclasses.replace(s, hf_hub_id={repo!r}) if s.tag == 'timm' else s for s in v.sources)\n"
        f"registry.VARIANTS[{NAME!r}] = dataclasses.replace(v, sources=sources)\n")
    return os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture(scope="module")
def timm_cache(weights, tmp_path_factory):
    """A Hugging Face cache as timm leaves it: filled by huggingface_hub itself, then the Hub gone."""
    home = tmp_path_factory.mktemp("timm-user")
    with HubServer() as server:
        server.repo(REPO).add(COMMIT_B, {"model.safetensors": weights["B"]}, "main")
        code = ("import huggingface_hub as h; "
                f"print(h.hf_hub_download({REPO!r}, 'model.safetensors'))")
        env = {**os.environ, "HF_HOME": str(home / "hf"), "HF_ENDPOINT": server.url}
        path = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return home, Path(path.stdout.strip())


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_convert_from_a_cache_timm_filled_in_every_framework(framework, timm_cache, weights, tmp_path):
    home, snapshot = timm_cache
    (tmp_path / "hf").symlink_to(home / "hf")
    result = zoo("convert", NAME, "--source", "timm", "--to", framework, tmp=tmp_path, endpoint="http://127.0.0.1:9")
    assert result.returncode == 0, result.stderr
    native = Path(result.stdout.strip().splitlines()[-1])
    assert native.suffix == FRAMEWORKS[framework].extension and COMMIT_B in native.parts
    assert same_tensors(native, weights["B"], tmp_path), framework
    # the timm user's file is used where it lies: zoo's cache holds the conversion alone
    assert snapshot.resolve().is_file() and all(p.startswith("native/") for p in zoo_files(tmp_path))
