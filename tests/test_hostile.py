"""Broken and hostile inputs, through the CLI as a user runs it: one clear error line, the
documented exit code, no foreign code run, and nothing half-written."""

from __future__ import annotations

import json
import os
import pickle
import resource
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from zoo.convert import convert

from .isolation import hiding
from .reference import calibrated

NAME = "res2net50_26w_4s"
FORMATS = {"safetensors": ".safetensors", "torch": ".pth", "paddle": ".pdparams", "mindspore": ".ckpt",
           "jittor": ".pkl"}


def zoo_cli(*args, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600, **kwargs)


def assert_clean_failure(result, code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr  # notes may precede it
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A valid file of every format (realistic weights), to break in each test."""
    d = tmp_path_factory.mktemp("corpus")
    st = calibrated(d, [NAME], 64, pth=[NAME])[NAME]
    files = {"safetensors": st, "torch": st.with_suffix(".pth")}
    for fw in ("paddle", "mindspore", "jittor"):
        files[fw] = convert(st, fw, out=d / f"{NAME}{FORMATS[fw]}")
    return files


@pytest.fixture
def out_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_empty_random_and_truncated_files(corpus, fmt, tmp_path, out_dir):
    ext = FORMATS[fmt]
    empty = tmp_path / f"empty{ext}"
    empty.write_bytes(b"")
    assert_clean_failure(zoo_cli("convert", empty, "--to", "safetensors", "-o", out_dir / "x.safetensors"),
                         4, "empty file")
    noise = tmp_path / f"noise{ext}"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    assert_clean_failure(zoo_cli("convert", noise, "--to", "safetensors", "-o", out_dir / "x.safetensors"), 4)
    data = corpus[fmt].read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    assert_clean_failure(zoo_cli("convert", cut, "--to", "safetensors", "--model", NAME,
                                 "-o", out_dir / "x.safetensors"), 4)
    assert leftovers(out_dir) == []


def test_missing_file_and_directory(tmp_path, out_dir):
    assert_clean_failure(zoo_cli("convert", tmp_path / "absent.pth", "--to", "paddle"), 4, "no such file")
    assert_clean_failure(zoo_cli("convert", tmp_path, "--to", "paddle"), 4, "is a directory")


def test_safetensors_with_corrupted_header(corpus, tmp_path, out_dir):
    data = bytearray(corpus["safetensors"].read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    data[9:9 + 40] = b"\xff" * 40  # garbage inside the JSON header, length intact
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    assert_clean_failure(zoo_cli("convert", bad, "--to", "torch", "-o", out_dir / "x.pth"), 4, "safetensors")
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    assert_clean_failure(zoo_cli("convert", huge, "--to", "torch"), 4, "header is damaged")
    assert leftovers(out_dir) == []


def test_valid_file_under_another_formats_extension(corpus, tmp_path):
    disguised = tmp_path / "weights.pth"
    os.link(corpus["safetensors"], disguised)
    assert_clean_failure(zoo_cli("convert", disguised, "--to", "paddle"), 4,
                         "holds a safetensors file", "rename it to .safetensors")
    zip_as_pdparams = tmp_path / "weights.pdparams"
    os.link(corpus["torch"], zip_as_pdparams)
    assert_clean_failure(zoo_cli("convert", zip_as_pdparams, "--to", "safetensors"), 4, "PyTorch (zip)")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("ext", [".pth", ".pdparams", ".pkl"])
def test_pickles_that_run_code_are_refused(ext, tmp_path, out_dir):
    marker = tmp_path / "ran"
    evil = tmp_path / f"evil{ext}"
    evil.write_bytes(pickle.dumps({"conv1.weight": _RunsCode(marker)}, protocol=4))
    result = zoo_cli("convert", evil, "--to", "safetensors", "-o", out_dir / "x.safetensors")
    assert_clean_failure(result, 6, "refused")
    for target in ("torch", "paddle"):  # the model loaders refuse it too
        load = subprocess.run([sys.executable, "-c", f"import zoo; zoo.create_model('{NAME}', '{target}', "
                               f"weights='{evil}')"], capture_output=True, text=True, timeout=300)
        assert load.returncode != 0 and "UnsafeCheckpointError" in load.stderr
    assert not marker.exists()
    assert leftovers(out_dir) == []


def _safetensors_variant(corpus, tmp_path, change) -> Path:
    from safetensors.numpy import load_file, save_file

    state = load_file(str(corpus["safetensors"]))
    change(state)
    path = tmp_path / "changed.safetensors"
    save_file(state, str(path))
    return path


def test_wrong_variant_missing_unexpected_and_misshaped(corpus, tmp_path, out_dir):
    result = zoo_cli("convert", corpus["safetensors"], "--to", "paddle", "--model", "res2net50_14w_8s",
                     "-o", out_dir / "x.pdparams")
    assert_clean_failure(result, 5, "does not fit res2net50_14w_8s", "layer1.0.conv1.weight: file [104, 64, 1, 1] "
                                                                      "vs model [112, 64, 1, 1]")
    missing = _safetensors_variant(corpus, tmp_path, lambda s: s.pop("layer3.2.bns.1.running_mean"))
    assert_clean_failure(zoo_cli("convert", missing, "--to", "paddle", "--model", NAME), 5,
                         "1 missing (layer3.2.bns.1.running_mean)")
    extra = _safetensors_variant(corpus, tmp_path, lambda s: s.update({"head.extra": np.zeros(3, np.float32)}))
    assert_clean_failure(zoo_cli("convert", extra, "--to", "paddle", "--model", NAME), 5, "1 unexpected (head.extra)")
    shaped = _safetensors_variant(corpus, tmp_path, lambda s: s.update({"fc.bias": np.zeros(10, np.float32)}))
    assert_clean_failure(zoo_cli("convert", shaped, "--to", "paddle", "--model", NAME), 5,
                         "fc.bias: file [10] vs model [1000]")
    unknown = _safetensors_variant(corpus, tmp_path, lambda s: s.pop("fc.weight"))
    assert_clean_failure(zoo_cli("convert", unknown, "--to", "paddle"), 2, "fit no registered variant")
    assert leftovers(out_dir) == []


def test_non_finite_values_are_refused_unless_asked(corpus, tmp_path, out_dir):
    def poison(s):
        s["layer2.0.bn1.running_var"][3] = np.nan
        s["fc.weight"][0, 0] = np.inf

    poisoned = _safetensors_variant(corpus, tmp_path, poison)
    out = out_dir / "x.pdparams"
    assert_clean_failure(zoo_cli("convert", poisoned, "--to", "paddle", "--model", NAME, "-o", out), 4,
                         "2 tensor(s) hold NaN or Inf", "layer2.0.bn1.running_var", "--allow-non-finite")
    assert leftovers(out_dir) == []
    # Without --model the variant is still found from the shapes, and then the values refused.
    assert_clean_failure(zoo_cli("convert", poisoned, "--to", "safetensors", "-o", out_dir / "y.safetensors"), 4,
                         "hold NaN or Inf")
    kept = zoo_cli("convert", poisoned, "--to", "paddle", "--model", NAME, "-o", out, "--allow-non-finite")
    assert kept.returncode == 0, kept.stderr
    assert out.is_file()


def test_half_precision_inputs(corpus, tmp_path, out_dir):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    state = load_file(str(corpus["safetensors"]))
    half = tmp_path / "half.safetensors"
    save_file({k: v.astype(np.float16) for k, v in state.items()}, str(half))
    result = zoo_cli("convert", half, "--to", "safetensors", "--model", NAME, "-o", out_dir / "a.safetensors")
    assert result.returncode == 0, result.stderr
    assert "float16 tensors converted to float32" in result.stderr
    assert load_file(str(out_dir / "a.safetensors"))["fc.weight"].dtype == np.float32
    kept = zoo_cli("convert", half, "--to", "safetensors", "--model", NAME, "--dtype", "keep",
                   "-o", out_dir / "b.safetensors")
    assert kept.returncode == 0 and load_file(str(out_dir / "b.safetensors"))["fc.weight"].dtype == np.float16
    # bfloat16: numpy has none; the reader widens it exactly.
    bf16 = tmp_path / "bf16.safetensors"
    _save_bf16(state, bf16)
    result = zoo_cli("convert", bf16, "--to", "safetensors", "--model", NAME, "-o", out_dir / "c.safetensors")
    assert result.returncode == 0, result.stderr
    assert "bfloat16 tensors converted to float32" in result.stderr
    widened = load_file(str(out_dir / "c.safetensors"))["fc.weight"]
    truncated = (state["fc.weight"].view(np.uint32) & 0xFFFF0000).view(np.float32)
    np.testing.assert_array_equal(widened, truncated)
    with safe_open(str(out_dir / "c.safetensors"), "numpy") as f:
        assert f.metadata()["zoo.model"] == NAME
    assert_clean_failure(zoo_cli("convert", half, "--to", "paddle", "--model", NAME, "--dtype", "float16"),
                         2, "applies to --to safetensors")


def _save_bf16(state: dict, path: Path) -> None:
    header, chunks, offset = {}, [], 0
    for name, value in state.items():
        raw = (value.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(value.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(chunks))


def test_unknown_names_suggest_the_closest(corpus):
    assert_clean_failure(zoo_cli("convert", corpus["safetensors"], "--to", "pytroch"), 2, "did you mean torch?")
    assert_clean_failure(zoo_cli("convert", corpus["safetensors"], "--to", "paddle", "--model", "res2net50_26w_5s"),
                         2, "did you mean", "res2net50_26w_4s")
    assert_clean_failure(zoo_cli("download", "res2net_dla61"), 2, "did you mean res2net_dla60")


def test_framework_not_installed_names_the_extra(corpus, tmp_path):
    env = hiding(tmp_path / "site", "mindspore")  # as on a machine without MindSpore
    start = time.perf_counter()
    result = zoo_cli("convert", corpus["safetensors"], "--to", "mindspore", "-o", tmp_path / "x.ckpt", env=env)
    assert_clean_failure(result, 3, "pip install 'res2net-zoo[mindspore]'")
    assert time.perf_counter() - start < 30 and not (tmp_path / "x.ckpt").exists()


def test_unwritable_outputs(corpus, tmp_path):
    assert_clean_failure(zoo_cli("convert", corpus["safetensors"], "--to", "paddle", "-o",
                                 tmp_path / "no" / "such" / "dir.pdparams"), 8, "does not exist")
    assert_clean_failure(zoo_cli("convert", corpus["safetensors"], "--to", "safetensors", "-o",
                                 "/sys/zoo-test.safetensors"), 8, "cannot write")


@pytest.mark.parametrize("target", ["safetensors", "paddle"])
def test_full_disk_leaves_nothing(corpus, target, out_dir):
    limit = 1 << 20  # a 1 MiB file-size limit: the write fails part way

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = zoo_cli("convert", corpus["safetensors"], "--to", target, "-o", out_dir / f"x{FORMATS[target]}",
                     preexec_fn=small_files)
    assert_clean_failure(result, 8, "writing failed")
    assert leftovers(out_dir) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupted_conversion_leaves_nothing(corpus, sig, out_dir, tmp_path):
    """Stop `zoo convert` while its worker writes: no output, no temporary files."""
    out = out_dir / "x.ckpt"
    scratch = tmp_path / "tmp"  # the command's TMPDIR: its job and result files go there
    scratch.mkdir()
    # A shell starting a job in the background makes it ignore SIGINT, and Python keeps an ignored
    # SIGINT ignored: give the command a terminal's Ctrl-C whatever launched this test.
    proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", "convert", str(corpus["safetensors"]), "--to",
                             "mindspore", "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "TMPDIR": str(scratch)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not _children(proc.pid):
        time.sleep(0.02)
    time.sleep(0.4)  # mid-conversion: the worker is still loading MindSpore (about 1.7 s here)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    for _ in range(200):  # the worker, told by SIGTERM from the kernel, cleans up as it exits
        if not leftovers(out_dir):
            break
        time.sleep(0.05)
    assert leftovers(out_dir) == []
    if sig != signal.SIGKILL:  # a killed process cannot remove its scratch directories; others must
        assert leftovers(scratch) == []


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_two_conversions_to_one_output(corpus, out_dir):
    out = out_dir / "x.pdparams"
    cmd = [sys.executable, "-m", "zoo.cli", "convert", str(corpus["safetensors"]), "--to", "paddle", "-o", str(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert leftovers(out_dir) == ["x.pdparams"]
    back = convert(out, "safetensors", out=out_dir.parent / "back.safetensors")
    from safetensors.numpy import load_file

    a, b = load_file(str(corpus["safetensors"])), load_file(str(back))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_existing_output_is_replaced_atomically(corpus, out_dir):
    out = out_dir / "x.safetensors"
    out.write_bytes(b"old contents")
    inode = out.stat().st_ino
    assert zoo_cli("convert", corpus["safetensors"], "--to", "safetensors", "-o", out).returncode == 0
    assert out.stat().st_ino != inode and out.stat().st_size > 1000
    assert leftovers(out_dir) == ["x.safetensors"]
