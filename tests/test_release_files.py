"""The files the weights path exists for: official release files in torch's legacy format,
MindSpore checkpoints, fetched by model name from mirrors (HTTP on loopback, file://, paths),
converted on machines where only the target framework can be imported.

Every legacy file here is written by torch itself (``_use_new_zipfile_serialization=False``),
every ``.ckpt`` by MindSpore's ``save_checkpoint``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .isolation import only
from .loopback import LoopbackServer
from .reference import PARITY_LIMIT, images, relative_diff, torch_logits

# The variant each framework's one-framework test fetches: the command users type first is
# `zoo convert res2net101_v1b --to mindspore`.
TARGETS = {"torch": "res2net50_26w_4s", "paddle": "res2net50_26w_4s", "mindspore": "res2net101_v1b_26w_4s",
           "jittor": "res2net50_v1b_26w_4s"}
OFFICIAL_FILES = {"res2net50_26w_4s": "res2net50_26w_4s-{}.pth", "res2net101_v1b_26w_4s": "res2net101_v1b_26w_4s-{}.pth",
                  "res2net50_v1b_26w_4s": "res2net50_v1b_26w_4s-{}.pth"}

# A forward pass in each framework, from a model zoo.create_model built (x: NCHW float32 numpy).
FORWARD = {
    "torch": "import torch\nwith torch.no_grad():\n    y = model.eval()(torch.from_numpy(x)).numpy()\n",
    "paddle": "import paddle\nmodel.eval()\ny = model(paddle.to_tensor(x)).numpy()\n",
    "mindspore": "import mindspore as ms\nmodel.set_train(False)\ny = model(ms.Tensor(x)).asnumpy()\n",
    "jittor": "import jittor as jt\nmodel.eval()\ny = model(jt.array(x)).numpy()\n",
}


def zoo_cli(*args, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=cwd, timeout=900)


def one_error_line(result, code: int, *needles: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_RELEASES: dict[str, dict] = {}


def release(tmp_path_factory, name: str) -> dict:
    """A realistic checkpoint of ``name`` written as the official release was (torch's legacy
    format, official file name with its sha256 prefix), its canonical weights and torch logits."""
    if name not in _RELEASES:
        d = tmp_path_factory.mktemp(f"release-{name}")
        canonical = d / f"{name}.safetensors"
        legacy = d / f"{name}-legacy.pth"
        jobs = d / "jobs.json"
        jobs.write_text(json.dumps([{"model": name, "out": str(canonical), "size": 64, "legacy_pth": str(legacy)}]))
        from zoo.worker import run_worker

        run_worker("torch", "calibrate", str(jobs))
        digest = sha256(legacy)
        served = d / "served"
        served.mkdir()
        official = served / OFFICIAL_FILES[name].format(digest[:8])
        os.replace(legacy, official)
        x = images(d / "x.npy", 64)
        reference = torch_logits(d, {name: (name, canonical, x)})[name]
        _RELEASES[name] = {"file": official, "sha256": digest, "canonical": canonical, "input": x,
                           "reference": reference}
    return _RELEASES[name]


def manifest(path: Path, name: str, url: str, sha: str = "") -> Path:
    path.write_text(json.dumps({name: {"url": url} | ({"sha256": sha} if sha else {})}))
    return path


# --- the only-the-target-framework path, end to end --------------------------------------------


@pytest.mark.parametrize("framework", [pytest.param(fw, marks=getattr(pytest.mark, fw)) for fw in TARGETS])
def test_convert_by_name_with_only_the_target_framework(framework, tmp_path_factory, tmp_path):
    name = TARGETS[framework]
    rel = release(tmp_path_factory, name)
    isolated = only(tmp_path / "site", framework)
    home = tmp_path / "home"
    with LoopbackServer(rel["file"].parent) as server:
        sources = manifest(tmp_path / "sources.json", name, f"{server.url}/{rel['file'].name}")
        env = {**isolated, "ZOO_HOME": str(home), "ZOO_SOURCES": str(sources)}
        alias = {"res2net101_v1b_26w_4s": "res2net101_v1b", "res2net50_v1b_26w_4s": "res2net50d"}.get(name, name)
        first = zoo_cli("convert", alias, "--to", framework, env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        native = Path(first.stdout.strip().splitlines()[-1])
        assert native.is_file() and native.parent.name == rel["sha256"]  # keyed by the download's checksum
        assert len(server.behaviour.log) == 1
        # Offline, from the cache: the same file, no transfer, no new conversion.
        mtime = native.stat().st_mtime_ns
        again = zoo_cli("convert", alias, "--to", framework, env={**env, "ZOO_OFFLINE": "1"}, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip().splitlines()[-1] == str(native) and native.stat().st_mtime_ns == mtime
        copy = zoo_cli("convert", alias, "--to", framework, "-o", tmp_path / "mine", env={**env, "ZOO_OFFLINE": "1"},
                       cwd=tmp_path)
        assert copy.returncode == 0 and (tmp_path / "mine").read_bytes() == native.read_bytes()
        assert len(server.behaviour.log) == 1
    # The pretrained model of the same framework-only process reproduces the torch logits.
    out = tmp_path / "logits.npy"
    code = (f"import numpy as np, zoo\nx = np.load({str(rel['input'])!r})\n"
            f"model = zoo.create_model({alias!r}, framework={framework!r}, pretrained=True)\n"
            + FORWARD[framework] + f"np.save({str(out)!r}, y)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                            env={**os.environ, **env, "ZOO_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert relative_diff(np.load(out), rel["reference"]) <= PARITY_LIMIT


@pytest.mark.paddle
@pytest.mark.mindspore
def test_mindspore_checkpoint_converts_without_mindspore(tmp_path_factory, tmp_path):
    """A .ckpt written by MindSpore's save_checkpoint, converted on a machine without MindSpore."""
    name = "res2net50_26w_4s"
    rel = release(tmp_path_factory, name)
    ckpt = tmp_path / "res2net50.ckpt"
    written = zoo_cli("convert", rel["canonical"], "--to", "mindspore", "-o", ckpt, env=only(tmp_path / "ms", "mindspore"))
    assert written.returncode == 0, written.stderr
    no_mindspore = only(tmp_path / "pd", "paddle")
    to_paddle = zoo_cli("convert", ckpt, "--to", "paddle", "-o", tmp_path / "r.pdparams", env=no_mindspore)
    assert to_paddle.returncode == 0, to_paddle.stderr
    back = zoo_cli("convert", ckpt, "--to", "safetensors", "-o", tmp_path / "back.safetensors", env=only(tmp_path / "none", None))
    assert back.returncode == 0, back.stderr
    from safetensors.numpy import load_file

    original, returned = load_file(str(rel["canonical"])), load_file(str(tmp_path / "back.safetensors"))
    assert original.keys() == returned.keys() and all(np.array_equal(original[k], returned[k]) for k in original)
    jobs = tmp_path / "jobs.json"
    out = tmp_path / "paddle.npy"
    jobs.write_text(json.dumps([{"model": name, "weights": str(tmp_path / "r.pdparams"), "input": str(rel["input"]),
                                 "output": str(out)}]))
    from zoo.worker import run_worker

    run_worker("paddle", "logits", str(jobs))
    assert relative_diff(np.load(out), rel["reference"]) <= PARITY_LIMIT


# --- mirrors: file://, paths, schemes that cannot be fetched ------------------------------------


def test_file_url_and_relative_path_mirrors_are_checked_and_cached(tmp_path_factory, tmp_path):
    rel = release(tmp_path_factory, "res2net50_26w_4s")
    env = {**only(tmp_path / "site", None), "ZOO_HOME": str(tmp_path / "home")}
    by_url = manifest(tmp_path / "url.json", "res2net50", rel["file"].as_uri(), rel["sha256"])
    result = zoo_cli("download", "res2net50", "--sources", by_url, env=env)
    assert result.returncode == 0, result.stderr
    blob = Path(result.stdout.strip())
    assert blob.read_bytes() == rel["file"].read_bytes() and blob.name == rel["sha256"]
    # A path relative to the manifest; ZOO_OFFLINE=1 still reads local mirrors.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    os.link(rel["file"], mirror / rel["file"].name)
    relative = manifest(mirror / "sources.json", "res2net50", rel["file"].name)
    offline = zoo_cli("download", "res2net50", "--sources", relative, env={**env, "ZOO_HOME": str(tmp_path / "h2"),
                                                                           "ZOO_OFFLINE": "1"}, cwd=tmp_path)
    assert offline.returncode == 0, offline.stderr
    assert Path(offline.stdout.strip()).read_bytes() == rel["file"].read_bytes()
    # The official name's sha256 prefix is checked for mirrors too.
    wrong = mirror / "res2net50_26w_4s-deadbeef.pth"
    os.link(rel["file"], wrong)
    bad = zoo_cli("download", "res2net50", "--sources", manifest(tmp_path / "w.json", "res2net50", str(wrong)),
                  env={**env, "ZOO_HOME": str(tmp_path / "h3")})
    one_error_line(bad, 7, "expected sha256 starting deadbeef")
    assert not any(p.is_file() for p in (tmp_path / "h3").rglob("*") if p.parent.name != "locks")


@pytest.mark.parametrize("url,needle", [
    ("ftp://mirror.example/res2net50.pth", "ftp:// is not supported"),
    ("s3://bucket/res2net50.pth", "s3:// is not supported"),
    ("http://[::1/res2net50.pth", "not a valid URL"),
    ("file://otherhost/mnt/res2net50.pth", "not host 'otherhost'"),
    ("file:///no/such/mirror/res2net50.pth", "does not exist"),
])
def test_mirror_urls_that_cannot_be_fetched(url, needle, tmp_path):
    env = {"ZOO_HOME": str(tmp_path / "home")}
    result = zoo_cli("download", "res2net50", "--sources", manifest(tmp_path / "s.json", "res2net50", url), env=env)
    one_error_line(result, 7, needle)
    converted = zoo_cli("convert", "res2net50", "--to", "safetensors", "--sources", tmp_path / "s.json", env=env)
    one_error_line(converted, 7, needle)


def test_convert_by_name_offline_and_not_cached_says_what_to_do(tmp_path):
    sources = manifest(tmp_path / "s.json", "res2net50", "http://127.0.0.1:9/res2net50_26w_4s-06e79181.pth")
    env = {"ZOO_HOME": str(tmp_path / "home"), "ZOO_OFFLINE": "1"}
    download = one_error_line(zoo_cli("download", "res2net50", "--sources", sources, env=env), 7)
    convert = one_error_line(zoo_cli("convert", "res2net50", "--to", "safetensors", "--sources", sources, env=env), 7)
    assert download == convert and "ZOO_OFFLINE=1" in convert and "not in the cache" in convert


def test_an_existing_file_wins_over_a_model_name(tmp_path_factory, tmp_path):
    rel = release(tmp_path_factory, "res2net50_26w_4s")
    os.link(rel["file"], tmp_path / "res2net50")
    env = {**only(tmp_path / "site", None), "ZOO_HOME": str(tmp_path / "home")}
    result = zoo_cli("convert", "res2net50", "--to", "safetensors", "-o", "out.safetensors", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "converting the file res2net50" in result.stderr and "also a model name" in result.stderr
    assert not (tmp_path / "home").exists()  # nothing was fetched
    from safetensors.numpy import load_file

    ours, original = load_file(str(tmp_path / "out.safetensors")), load_file(str(rel["canonical"]))
    assert ours.keys() == original.keys() and all(np.array_equal(ours[k], original[k]) for k in ours)
    missing = zoo_cli("convert", "res2net5O", "--to", "safetensors", env=env, cwd=tmp_path)
    one_error_line(missing, 4, "no such file")


def test_legacy_release_file_converts_with_no_framework_at_all(tmp_path_factory, tmp_path):
    rel = release(tmp_path_factory, "res2net50_26w_4s")
    env = only(tmp_path / "site", None)
    result = zoo_cli("convert", rel["file"], "--to", "safetensors", "-o", tmp_path / "out.safetensors", env=env)
    assert result.returncode == 0, result.stderr
    from safetensors.numpy import load_file

    ours, original = load_file(str(tmp_path / "out.safetensors")), load_file(str(rel["canonical"]))
    assert ours.keys() == original.keys() and all(np.array_equal(ours[k], original[k]) for k in ours)
    # Cut anywhere, the legacy file is refused with one line and nothing written.
    data = rel["file"].read_bytes()
    for cut in (30, 4000, len(data) // 2, len(data) - 3):
        broken = tmp_path / "cut.pth"
        broken.write_bytes(data[:cut])
        out = tmp_path / "cut.safetensors"
        one_error_line(zoo_cli("convert", broken, "--to", "safetensors", "-o", out, env=env), 4)
        assert not out.exists()


_EVIL_LEGACY = """
import os, sys, torch
class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
torch.save({"conv1.weight": torch.zeros(2), "payload": RunsCode()}, sys.argv[1], _use_new_zipfile_serialization=False)
"""


@pytest.mark.parametrize("hide_torch", [False, True], ids=["torch-installed", "no-torch"])
def test_hostile_legacy_pickle_is_refused_without_running(hide_torch, tmp_path):
    marker, evil = tmp_path / "ran", tmp_path / "evil.pth"
    writer = subprocess.run([sys.executable, "-c", _EVIL_LEGACY, str(evil), str(marker)], capture_output=True,
                            text=True, env={**os.environ, **only(tmp_path / "t", "torch")}, timeout=300)
    assert writer.returncode == 0, writer.stderr
    assert evil.read_bytes().startswith(b"\x80\x02\x8a\x0a") and not marker.exists()
    env = only(tmp_path / "site", None if hide_torch else "torch")
    out = tmp_path / "x.safetensors"
    one_error_line(zoo_cli("convert", evil, "--to", "safetensors", "-o", out, env=env), 6, "refused", "system")
    assert not marker.exists() and not out.exists()


# --- MindSpore checkpoints without MindSpore ---------------------------------------------------


@pytest.mark.mindspore
@pytest.mark.parametrize("crc", [False, True], ids=["plain", "crc"])
def test_ckpt_reader_equals_mindspore_load_checkpoint(crc, tmp_path):
    import mindspore as ms

    from zoo.converters.mindspore_ckpt import read_mindspore_ckpt
    from zoo.errors import CheckpointFormatError

    rng = np.random.default_rng(0)
    params = [
        {"name": "conv.weight", "data": ms.Tensor(rng.standard_normal((8, 3, 3, 3)).astype(np.float32))},
        {"name": "bn.moving_mean", "data": ms.Tensor(rng.standard_normal(8).astype(np.float32))},
        {"name": "global_step", "data": ms.Tensor(np.array([1234], np.int32))},
        {"name": "steps", "data": ms.Tensor(np.arange(5, dtype=np.int64))},
        {"name": "scalar", "data": ms.Tensor(np.float32(2.5))},
        {"name": "half", "data": ms.Tensor(rng.standard_normal((2, 3)).astype(np.float16))},
        {"name": "flags", "data": ms.Tensor(np.array([True, False]))},
        {"name": "bf16", "data": ms.Tensor(rng.standard_normal((4,)).astype(np.float32), ms.bfloat16)},
    ]
    path = tmp_path / "m.ckpt"
    ms.save_checkpoint(params, str(path), crc_check=crc)
    ours, reference = read_mindspore_ckpt(path), ms.load_checkpoint(str(path))
    assert ours.keys() == reference.keys()
    for name, parameter in reference.items():
        expected = parameter.float().asnumpy() if name == "bf16" else parameter.asnumpy()
        assert ours[name].shape == expected.shape and ours[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(ours[name], expected)
    if crc:  # one flipped bit in the content fails the CRC MindSpore appended
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.raises(CheckpointFormatError, match="CRC mismatch"):
            read_mindspore_ckpt(path)


def _field(number: int, payload: bytes) -> bytes:
    def varint(n: int) -> bytes:
        out = b""
        while True:
            out += bytes([n & 0x7F | (0x80 if n > 0x7F else 0)])
            n >>= 7
            if not n:
                return out
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _value(tag: str, dims: list[int], dtype: str, content: bytes) -> bytes:
    tensor = b"".join(bytes([0x08]) + bytes([d]) for d in dims) + _field(2, dtype.encode()) + _field(3, content)
    return _field(1, _field(1, tag.encode()) + _field(2, tensor))


def test_ckpt_wire_format_slices_and_malformed_files(tmp_path):
    """The wire format read by hand: values split in slices join up; anything malformed is
    refused with exit 4 — no MindSpore involved."""
    from zoo.converters.mindspore_ckpt import read_mindspore_ckpt

    weights = np.arange(12, dtype=np.float32)
    sliced = tmp_path / "sliced.ckpt"
    sliced.write_bytes(_value("w", [3, 4], "Float32", weights[:5].tobytes())
                       + _value("w", [3, 4], "Float32", weights[5:].tobytes())
                       + _value("n", [0], "Int64", np.int64(9).tobytes()))
    read = read_mindspore_ckpt(sliced)
    np.testing.assert_array_equal(read["w"], weights.reshape(3, 4))
    assert read["n"].shape == () and read["n"] == 9
    env = only(tmp_path / "site", None)
    good = _value("w", [3, 4], "Float32", weights.tobytes())
    cases = {
        "truncated": good[:-7],
        "short content": _value("w", [3, 4], "Float32", weights[:11].tobytes()),
        "unknown dtype": _value("w", [3], "Complex64", weights[:3].tobytes()),
        "length past the end": b"\x0a\xff\xff\xff\x0f" + good,
        "random": b"\x0a" + np.random.default_rng(0).bytes(4000),
    }
    for label, data in cases.items():
        path = tmp_path / f"{label.replace(' ', '_')}.ckpt"
        path.write_bytes(data)
        out = tmp_path / "out.safetensors"
        result = zoo_cli("convert", path, "--to", "safetensors", "-m", "res2net50", "-o", out, env=env)
        one_error_line(result, 4, path.name)
        assert not out.exists(), label


_OWN_LOADER = {
    "paddle": "import paddle\nmodel = zoo.create_model(NAME, 'paddle')\nmodel.set_state_dict(paddle.load(PATH))\n",
    "jittor": "import zoo.frameworks.jittor\nimport jittor as jt\nmodel = zoo.create_model(NAME, 'jittor')\n"
              "model.load_parameters(jt.load(PATH))\n",
}


@pytest.mark.parametrize("framework", [pytest.param(fw, marks=getattr(pytest.mark, fw)) for fw in _OWN_LOADER])
def test_native_files_written_without_their_framework_load_there(framework, tmp_path_factory, tmp_path):
    """.pdparams and Jittor .pkl are pickles numpy writes exactly: a machine without the framework
    writes them, and the framework's own loader reads them with parity."""
    name = "res2net50_26w_4s"
    rel = release(tmp_path_factory, name)
    path = tmp_path / f"converted{'.pdparams' if framework == 'paddle' else '.pkl'}"
    result = zoo_cli("convert", rel["file"], "--to", framework, "-o", path, env=only(tmp_path / "none", None))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "logits.npy"
    code = (f"import numpy as np, zoo\nNAME, PATH = {name!r}, {str(path)!r}\nx = np.load({str(rel['input'])!r})\n"
            + _OWN_LOADER[framework] + FORWARD[framework] + f"np.save({str(out)!r}, y)\n")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                            env={**os.environ, **only(tmp_path / "site", framework)})
    assert loaded.returncode == 0, loaded.stderr
    assert relative_diff(np.load(out), rel["reference"]) <= PARITY_LIMIT
