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


def test_numpy_zip_reader_refuses_code_and_falls_back_for_other_torch_objects(tmp_path, torch, r50):
    from zoo.converters.read import read_raw

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": _RunsCode(marker)}, evil)
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system"):
        read_raw(evil)
    assert not marker.exists()
    # torch.Size is outside what the numpy reader admits; torch's weights_only reader takes it.
    odd = tmp_path / "odd.pth"
    torch.save({"conv1.weight": r50.conv1.weight.detach(), "shape": torch.Size([3])}, odd)
    with pytest.raises(CheckpointFormatError):  # "shape" is no tensor: the torch worker's verdict
        read_raw(odd)
