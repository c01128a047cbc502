"""Loading official/timm-style checkpoints into the torch models: strict, safe, explicit."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo.errors import CheckpointFormatError, CheckpointMismatchError, UnsafeCheckpointError
from zoo.spec import get_spec, plan, unused_official_tensors

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def torch():
    import torch

    torch.set_num_threads(2)
    return torch


@pytest.fixture(scope="module")
def r50(torch):
    from zoo.frameworks.torch.calibrate import realistic_model

    return realistic_model(get_spec("res2net50_26w_4s"))


def _logits(model, torch):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model.eval()(x)


def test_official_pth_with_num_batches_tracked_loads_exactly(tmp_path, torch, r50):
    path = tmp_path / "res2net50_26w_4s-06e79181.pth"
    torch.save(r50.state_dict(), path)  # official files carry num_batches_tracked
    model = zoo.create_model("res2net50", framework="torch", weights=str(path))
    assert torch.equal(_logits(model, torch), _logits(r50, torch))


def test_containers_and_wrapper_prefixes_are_unwrapped(tmp_path, torch, r50):
    state = {f"module.{k}": v for k, v in r50.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "trained.pth"
    torch.save({"epoch": 90, "state_dict": state, "optimizer": {"lr": 0.1}}, path)
    model = zoo.create_model("res2net50_26w_4s", framework="torch", weights=path)
    assert torch.equal(_logits(model, torch), _logits(r50, torch))


def test_safetensors_loads(tmp_path, torch, r50):
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.numpy() for k, v in r50.state_dict().items() if "num_batches" not in k}, str(path))
    model = zoo.create_model("res2net50_26w_4s", framework="torch", weights=path)
    assert torch.equal(_logits(model, torch), _logits(r50, torch))


def test_official_dla_checkpoint_drops_exactly_the_unused_projections(tmp_path, torch):
    from zoo.frameworks.torch.calibrate import realistic_model

    spec = get_spec("res2net_dla60")
    reference = realistic_model(spec)
    state = dict(reference.state_dict())
    rng = np.random.default_rng(0)
    unused = unused_official_tensors(plan(spec))
    for t in unused:
        state[t.name] = torch.from_numpy(rng.standard_normal(t.shape).astype(np.float32))
    assert sum(v.numel() for k, v in state.items() if k.endswith(("weight", "bias"))) == 20_848_072 + 297_472
    path = tmp_path / "res2net_dla60_4s-d88db7f9.pth"
    torch.save(state, path)
    model = zoo.create_model("dla60_res2net", framework="torch", weights=path)
    assert torch.equal(_logits(model, torch), _logits(reference, torch))
    # The same names with another shape are not "unused official projections": refused.
    state["level3.project.0.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match="level3.project.0.weight"):
        zoo.create_model("res2net_dla60", framework="torch", weights=path)


def test_missing_and_unexpected_keys_are_listed(tmp_path, torch, r50):
    state = dict(r50.state_dict())
    del state["layer2.1.bns.0.running_var"]
    state["layer9.extra.weight"] = torch.zeros(3)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError) as err:
        zoo.create_model("res2net50_26w_4s", framework="torch", weights=path)
    message = str(err.value)
    assert "1 missing (layer2.1.bns.0.running_var)" in message
    assert "1 unexpected (layer9.extra.weight)" in message


def test_checkpoint_of_another_variant_names_the_mismatching_tensors(tmp_path, torch, r50):
    path = tmp_path / "res2net50_26w_4s.pth"
    torch.save(r50.state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"res2net50_14w_8s: .*wrong shape \(layer1\.0\.conv1\.weight: "
                                                     r"file \[104, 64, 1, 1\] vs model \[112, 64, 1, 1\]"):
        zoo.create_model("res2net50_14w_8s", framework="torch", weights=path)


def test_new_head_for_fine_tuning_keeps_the_backbone(tmp_path, torch, r50):
    path = tmp_path / "r50.pth"
    torch.save(r50.state_dict(), path)
    model = zoo.create_model("res2net50_26w_4s", framework="torch", weights=path, num_classes=10)
    assert model.fc.weight.shape == (10, 2048)
    assert torch.equal(model.layer4[2].conv3.weight, r50.layer4[2].conv3.weight)
    features = zoo.create_model("res2net50_26w_4s", framework="torch", weights=path, features_only=True)
    assert torch.equal(features.conv1.weight, r50.conv1.weight)


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path, torch):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _RunsCode(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        zoo.create_model("res2net50_26w_4s", framework="torch", weights=path)
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps({"x": _RunsCode(marker)}, protocol=2))
    with pytest.raises(UnsafeCheckpointError):
        zoo.create_model("res2net50_26w_4s", framework="torch", weights=legacy)
    assert not marker.exists()


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"),
    (b"\x00\x01garbage" * 10, "unrecognised or damaged file"),
])
def test_unreadable_files(tmp_path, torch, content, match):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointFormatError, match=match):
        zoo.create_model("res2net50_26w_4s", framework="torch", weights=path)


def test_truncated_files(tmp_path, torch, r50):
    from safetensors.numpy import save_file

    full = tmp_path / "full.pth"
    torch.save(r50.state_dict(), full)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointFormatError, match="damaged or truncated"):
        zoo.create_model("res2net50_26w_4s", framework="torch", weights=cut)
    st = tmp_path / "full.safetensors"
    save_file({"a": np.zeros((1000,), np.float32)}, str(st))
    cut_st = tmp_path / "cut.safetensors"
    cut_st.write_bytes(st.read_bytes()[:-100])
    with pytest.raises(CheckpointFormatError, match="safetensors"):
        zoo.create_model("res2net50_26w_4s", framework="torch", weights=cut_st)
    with pytest.raises(CheckpointFormatError, match="no such file"):
        zoo.create_model("res2net50_26w_4s", framework="torch", weights=tmp_path / "absent.pth")


def test_numpy_zip_reader_equals_torch_load(tmp_path, torch, r50):
    """zoo reads torch zip checkpoints without torch; it must see exactly what torch.load sees."""
    from zoo.converters.torch_zip import read_torch_zip

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "plain": r50.state_dict()["layer1.0.convs.0.weight"],
        "view": base[:, 2],                          # shares storage, offset and stride
        "transposed": base.t(),                      # non-contiguous
        "half": base.half(), "bf16": base.bfloat16(), "count": torch.tensor(7), "ints": torch.arange(5),
        "nested": {"inner": [base[1], (base[2],)]},
    }
    path = tmp_path / "mixed.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    ours, reference = read_torch_zip(path)["state_dict"], torch.load(path, weights_only=True)["state_dict"]
    for key in ("plain", "view", "transposed", "half", "count", "ints"):
        np.testing.assert_array_equal(ours[key], reference[key].numpy())
        assert ours[key].dtype == reference[key].numpy().dtype
    np.testing.assert_array_equal(ours["bf16"], reference["bf16"].float().numpy())
    np.testing.assert_array_equal(ours["nested"]["inner"][1][0], reference["nested"]["inner"][1][0].numpy())


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_numpy_readers_refuse_code_in_both_formats(tmp_path, torch, r50, legacy):
    from zoo.converters.read import read_raw

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": _RunsCode(marker)}, evil, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system"):
        read_raw(evil)
    with pytest.raises(UnsafeCheckpointError):
        zoo.create_model("res2net50_26w_4s", framework="torch", weights=evil)
    assert not marker.exists()
    # torch.Size is harmless and admitted (as torch's weights_only reader does); an entry that is
    # not a tensor is then reported as such.
    odd = tmp_path / "odd.pth"
    torch.save({"conv1.weight": r50.conv1.weight.detach(), "shape": torch.Size([3])}, odd,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointFormatError, match="not named tensors"):
        read_raw(odd)


def _mixed_state(torch, r50) -> dict:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {
        "plain": r50.state_dict()["layer1.0.convs.0.weight"],
        "view": base[:, 2],                          # shares storage, offset and stride
        "transposed": base.t(),                      # non-contiguous
        "base": base, "row": base[1],                # three tensors over one storage
        "half": base.half(), "bf16": base.bfloat16(), "count": torch.tensor(7), "ints": torch.arange(5),
        "flags": torch.tensor([True, False]), "empty": torch.zeros(0, 3),
        "parameter": torch.nn.Parameter(torch.ones(3)),
        "nested": {"inner": [base[1], (base[2],)]},
    }


def _assert_same(ours: dict, reference: dict, torch) -> None:
    for key, expected in reference.items():
        if isinstance(expected, dict):
            continue
        expected = expected.detach()
        if expected.dtype == torch.bfloat16:
            np.testing.assert_array_equal(ours[key], expected.float().numpy())
            continue
        assert ours[key].dtype == expected.numpy().dtype and ours[key].shape == tuple(expected.shape), key
        np.testing.assert_array_equal(ours[key], expected.numpy())


def test_numpy_legacy_reader_equals_torch_load(tmp_path, torch, r50):
    """The official release files are torch's legacy format; zoo reads them without torch and
    must see exactly what torch.load sees: views, shared storages, every dtype."""
    from zoo.converters.torch_legacy import read_torch_legacy

    path = tmp_path / "mixed.pth"
    torch.save({"state_dict": _mixed_state(torch, r50), "epoch": 3}, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:4] == b"\x80\x02\x8a\x0a"  # the legacy magic number, not a zip
    ours, reference = read_torch_legacy(path), torch.load(path, weights_only=True)
    assert ours["epoch"] == 3
    _assert_same(ours["state_dict"], reference["state_dict"], torch)
    inner, expected = ours["state_dict"]["nested"]["inner"], reference["state_dict"]["nested"]["inner"]
    np.testing.assert_array_equal(inner[1][0], expected[1][0].numpy())


def test_legacy_byte_order_flag_is_read_as_torch_reads_it(tmp_path, torch, r50):
    """torch writes the storages little-endian whatever the writer's machine and ignores the
    sys-info flag when reading; a file whose flag says big-endian reads the same."""
    import io

    from zoo.converters.torch_legacy import read_torch_legacy

    path = tmp_path / "le.pth"
    torch.save(_mixed_state(torch, r50), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    f = io.BytesIO(data)
    magic, version, sys_info = (pickle.load(f) for _ in range(3))
    assert sys_info["little_endian"] is True
    flipped = tmp_path / "flag.pth"
    flipped.write_bytes(b"".join(pickle.dumps(v, protocol=2) for v in (magic, version, sys_info | {"little_endian": False}))
                        + data[f.tell():])
    _assert_same(read_torch_legacy(flipped), torch.load(flipped, weights_only=True), torch)


def test_legacy_dla_checkpoint_with_the_unused_projections(tmp_path, torch):
    from zoo.converters.read import read_raw
    from zoo.frameworks.torch.calibrate import realistic_model

    spec = get_spec("res2net_dla60")
    reference = realistic_model(spec)
    state = dict(reference.state_dict())
    rng = np.random.default_rng(1)
    for t in unused_official_tensors(plan(spec)):
        state[t.name] = torch.from_numpy(rng.standard_normal(t.shape).astype(np.float32))
    path = tmp_path / "res2net_dla60_4s-d88db7f9.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    ours, loaded = read_raw(path).tensors, torch.load(path, weights_only=True)
    assert ours.keys() == loaded.keys()
    for key, value in loaded.items():
        np.testing.assert_array_equal(ours[key], value.numpy())
    model = zoo.create_model("dla60_res2net", framework="torch", weights=path)
    assert torch.equal(_logits(model, torch), _logits(reference, torch))
