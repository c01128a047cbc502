"""The spec alone (no framework) reproduces the published figures and the official layout."""

from __future__ import annotations

import pytest

import zoo
from zoo.errors import UnknownNameError
from zoo.spec import (
    Res2NetSpec, canonical_layout, feature_info, get_spec, get_variant, gflops, list_variants,
    param_count, resolve_name, unused_official_tensors, plan,
)

PUBLISHED = [v for v in list_variants() if v.published]


def test_every_issue_variant_is_registered_with_its_aliases():
    expected = {
        "res2net50_26w_4s": {"res2net50"}, "res2net50_48w_2s": set(), "res2net50_14w_8s": set(),
        "res2net50_26w_6s": set(), "res2net50_26w_8s": set(), "res2net101_26w_4s": set(),
        "res2next50": set(), "res2net_dla60": {"dla60_res2net"}, "res2next_dla60": {"dla60_res2next"},
        "res2net50_v1b_26w_4s": {"res2net50_v1b", "res2net50d"},
        "res2net101_v1b_26w_4s": {"res2net101_v1b", "res2net101d"},
        "res2net152_v1b_26w_4s": set(), "res2net200_v1b_26w_4s": set(), "se_res2net50_26w_4s": set(),
        # the peers' own graphs
        "res2net50_vd_26w_4s": {"Res2Net50_vd_26w_4s"}, "res2net101_vd_26w_4s": {"Res2Net101_vd_26w_4s"},
        "res2net200_vd_26w_4s": {"Res2Net200_vd_26w_4s", "res2net200_vd"},
        "res2net50_26w_4s_paddleclas": set(), "res2net50_14w_8s_paddleclas": set(),
        "res2net101_v1d_26w_4s": {"mmdet_res2net101"},
    }
    assert set(zoo.list_models()) == set(expected)
    for name, aliases in expected.items():
        for alias in aliases:
            assert resolve_name(alias) == name
    assert resolve_name("timm/res2net50d.in1k") == "res2net50_v1b_26w_4s"
    assert not get_variant("se_res2net50_26w_4s").has_weights


@pytest.mark.parametrize("variant", PUBLISHED, ids=lambda v: v.name)
def test_params_match_published(variant):
    # The official DLA checkpoints count projection layers the graph never uses.
    count = param_count(variant.spec, with_unused=True)
    # rounded to 0.01M, or cut there (the README's 76.21M for 76,215,536)
    assert abs(count / 1e6 - variant.published.params_m) <= 0.005 or count // 10_000 / 100 == variant.published.params_m


@pytest.mark.parametrize("variant", PUBLISHED, ids=lambda v: v.name)
def test_gflops_match_published(variant):
    assert abs(gflops(variant.spec, with_unused=True) - variant.published.gflops) <= 0.1
    assert gflops(variant.spec) <= gflops(variant.spec, with_unused=True)


def test_dla_graph_counts_and_unused_projection():
    assert round(param_count(get_spec("res2net_dla60")) / 1e6, 2) == 20.85
    assert round(param_count(get_spec("res2next_dla60")) / 1e6, 2) == 17.03
    for name in ("res2net_dla60", "res2next_dla60"):
        unused = unused_official_tensors(plan(get_spec(name)))
        assert sum(t.numel for t in unused if t.trainable) == 297_472
        assert {t.name.split(".project")[0] for t in unused} == {"level3", "level4", "level4.tree1"}


@pytest.mark.parametrize("name,published", [
    ("res2net50_26w_4s", 25.76), ("res2net101_26w_4s", 45.33),
])
def test_mindcv_counts_include_bn_statistics(name, published):
    assert abs(param_count(get_spec(name), with_bn_stats=True) / 1e6 - published) <= 0.005


def test_official_graph_flags():
    p = plan(get_spec("res2net50_26w_4s"))
    first, second = p.stages[0][0], p.stages[0][1]
    assert first.stage_block and first.pools_last_split and first.stride == 1  # layer1.0 included
    assert not second.stage_block and second.shortcut is None
    assert first.stage_pool_count_pad
    v1b = plan(get_spec("res2net50_v1b_26w_4s"))
    assert all(stage[0].shortcut == "avgpool_conv" for stage in v1b.stages)
    names = [t.name for t in canonical_layout(get_spec("res2net50_v1b_26w_4s"))]
    assert "layer1.0.downsample.1.weight" in names and "layer2.0.downsample.2.running_var" in names
    assert names[:2] == ["conv1.0.weight", "conv1.1.weight"]
    dla = canonical_layout(get_spec("res2net_dla60"))
    fc = [t for t in dla if t.name == "fc.weight"][0]
    assert fc.shape == (1000, 1024, 1, 1) and fc.role == "conv_weight"


def test_layout_roles_and_no_num_batches_tracked():
    layout = canonical_layout(get_spec("res2next50"))
    assert not any(t.name.endswith("num_batches_tracked") for t in layout)
    convs = {t.name: t for t in layout}
    assert convs["layer1.0.convs.0.weight"].shape == (32, 4, 3, 3)  # 8 groups of 4 channels
    assert convs["fc.weight"].role == "linear_weight"
    assert {t.role for t in layout if t.name.endswith("running_var")} == {"bn_var"}


def test_custom_tiny_spec():
    tiny = Res2NetSpec((1, 1), base_width=8, scale=3, num_classes=5)
    layout = canonical_layout(tiny)
    assert layout[-2].name == "fc.weight" and layout[-2].shape == (5, 512)
    assert [f.channels for f in feature_info(tiny)] == [64, 256, 512]
    assert param_count(tiny) == sum(t.numel for t in layout if t.trainable)
    with pytest.raises(ValueError, match="invalid Res2NetSpec"):
        Res2NetSpec((3, 0, 1))
    with pytest.raises(ValueError, match="dla needs six levels"):
        Res2NetSpec((1, 1), topology="dla")


def test_scale_one_has_a_single_conv_and_no_pool():
    p = plan(Res2NetSpec((1,), scale=1))
    block = p.stages[0][0]
    assert block.num_convs == 1 and not block.pools_last_split


def test_gflops_scale_with_input_size():
    spec = get_spec("res2net50_26w_4s")
    # Doubling the side multiplies every conv's output positions by 4; only the fc is fixed.
    fc = 2048 * 1000 / 1e9
    assert abs((gflops(spec, 448) - fc) / (gflops(spec, 224) - fc) - 4.0) < 0.01


def test_unknown_name_suggests():
    with pytest.raises(UnknownNameError, match="did you mean res2net50"):
        resolve_name("res2net5")


def test_res2net200_is_paddleclas_depths_and_the_published_size():
    """The only trained Res2Net-200 (the official README's SSLD row) has depths 3-12-48-3."""
    for name in ("res2net200_vd_26w_4s", "res2net200_v1b_26w_4s"):
        spec = get_spec(name)
        assert spec.depths == (3, 12, 48, 3)
        assert round(param_count(spec) / 1e6, 2) == 76.22 and abs(param_count(spec) / 1e6 - 76.21) <= 0.01
        assert abs(gflops(spec) - 15.7) <= 0.05
    ssld = {s.tag: s for s in get_variant("Res2Net200_vd_26w_4s").sources}["paddleclas-ssld"]
    assert ssld.top1 == 85.13 and ssld.url.endswith("/Res2Net200_vd_26w_4s_ssld_pretrained.pdparams")


def test_peer_graphs_are_spec_flavours():
    vd, v1b = plan(get_spec("res2net50_vd_26w_4s")), plan(get_spec("res2net50_v1b_26w_4s"))
    first_vd, first_v1b = vd.stages[0][0], v1b.stages[0][0]
    # PaddleClas: layer1.0 hierarchical and unpooled, strided blocks pool without the padding
    assert not first_vd.stage_block and not first_vd.pools_last_split
    assert first_v1b.stage_block and first_v1b.pools_last_split and first_v1b.stage_pool_count_pad
    assert vd.stages[1][0].pools_last_split and not vd.stages[1][0].stage_pool_count_pad
    # MMDetection: layer1.0 is a stage block (no hierarchical adds) that does not pool
    mmdet = plan(get_spec("res2net101_v1d_26w_4s")).stages[0][0]
    assert mmdet.stage_block and not mmdet.pools_last_split
    assert canonical_layout(get_spec("res2net50_vd_26w_4s")) == canonical_layout(get_spec("res2net50_v1b"))
