"""Res2Net as ``paddle.nn.Layer``, built from a spec's plan.

Sublayer names mirror the canonical layout; leaf names are Paddle's own (``_mean``,
``_variance``) and ``Linear`` weights are ``[in, out]``: the rename table in
``zoo.converters.tables`` maps them. Every pooling flag is explicit: Paddle's
``AvgPool2D`` *excludes* the padding by default (``exclusive=True``) where the official weights
were trained with it counted. BatchNorm trains as torch's does: Paddle's momentum 0.9 is torch's
0.1, and the running variance holds the unbiased batch variance (see ``BatchNorm2D``).
"""

from __future__ import annotations

import paddle
from paddle import nn

from ...spec import BN_EPS, BN_MOMENTUM, BlockPlan, ConvBN, NetworkPlan, Res2NetSpec, TreePlan
from ...training import unbiased_running_var
from .. import FRAMEWORKS
from .._common import model_builder, plan_outputs


class BatchNorm2D(nn.BatchNorm2D):
    """Paddle's BatchNorm, storing the running variance torch stores.

    Paddle 3.3 updates ``_variance`` with the biased batch variance where torch uses the unbiased
    one (n/(n-1)); a model fine-tuned in Paddle would then drift from the same model trained in
    torch by 1/(n-1) of the batch variance per step (6.7% at batch 16 on a 1x1 map). The kernel's
    own update is kept and corrected in place, exactly, from the value it stored."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stores_biased = FRAMEWORKS["paddle"].training.running_var == "biased"

    def forward(self, x):
        if not self.training or self._use_global_stats or not self._stores_biased:
            return super().forward(x)
        old = self._variance.detach().clone()
        out = super().forward(x)
        count = x.numel() // x.shape[1]
        if count > 1:
            with paddle.no_grad():
                self._variance.set_value(unbiased_running_var(self._variance, old, self._momentum, int(count)))
        return out


def _bn(chs: int) -> BatchNorm2D:
    momentum = FRAMEWORKS["paddle"].training.native_bn_momentum(BN_MOMENTUM)
    return BatchNorm2D(chs, momentum=momentum, epsilon=BN_EPS)


def _conv(in_chs, out_chs, k, stride=1, groups=1, bias=False) -> nn.Conv2D:
    # torch's kaiming_normal_(mode="fan_out") for training from scratch.
    init = nn.initializer.KaimingNormal(fan_in=out_chs * k * k, nonlinearity="relu")
    return nn.Conv2D(in_chs, out_chs, k, stride=stride, padding=(k - 1) // 2, groups=groups,
                     weight_attr=paddle.ParamAttr(initializer=init), bias_attr=None if bias else False)


class SqueezeExcite(nn.Layer):
    def __init__(self, chs: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2D(chs, hidden, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2D(hidden, chs, 1)

    def forward(self, x):
        s = x.mean(axis=[2, 3], keepdim=True)
        return x * nn.functional.sigmoid(self.fc2(self.relu(self.fc1(s))))


def _shortcut(b: BlockPlan):
    if b.shortcut == "conv":
        return nn.Sequential(_conv(b.in_chs, b.out_chs, 1, b.stride), _bn(b.out_chs))
    if b.shortcut == "avgpool_conv":
        pool = (nn.AvgPool2D(b.stride, b.stride, padding=0, ceil_mode=True, exclusive=True)
                if b.stride > 1 else nn.Identity())
        return nn.Sequential(pool, _conv(b.in_chs, b.out_chs, 1), _bn(b.out_chs))
    return None


class Bottle2neck(nn.Layer):
    def __init__(self, b: BlockPlan):
        super().__init__()
        self.scale = b.scale
        self.stage_block = b.stage_block
        self.conv1 = _conv(b.in_chs, b.width * b.scale, 1)
        self.bn1 = _bn(b.width * b.scale)
        self.convs = nn.LayerList([_conv(b.width, b.width, 3, b.stride, b.cardinality) for _ in range(b.num_convs)])
        self.bns = nn.LayerList([_bn(b.width) for _ in range(b.num_convs)])
        self.pool = (nn.AvgPool2D(3, b.stride, padding=1, ceil_mode=False,
                                  exclusive=not b.stage_pool_count_pad)
                     if b.pools_last_split else None)
        self.conv3 = _conv(b.width * b.scale, b.out_chs, 1)
        self.bn3 = _bn(b.out_chs)
        self.se = SqueezeExcite(b.out_chs, b.se_chs) if b.se_chs else None
        self.relu = nn.ReLU()
        self.downsample = _shortcut(b)

    def forward(self, x, shortcut=None):
        if shortcut is None:
            shortcut = self.downsample(x) if self.downsample is not None else x
        out = self.relu(self.bn1(self.conv1(x)))
        splits = paddle.split(out, self.scale, axis=1) if self.scale > 1 else [out]
        outs = []
        sp = splits[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i > 0:
                sp = splits[i] if self.stage_block else sp + splits[i]
            sp = self.relu(bn(conv(sp)))
            outs.append(sp)
        if self.scale > 1:
            outs.append(self.pool(splits[-1]) if self.pool is not None else splits[-1])
        out = self.bn3(self.conv3(paddle.concat(outs, axis=1)))
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + shortcut)


def _conv_bn_relu(items: tuple[ConvBN, ...]) -> nn.Sequential:
    layers = []
    for c in items:
        layers += [_conv(c.in_chs, c.out_chs, c.kernel, c.stride), _bn(c.out_chs), nn.ReLU()]
    return nn.Sequential(*layers)


class Root(nn.Layer):
    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv = _conv(in_chs, out_chs, 1)
        self.bn = _bn(out_chs)
        self.relu = nn.ReLU()

    def forward(self, *children):
        return self.relu(self.bn(self.conv(paddle.concat(list(children), axis=1))))


class Tree(nn.Layer):
    def __init__(self, t: TreePlan):
        super().__init__()
        self.levels = t.levels
        self.level_root = t.level_root
        self.tree1 = Tree(t.tree1) if isinstance(t.tree1, TreePlan) else Bottle2neck(t.tree1)
        self.tree2 = Tree(t.tree2) if isinstance(t.tree2, TreePlan) else Bottle2neck(t.tree2)
        self.root = Root(t.root_dim, t.out_chs) if t.levels == 1 else None
        self.downsample = nn.MaxPool2D(t.stride, t.stride, padding=0, ceil_mode=False) if t.stride > 1 else None
        self.project = nn.Sequential(_conv(t.in_chs, t.out_chs, 1), _bn(t.out_chs)) if t.project else None

    def forward(self, x, children=None):
        children = [] if children is None else children
        bottom = x
        if self.levels == 1 or self.level_root:
            bottom = self.downsample(x) if self.downsample is not None else x
            if self.level_root:
                children.append(bottom)
        if self.levels == 1:
            x1 = self.tree1(x, self.project(bottom) if self.project is not None else bottom)
            return self.root(self.tree2(x1), x1, *children)
        x1 = self.tree1(x)
        children.append(x1)
        return self.tree2(x1, children=children)


class _Res2NetBase(nn.Layer):
    plan: NetworkPlan

    def __init__(self, spec: Res2NetSpec, features_only: bool, out_indices):
        super().__init__()
        plan_outputs(self, spec, features_only, out_indices)

    def forward_head(self, x):
        x = x.mean(axis=[2, 3], keepdim=self.plan.head_is_conv)
        return self.fc(x).flatten(1) if self.fc is not None else x.flatten(1)

    def forward(self, x):
        feats = self.forward_features(x)
        if self.features_only:
            return [feats[i] for i in self.out_indices]
        return self.forward_head(feats[-1])


class Res2Net(_Res2NetBase):
    def __init__(self, spec: Res2NetSpec, *, features_only: bool = False, out_indices=None):
        super().__init__(spec, features_only, out_indices)
        p = self.plan
        if spec.stem == "deep":
            a, b, c = p.stem
            self.conv1 = nn.Sequential(
                _conv(a.in_chs, a.out_chs, 3, a.stride), _bn(a.out_chs), nn.ReLU(),
                _conv(b.in_chs, b.out_chs, 3, b.stride), _bn(b.out_chs), nn.ReLU(),
                _conv(c.in_chs, c.out_chs, 3, c.stride),
            )
        else:
            (c,) = p.stem
            self.conv1 = _conv(c.in_chs, c.out_chs, c.kernel, c.stride)
        self.bn1 = _bn(spec.stem_width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2D(3, 2, padding=1, ceil_mode=False)
        self.stage_names = []
        for i, blocks in enumerate(p.stages):
            name = f"layer{i + 1}"
            self.add_sublayer(name, nn.Sequential(*[Bottle2neck(b) for b in blocks]))
            self.stage_names.append(name)
        self.fc = nn.Linear(p.head_in, spec.num_classes) if self.has_head else None

    def forward_features(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        feats = [x]
        x = self.maxpool(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            feats.append(x)
        return feats


class DLA(_Res2NetBase):
    def __init__(self, spec: Res2NetSpec, *, features_only: bool = False, out_indices=None):
        super().__init__(spec, features_only, out_indices)
        p = self.plan
        self.base_layer = _conv_bn_relu(p.stem)
        self.level0 = _conv_bn_relu(p.stages[0])
        self.level1 = _conv_bn_relu(p.stages[1])
        for i in range(2, 6):
            self.add_sublayer(f"level{i}", Tree(p.stages[i][0]))
        self.fc = nn.Conv2D(p.head_in, spec.num_classes, 1) if self.has_head else None

    def forward_features(self, x):
        x = self.base_layer(x)
        feats = []
        for i in range(6):
            x = getattr(self, f"level{i}")(x)
            feats.append(x)
        return feats


build_model = model_builder(Res2Net, DLA)
