"""Res2Net as ``torch.nn.Module``, built from a spec's plan.

Module names and registration order are the official release's, so ``state_dict()`` equals the
canonical layout (plus ``num_batches_tracked``) and official/timm checkpoints load strictly.
Every pooling flag is written out: the official weights depend on them.
"""

from __future__ import annotations

import torch
from torch import nn

from .._common import model_builder, plan_outputs
from ...spec import BN_EPS, BN_MOMENTUM, BlockPlan, ConvBN, NetworkPlan, Res2NetSpec, TreePlan


def _bn(chs: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(chs, eps=BN_EPS, momentum=BN_MOMENTUM)


def _conv(in_chs: int, out_chs: int, k: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=bias)


class SqueezeExcite(nn.Module):
    def __init__(self, chs: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(chs, hidden, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, chs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(s))))


def _shortcut(b: BlockPlan) -> nn.Module | None:
    if b.shortcut == "conv":
        return nn.Sequential(_conv(b.in_chs, b.out_chs, 1, b.stride), _bn(b.out_chs))
    if b.shortcut == "avgpool_conv":
        # v1b: average, excluding padding, over stride x stride windows, partial windows kept.
        # At stride 1 the official AvgPool2d(1, 1) is the identity; index 0 stays a module.
        pool = (nn.AvgPool2d(b.stride, b.stride, padding=0, ceil_mode=True, count_include_pad=False)
                if b.stride > 1 else nn.Identity())
        return nn.Sequential(pool, _conv(b.in_chs, b.out_chs, 1), _bn(b.out_chs))
    return None


class Bottle2neck(nn.Module):
    def __init__(self, b: BlockPlan):
        super().__init__()
        self.width = b.width
        self.scale = b.scale
        self.stage_block = b.stage_block
        self.conv1 = _conv(b.in_chs, b.width * b.scale, 1)
        self.bn1 = _bn(b.width * b.scale)
        self.convs = nn.ModuleList(_conv(b.width, b.width, 3, b.stride, b.cardinality) for _ in range(b.num_convs))
        self.bns = nn.ModuleList(_bn(b.width) for _ in range(b.num_convs))
        # The official weights were trained with the padding counted, also at stride 1.
        self.pool = (nn.AvgPool2d(3, b.stride, padding=1, ceil_mode=False,
                                  count_include_pad=b.stage_pool_count_pad)
                     if b.pools_last_split else None)
        self.conv3 = _conv(b.width * b.scale, b.out_chs, 1)
        self.bn3 = _bn(b.out_chs)
        self.se = SqueezeExcite(b.out_chs, b.se_chs) if b.se_chs else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(b)

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor | None = None) -> torch.Tensor:
        if shortcut is None:
            shortcut = self.downsample(x) if self.downsample is not None else x
        out = self.relu(self.bn1(self.conv1(x)))
        splits = torch.split(out, self.width, 1)
        outs = []
        sp = splits[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i > 0:
                sp = splits[i] if self.stage_block else sp + splits[i]
            sp = self.relu(bn(conv(sp)))
            outs.append(sp)
        if self.scale > 1:
            outs.append(self.pool(splits[-1]) if self.pool is not None else splits[-1])
        out = self.bn3(self.conv3(torch.cat(outs, 1)))
        if self.se is not None:
            out = self.se(out)
        out += shortcut  # in place: out is this block's own fresh tensor (saves an allocation)
        return self.relu(out)


def _conv_bn_relu(items: tuple[ConvBN, ...]) -> nn.Sequential:
    layers = []
    for c in items:
        layers += [_conv(c.in_chs, c.out_chs, c.kernel, c.stride), _bn(c.out_chs), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Root(nn.Module):
    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv = _conv(in_chs, out_chs, 1)
        self.bn = _bn(out_chs)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, *children: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(torch.cat(children, 1))))


class Tree(nn.Module):
    """Official dla.py ``Tree``; the projections it builds but never uses are not built."""

    def __init__(self, t: TreePlan):
        super().__init__()
        self.levels = t.levels
        self.level_root = t.level_root
        self.tree1 = Tree(t.tree1) if isinstance(t.tree1, TreePlan) else Bottle2neck(t.tree1)
        self.tree2 = Tree(t.tree2) if isinstance(t.tree2, TreePlan) else Bottle2neck(t.tree2)
        self.root = Root(t.root_dim, t.out_chs) if t.levels == 1 else None
        self.downsample = nn.MaxPool2d(t.stride, t.stride, padding=0, ceil_mode=False) if t.stride > 1 else None
        self.project = nn.Sequential(_conv(t.in_chs, t.out_chs, 1), _bn(t.out_chs)) if t.project else None

    def forward(self, x: torch.Tensor, children: list | None = None) -> torch.Tensor:
        children = [] if children is None else children
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


class _Res2NetBase(nn.Module):
    plan: NetworkPlan

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def __init__(self, spec: Res2NetSpec, features_only: bool, out_indices):
        super().__init__()
        plan_outputs(self, spec, features_only, out_indices)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean((2, 3), keepdim=self.plan.head_is_conv)
        return self.fc(x).flatten(1) if self.fc is not None else x.flatten(1)

    def forward(self, x: torch.Tensor):
        feats = self.forward_features(x)
        if self.features_only:
            return [feats[i] for i in self.out_indices]
        return self.forward_head(feats[-1])


class Res2Net(_Res2NetBase):
    """ResNet-trunk Res2Net / Res2NeXt / v1b / SE-Res2Net."""

    def __init__(self, spec: Res2NetSpec, *, features_only: bool = False, out_indices=None):
        super().__init__(spec, features_only, out_indices)
        p = self.plan
        if spec.stem == "deep":
            a, b, c = p.stem
            self.conv1 = nn.Sequential(
                _conv(a.in_chs, a.out_chs, 3, a.stride), _bn(a.out_chs), nn.ReLU(inplace=True),
                _conv(b.in_chs, b.out_chs, 3, b.stride), _bn(b.out_chs), nn.ReLU(inplace=True),
                _conv(c.in_chs, c.out_chs, 3, c.stride),
            )
        else:
            (c,) = p.stem
            self.conv1 = _conv(c.in_chs, c.out_chs, c.kernel, c.stride)
        self.bn1 = _bn(spec.stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=False)
        self.stage_names = []
        for i, blocks in enumerate(p.stages):
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*(Bottle2neck(b) for b in blocks)))
            self.stage_names.append(name)
        self.fc = nn.Linear(p.head_in, spec.num_classes) if self.has_head else None
        self._init_weights()

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        feats = [x]
        x = self.maxpool(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            feats.append(x)
        return feats


class DLA(_Res2NetBase):
    """Res2Net-DLA / Res2NeXt-DLA (official dla.py topology, classifier a 1x1 conv)."""

    def __init__(self, spec: Res2NetSpec, *, features_only: bool = False, out_indices=None):
        super().__init__(spec, features_only, out_indices)
        p = self.plan
        self.base_layer = _conv_bn_relu(p.stem)
        self.level0 = _conv_bn_relu(p.stages[0])
        self.level1 = _conv_bn_relu(p.stages[1])
        for i in range(2, 6):
            self.add_module(f"level{i}", Tree(p.stages[i][0]))
        self.fc = nn.Conv2d(p.head_in, spec.num_classes, 1, bias=True) if self.has_head else None
        self._init_weights()

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.base_layer(x)
        feats = []
        for i in range(6):
            x = getattr(self, f"level{i}")(x)
            feats.append(x)
        return feats


build_model = model_builder(Res2Net, DLA)
