"""Res2Net as ``mindspore.nn.Cell``, built from a spec's plan; runs in PYNATIVE and GRAPH mode.

Cell names mirror the canonical layout; leaf names are MindSpore's own (``gamma``, ``beta``,
``moving_mean``, ``moving_variance``), mapped by ``zoo.converters.tables``. Padding is explicit
and symmetric (``pad_mode="pad"``; ``"same"`` pads asymmetrically at stride 2), every pooling
flag is written out, and BN momentum 0.9 is torch's 0.1. ``construct`` keeps to what GRAPH mode
compiles: loops over constant ranges and tuples instead of growing lists.
"""

from __future__ import annotations

from mindspore import nn, ops
from mindspore.common.initializer import HeNormal

from ...spec import BN_EPS, BN_MOMENTUM, BlockPlan, ConvBN, NetworkPlan, Res2NetSpec, TreePlan
from .. import FRAMEWORKS
from .._common import model_builder, plan_outputs


def _bn(chs: int) -> nn.BatchNorm2d:
    # MindSpore stores the unbiased batch variance, as torch does: only the momentum is mirrored
    return nn.BatchNorm2d(chs, eps=BN_EPS, momentum=FRAMEWORKS["mindspore"].training.native_bn_momentum(BN_MOMENTUM))


def _conv(in_chs, out_chs, k, stride=1, groups=1, bias=False) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, k, stride=stride, pad_mode="pad", padding=(k - 1) // 2, group=groups,
                     has_bias=bias, weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))


class SqueezeExcite(nn.Cell):
    def __init__(self, chs: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(chs, hidden, 1, has_bias=True)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, chs, 1, has_bias=True)
        self.sigmoid = nn.Sigmoid()

    def construct(self, x):
        s = x.mean(axis=(2, 3), keep_dims=True)
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(s))))


class PaddedMaxPool(nn.Cell):
    """Max pooling with explicit ``-inf`` padding (torch's semantics). ``nn.MaxPool2d`` with
    ``pad_mode="pad"`` goes through MaxPool3DWithArgmax, whose graph no longer type-checks once
    exported with a dynamic batch dimension (MindIR); a pad and a "valid" pool do."""

    def __init__(self, kernel: int, stride: int, padding: int):
        super().__init__()
        self.padding = (padding,) * 4
        self.pool = nn.MaxPool2d(kernel, stride, pad_mode="valid")

    def construct(self, x):
        return self.pool(ops.pad(x, self.padding, value=float("-inf")))


def _shortcut(b: BlockPlan):
    if b.shortcut == "conv":
        return nn.SequentialCell([_conv(b.in_chs, b.out_chs, 1, b.stride), _bn(b.out_chs)])
    if b.shortcut == "avgpool_conv":
        pool = (nn.AvgPool2d(b.stride, b.stride, pad_mode="pad", padding=0, ceil_mode=True,
                             count_include_pad=False)
                if b.stride > 1 else nn.Identity())
        return nn.SequentialCell([pool, _conv(b.in_chs, b.out_chs, 1), _bn(b.out_chs)])
    return None


class Bottle2neck(nn.Cell):
    def __init__(self, b: BlockPlan):
        super().__init__()
        self.width = b.width
        self.scale = b.scale
        # the primitive, not ops.split: the function form fails to compile with a dynamic batch
        # dimension (mindspore.export for MindIR)
        self.split = ops.Split(axis=1, output_num=b.scale)
        self.num_convs = b.num_convs
        self.stage_block = b.stage_block
        self.conv1 = _conv(b.in_chs, b.width * b.scale, 1)
        self.bn1 = _bn(b.width * b.scale)
        self.convs = nn.CellList([_conv(b.width, b.width, 3, b.stride, b.cardinality) for _ in range(b.num_convs)])
        self.bns = nn.CellList([_bn(b.width) for _ in range(b.num_convs)])
        self.has_pool = b.pools_last_split
        self.pool = (nn.AvgPool2d(3, b.stride, pad_mode="pad", padding=1, ceil_mode=False,
                                  count_include_pad=b.stage_pool_count_pad)
                     if b.pools_last_split else nn.Identity())
        self.conv3 = _conv(b.width * b.scale, b.out_chs, 1)
        self.bn3 = _bn(b.out_chs)
        self.has_se = b.se_chs > 0
        self.se = SqueezeExcite(b.out_chs, b.se_chs) if b.se_chs else nn.Identity()
        self.relu = nn.ReLU()
        self.has_downsample = b.shortcut is not None
        self.downsample = _shortcut(b) if b.shortcut is not None else nn.Identity()

    def construct(self, x, shortcut=None):
        if shortcut is None:
            shortcut = self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        splits = self.split(out)
        sp = splits[0]
        outs = ()
        for i in range(self.num_convs):
            if i > 0:
                sp = splits[i] if self.stage_block else sp + splits[i]
            sp = self.relu(self.bns[i](self.convs[i](sp)))
            outs = outs + (sp,)
        if self.scale > 1:
            outs = outs + (self.pool(splits[self.scale - 1]),)
        out = self.bn3(self.conv3(ops.cat(outs, axis=1)))
        out = self.se(out)
        return self.relu(out + shortcut)


def _conv_bn_relu(items: tuple[ConvBN, ...]) -> nn.SequentialCell:
    layers = []
    for c in items:
        layers += [_conv(c.in_chs, c.out_chs, c.kernel, c.stride), _bn(c.out_chs), nn.ReLU()]
    return nn.SequentialCell(layers)


class Root(nn.Cell):
    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv = _conv(in_chs, out_chs, 1)
        self.bn = _bn(out_chs)
        self.relu = nn.ReLU()

    def construct(self, children):
        return self.relu(self.bn(self.conv(ops.cat(children, axis=1))))


class Tree(nn.Cell):
    def __init__(self, t: TreePlan):
        super().__init__()
        self.levels = t.levels
        self.level_root = t.level_root
        self.tree1 = Tree(t.tree1) if isinstance(t.tree1, TreePlan) else Bottle2neck(t.tree1)
        self.tree2 = Tree(t.tree2) if isinstance(t.tree2, TreePlan) else Bottle2neck(t.tree2)
        if t.levels == 1:
            self.root = Root(t.root_dim, t.out_chs)
        self.downsample = (nn.MaxPool2d(t.stride, t.stride, pad_mode="valid")
                           if t.stride > 1 else nn.Identity())
        self.has_project = t.project
        if t.project:
            self.project = nn.SequentialCell([_conv(t.in_chs, t.out_chs, 1), _bn(t.out_chs)])

    def construct(self, x, children=()):
        bottom = x
        if self.levels == 1 or self.level_root:
            bottom = self.downsample(x)
            if self.level_root:
                children = children + (bottom,)
        if self.levels == 1:
            shortcut = self.project(bottom) if self.has_project else bottom
            x1 = self.tree1(x, shortcut)
            return self.root((self.tree2(x1), x1) + children)
        x1 = self.tree1(x)
        return self.tree2(x1, children + (x1,))


class _Res2NetBase(nn.Cell):
    plan: NetworkPlan

    def __init__(self, spec: Res2NetSpec, features_only: bool, out_indices):
        super().__init__()
        plan_outputs(self, spec, features_only, out_indices)

    def forward_head(self, x):
        x = x.mean(axis=(2, 3), keep_dims=self.head_is_conv)
        if self.has_head:
            x = self.fc(x)
        # flatten, not reshape(x.shape[0], -1): the batch dimension may be dynamic (MindIR export)
        return ops.flatten(x, start_dim=1)

    def construct(self, x):
        feats = self.forward_features(x)
        if self.features_only:
            return tuple(feats[i] for i in self.out_indices)
        return self.forward_head(feats[len(feats) - 1])


class Res2Net(_Res2NetBase):
    def __init__(self, spec: Res2NetSpec, *, features_only: bool = False, out_indices=None):
        super().__init__(spec, features_only, out_indices)
        p = self.plan
        if spec.stem == "deep":
            a, b, c = p.stem
            self.conv1 = nn.SequentialCell([
                _conv(a.in_chs, a.out_chs, 3, a.stride), _bn(a.out_chs), nn.ReLU(),
                _conv(b.in_chs, b.out_chs, 3, b.stride), _bn(b.out_chs), nn.ReLU(),
                _conv(c.in_chs, c.out_chs, 3, c.stride),
            ])
        else:
            (c,) = p.stem
            self.conv1 = _conv(c.in_chs, c.out_chs, c.kernel, c.stride)
        self.bn1 = _bn(spec.stem_width)
        self.relu = nn.ReLU()
        self.maxpool = PaddedMaxPool(3, 2, 1)
        self.num_stages = len(p.stages)
        for i, blocks in enumerate(p.stages):
            setattr(self, f"layer{i + 1}", nn.SequentialCell([Bottle2neck(b) for b in blocks]))
        self.stages = [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]
        if self.has_head:
            self.fc = nn.Dense(p.head_in, spec.num_classes)

    def forward_features(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        feats = (x,)
        x = self.maxpool(x)
        for stage in self.stages:
            x = stage(x)
            feats = feats + (x,)
        return feats


class DLA(_Res2NetBase):
    def __init__(self, spec: Res2NetSpec, *, features_only: bool = False, out_indices=None):
        super().__init__(spec, features_only, out_indices)
        p = self.plan
        self.base_layer = _conv_bn_relu(p.stem)
        self.level0 = _conv_bn_relu(p.stages[0])
        self.level1 = _conv_bn_relu(p.stages[1])
        self.level2 = Tree(p.stages[2][0])
        self.level3 = Tree(p.stages[3][0])
        self.level4 = Tree(p.stages[4][0])
        self.level5 = Tree(p.stages[5][0])
        if self.has_head:
            self.fc = nn.Conv2d(p.head_in, spec.num_classes, 1, has_bias=True)

    def forward_features(self, x):
        x = self.base_layer(x)
        l0 = self.level0(x)
        l1 = self.level1(l0)
        l2 = self.level2(l1)
        l3 = self.level3(l2)
        l4 = self.level4(l3)
        return (l0, l1, l2, l3, l4, self.level5(l4))


build_model = model_builder(Res2Net, DLA)
