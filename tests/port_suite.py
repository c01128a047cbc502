"""The checks every framework port must pass, written once.

A test module per framework marks itself with the framework's marker, defines the ``port``
fixture (a :class:`Port` adapter) and imports these tests. Its session imports that framework
only; PyTorch references come from torch worker processes (tests/reference.py).
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo.convert import convert
from zoo.converters.tables import to_native
from zoo.errors import CheckpointFormatError, CheckpointMismatchError
from zoo.spec import Res2NetSpec, canonical_layout, list_variants, param_count

from .reference import PARITY_LIMIT, calibrated, images, relative_diff, torch_logits

NAMES = [v.name for v in list_variants()]
FAMILIES_224 = ["res2net50_26w_4s", "res2net50_v1b_26w_4s", "res2next50", "res2net_dla60"]


class Port:
    """What the shared tests need to know about one framework."""

    name: str
    extension: str
    modes: tuple[str, str]            # (eager, compiled) execution modes

    def logits(self, model: str, weights: Path, inputs: Path, mode: str) -> np.ndarray: ...
    def state_shapes(self, model) -> dict[str, tuple[int, ...]]: ...
    def trainable_count(self, model) -> int: ...
    def native_load(self, model_name: str, path: Path) -> tuple[list, list]: ...
    def train_losses(self, spec: Res2NetSpec, steps: int) -> list[float]: ...
    def feature_shapes(self, model_name: str, size: int) -> list[tuple[int, ...]]: ...
    def write_native(self, state_path: Path, out: Path) -> None: ...


# Every fourth variant is converted the user's way, by zoo.convert (what `zoo convert` runs) from an
# official-style .pth, workers and all; the rest by the same writer in this process, saving a
# worker start each.
FROM_OFFICIAL_PTH = NAMES[::4]


@pytest.fixture(scope="module")
def world(port, tmp_path_factory):
    """Realistic weights for every variant (64 px) and one per family at 224 px, converted to
    the framework's native format, with the torch logits of each."""
    d = tmp_path_factory.mktemp(port.name)
    x64, x224 = images(d / "x64.npy", 64), images(d / "x224.npy", 224, batch=1)
    weights = calibrated(d, NAMES, 64, pth=[*FROM_OFFICIAL_PTH, "res2net101_v1b_26w_4s"])
    weights_224 = {f"{n}@224": p for n, p in calibrated(d, FAMILIES_224, 224).items()}
    runs = {n: (n, p, x64) for n, p in weights.items()}
    runs |= {k: (k.split("@")[0], p, x224) for k, p in weights_224.items()}
    reference = torch_logits(d, runs)
    native = {}
    for key, (name, source, _) in runs.items():
        out = d / f"{key}{port.extension}"
        if key in FROM_OFFICIAL_PTH:
            native[key] = convert(source.with_suffix(".pth"), port.name, model=name, out=out)
        else:
            port.write_native(source, out)
            native[key] = out
    yield {"runs": runs, "reference": reference, "native": native, "weights": weights}
    # About 7 GB per framework: gone with the module, whatever the retention policy keeps.
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("name", NAMES)
def test_native_layout_follows_the_rename_table(port, name):
    spec = zoo.get_spec(name)
    model = zoo.create_model(name, framework=port.name)
    canonical = {t.name: np.empty(t.shape, np.float32) for t in canonical_layout(spec)}
    expected = {k: v.shape for k, v in to_native(canonical, spec, port.name).items()}
    assert port.state_shapes(model) == expected
    assert port.trainable_count(model) == param_count(spec)


@pytest.mark.parametrize("name", NAMES)
def test_logits_match_torch(port, world, name):
    reference = world["reference"][name]
    assert 1.0 < np.abs(reference).max() < 100.0  # realistic weights: logits of order 1-10
    got = port.logits(name, world["native"][name], world["runs"][name][2], port.modes[0])
    assert relative_diff(got, reference) <= PARITY_LIMIT


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES_224)
def test_logits_match_torch_at_224_in_both_modes(port, world, name):
    key = f"{name}@224"
    for mode in port.modes:
        got = port.logits(name, world["native"][key], world["runs"][key][2], mode)
        assert relative_diff(got, world["reference"][key]) <= PARITY_LIMIT, mode


def test_compiled_mode_at_64(port, world):
    name = "res2next_dla60"
    got = port.logits(name, world["native"][name], world["runs"][name][2], port.modes[1])
    assert relative_diff(got, world["reference"][name]) <= PARITY_LIMIT


def test_native_file_loads_with_the_frameworks_own_api(port, world):
    missing, unexpected = port.native_load("res2net101_v1b_26w_4s", world["native"]["res2net101_v1b_26w_4s"])
    assert not missing and not unexpected


@pytest.mark.parametrize("name", ["res2net50_26w_4s", "res2net_dla60", "se_res2net50_26w_4s"])
def test_round_trip_to_safetensors_and_torch_is_bit_exact(world, name, tmp_path):
    from safetensors.numpy import load_file

    back = convert(world["native"][name], "safetensors", out=tmp_path / "back.safetensors")
    original, returned = load_file(str(world["weights"][name])), load_file(str(back))
    assert original.keys() == returned.keys()
    assert all(np.array_equal(original[k], returned[k]) for k in original)
    # ... and on to a torch file, read back by a torch worker: still the same bits.
    pth = convert(back, "torch", out=tmp_path / "back.pth")
    again = load_file(str(convert(pth, "safetensors", out=tmp_path / "again.safetensors")))
    assert all(np.array_equal(original[k], again[k]) for k in original)


def test_model_is_identified_without_model_flag(port, world, tmp_path):
    from safetensors import safe_open

    # From the official file name ...
    official = tmp_path / "res2net101_v1b_26w_4s-0812c246.pth"
    os.link(world["weights"]["res2net101_v1b_26w_4s"].with_suffix(".pth"), official)
    out = convert(official, port.name, out=tmp_path / f"a{port.extension}")
    # ... and from the shapes alone, in a native file with a neutral name.
    neutral = tmp_path / f"weights{port.extension}"
    os.link(out, neutral)
    back = convert(neutral, "safetensors", out=tmp_path / "b.safetensors")
    with safe_open(str(back), "numpy") as f:
        assert f.metadata()["zoo.model"] == "res2net101_v1b_26w_4s"


def test_wrong_variant_and_truncated_file(port, world, tmp_path):
    with pytest.raises(CheckpointMismatchError, match="layer1.0.conv1.weight"):
        zoo.create_model("res2net50_14w_8s", framework=port.name, weights=str(world["native"]["res2net50_26w_4s"]))
    data = world["native"]["res2net50_26w_4s"].read_bytes()
    cut = tmp_path / f"cut{port.extension}"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointFormatError):
        zoo.create_model("res2net50_26w_4s", framework=port.name, weights=str(cut))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_never_runs(port, tmp_path):
    from zoo.errors import UnsafeCheckpointError

    marker = tmp_path / "ran"
    for suffix in (".pdparams", ".pkl", ".pth"):
        evil = tmp_path / f"evil{suffix}"
        evil.write_bytes(pickle.dumps({"conv1.weight": _Payload(str(marker))}, protocol=4))
        with pytest.raises(UnsafeCheckpointError, match="refused"):
            zoo.create_model("res2net50_26w_4s", framework=port.name, weights=str(evil))
    assert not marker.exists()


def test_cli_convert_error_leaves_nothing_behind(port, world, tmp_path):
    out = tmp_path / f"out{port.extension}"
    result = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "convert", str(world["weights"]["res2net50_26w_4s"]),
         "--to", port.name, "--model", "res2net50_14w_8s", "-o", str(out)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 5
    assert result.stderr.strip().startswith("error: checkpoint does not fit res2net50_14w_8s")
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_trains(port):
    spec = Res2NetSpec((1, 1), base_width=8, scale=3, cardinality=2, num_classes=4, se=True)
    losses = port.train_losses(spec, 5)
    assert losses[-1] < losses[0]


def test_features_only(port):
    assert port.feature_shapes("res2net_dla60", 64) == [(128, 16, 16), (256, 8, 8), (512, 4, 4), (1024, 2, 2)]
    assert port.feature_shapes("res2net50_v1b_26w_4s", 64) == [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]
