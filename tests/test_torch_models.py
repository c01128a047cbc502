"""PyTorch models built from the spec: official layout, published sizes, and logits equal to
timm (an independent implementation of the official graph) on realistic random weights."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.torch

import zoo  # noqa: E402
from zoo.spec import (  # noqa: E402
    Res2NetSpec, canonical_layout, feature_info, get_spec, get_variant, list_variants, param_count,
)

VARIANTS = list_variants()
# The official variant of the same size, whose timm graph a peer's graph is compared with.
VARIANTS_BY_GRAPH_ORIGIN = {
    "res2net50_vd_26w_4s": get_variant("res2net50_v1b_26w_4s"),
    "res2net101_vd_26w_4s": get_variant("res2net101_v1b_26w_4s"),
    "res2net200_vd_26w_4s": get_variant("res2net200_v1b_26w_4s"),
    "res2net50_26w_4s_paddleclas": get_variant("res2net50_26w_4s"),
    "res2net50_14w_8s_paddleclas": get_variant("res2net50_14w_8s"),
    "res2net101_v1d_26w_4s": get_variant("res2net101_v1b_26w_4s"),
}
PARITY_LIMIT = 1e-5


def _torch():
    import torch

    torch.set_num_threads(2)
    return torch


def _timm_reference(variant):
    import timm
    from timm.layers import SEModule
    from timm.models.res2net import Bottle2neck
    from timm.models.resnet import ResNet

    if variant.timm_name:
        return timm.create_model(variant.timm_name).eval()
    s = variant.spec  # same graph, no timm entry point: build timm's ResNet trunk directly
    block_args = dict(scale=s.scale, **({"attn_layer": SEModule} if s.se else {}))
    kwargs = dict(stem_type="deep", avg_down=True, stem_width=32) if s.stem == "deep" else {}
    return ResNet(block=Bottle2neck, layers=list(s.depths), base_width=s.base_width,
                  block_args=block_args, **kwargs).eval()


def _relative_diff(a, b) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item()


def _images(size, batch=2, seed=1):
    torch = _torch()
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _realistic(spec, size=64):
    from zoo.frameworks.torch.calibrate import realistic_model

    return realistic_model(spec, image_size=size)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_state_dict_is_the_canonical_layout(variant):
    model = zoo.create_model(variant.name, framework="torch")
    state = [(k, tuple(v.shape)) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert state == [(t.name, t.shape) for t in canonical_layout(variant.spec)]
    trainable = sum(p.numel() for p in model.parameters())
    assert trainable == param_count(variant.spec)
    if variant.published and variant.spec.topology == "resnet":  # rounded or cut to 0.01M
        assert abs(trainable / 1e6 - variant.published.params_m) <= 0.005 \
            or trainable // 10_000 / 100 == variant.published.params_m


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_logits_equal_timm_on_realistic_weights(variant):
    """timm implements the official graph; the peers' graphs (PaddleClas, MMDetection) must differ
    from it on the same weights — their own code is the reference there (test_peers.py)."""
    torch = _torch()
    spec = variant.spec if variant.spec.num_classes else variant.spec.replace(num_classes=1000)
    ours = _realistic(spec)
    official = VARIANTS_BY_GRAPH_ORIGIN.get(variant.name, variant)
    reference = _timm_reference(official)
    reference.load_state_dict(ours.state_dict(), strict=True)
    x = _images(64)
    with torch.no_grad():
        a, b = ours(x), reference(x)
    # The weights are realistic: logits of order 1-10, not a degenerate all-zero network.
    assert 1.0 < b.abs().max().item() < 100.0
    assert b.std().item() > 0.1
    if variant.graph == "official":
        assert _relative_diff(a, b) <= PARITY_LIMIT
    else:
        assert _relative_diff(a, b) > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["res2net50_26w_4s", "res2net50_v1b_26w_4s", "res2next50", "res2net_dla60"])
def test_logits_equal_timm_at_224(name):
    torch = _torch()
    variant = zoo.get_variant(name)
    ours = _realistic(variant.spec, size=224)
    reference = _timm_reference(variant)
    reference.load_state_dict(ours.state_dict())
    x = _images(224, batch=1)
    with torch.no_grad():
        assert _relative_diff(ours(x), reference(x)) <= PARITY_LIMIT


def test_parity_check_catches_a_wrong_pooling_flag():
    """The comparison above is sensitive: counting the padding differently is visible."""
    torch = _torch()
    variant = zoo.get_variant("res2net50_26w_4s")
    ours = _realistic(variant.spec)
    reference = _timm_reference(variant)
    reference.load_state_dict(ours.state_dict())
    ours.layer1[0].pool.count_include_pad = False
    with torch.no_grad():
        assert _relative_diff(ours(_images(64)), reference(_images(64))) > 1e-3


def test_realistic_weights_have_calibrated_statistics():
    torch = _torch()
    model = _realistic(get_spec("res2net50_26w_4s"))
    bn = model.layer2[1].bns[0]
    assert bn.running_mean.abs().max() > 1e-3            # not the zero default
    assert (bn.running_var - 1).abs().max() > 1e-2        # not the unit default
    assert torch.isfinite(bn.running_var).all() and (bn.running_var > 0).all()


@pytest.mark.parametrize("name,expected", [
    ("res2net101_v1b", [(256, 16), (512, 8), (1024, 4), (2048, 2)]),
    ("res2net_dla60", [(128, 16), (256, 8), (512, 4), (1024, 2)]),
])
def test_features_only_returns_c2_to_c5(name, expected):
    torch = _torch()
    model = zoo.create_model(name, framework="torch", features_only=True).eval()
    with torch.no_grad():
        feats = model(_images(64))
    assert [(f.shape[1], f.shape[2]) for f in feats] == expected
    assert [(i.channels, 64 // i.reduction) for i in model.feature_info] == expected
    assert model.fc is None and not any(k.startswith("fc.") for k in model.state_dict())


def test_out_indices_select_levels():
    torch = _torch()
    model = zoo.create_model("res2net50_26w_4s", framework="torch", features_only=True, out_indices=(0, -1)).eval()
    with torch.no_grad():
        stem, last = model(_images(64))
    info = feature_info(get_spec("res2net50_26w_4s"))
    assert stem.shape[1:] == (info[0].channels, 32, 32) and last.shape[1:] == (2048, 2, 2)
    with pytest.raises(ValueError, match="out of range"):
        zoo.create_model("res2net50_26w_4s", framework="torch", features_only=True, out_indices=(7,))


def test_custom_spec_model_trains():
    torch = _torch()
    spec = Res2NetSpec((1, 1), base_width=8, scale=3, cardinality=2, num_classes=4, se=True)
    model = zoo.create_model(spec, framework="torch")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _images(32, batch=4), torch.tensor([0, 1, 2, 3])
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(p.grad is not None for p in model.parameters())


def test_strided_stage_rule_changes_layer1():
    torch = _torch()
    official = zoo.create_model(Res2NetSpec((1, 1), base_width=8), framework="torch")
    strided = zoo.create_model(Res2NetSpec((1, 1), base_width=8, stage_blocks="strided"), framework="torch")
    assert official.layer1[0].pool is not None and strided.layer1[0].pool is None
    assert strided.layer2[0].pool is not None
    strided.load_state_dict(official.state_dict())  # same parameters, different graph
    official.eval(), strided.eval()
    with torch.no_grad():
        assert _relative_diff(official(_images(32)), strided(_images(32))) > 1e-4
