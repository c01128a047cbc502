"""Res2Net as ``jittor.Module``, built from a spec's plan.

Parameter names equal the canonical layout (Jittor uses torch's names and has no
``num_batches_tracked``). Pooling goes through ``pooling.py``, which has PyTorch's semantics
where Jittor's own layers do not; BatchNorm stores torch's running variance (``BatchNorm2d``).
"""

from __future__ import annotations

import jittor as jt
from jittor import nn

from ...spec import BN_EPS, BN_MOMENTUM, BlockPlan, ConvBN, NetworkPlan, Res2NetSpec, TreePlan
from .. import FRAMEWORKS
from .._common import model_builder, plan_outputs
from .pooling import AvgPool2d, MaxPool2d


class BatchNorm2d(nn.BatchNorm):
    """Jittor's BatchNorm with its train-mode statistics computed as torch computes them.

    Jittor 1.3 takes the batch variance in one pass, ``E[x^2] - E[x]^2``, summed in fp32, which
    cancels and accumulates rounding (measured in train mode, 64 px, batch 4: Res2Net-DLA-60's
    last stage 1.3e-4 off torch, over the parity limit; 7.8e-5 with two passes; 1.4e-5 with two
    passes summed in float64, as close as Paddle and MindSpore get), and it stores that biased
    variance in ``running_var`` where torch stores the unbiased one (n/(n-1)). Here: two passes
    summed in float64, torch's running variance; Jittor's own layer in eval mode. Statistics are per process (``sync=False``): under MPI Jittor would otherwise
    average them over the ranks, a SyncBatchNorm the other frameworks do not do unless asked."""

    def __init__(self, chs: int, *, eps: float, momentum: float, sync: bool = False):
        super().__init__(chs, eps=eps, momentum=momentum, sync=sync)
        self.unbias = FRAMEWORKS["jittor"].training.running_var == "biased"

    def execute(self, x):
        if not self.is_train:
            return super().execute(x)
        dims = [0] + list(range(2, x.ndim))
        synced = self.sync and jt.in_mpi
        mean = jt.mean(x.float64(), dims=dims, keepdims=True).float32()
        if synced:
            mean = mean.mpi_all_reduce("mean")
        centred = x - mean
        var = jt.mean((centred * centred).float64(), dims=dims, keepdims=True).float32()
        if synced:
            var = var.mpi_all_reduce("mean")
        shape = [1, -1] + [1] * (x.ndim - 2)
        out = centred / jt.sqrt(var + self.eps) * self.weight.reshape(shape) + self.bias.reshape(shape)
        count = x.numel() // x.shape[1] * (jt.world_size if synced else 1)
        batch_var = var.reshape(-1) * (count / (count - 1) if self.unbias and count > 1 else 1.0)
        self.running_mean.update(self.running_mean + (mean.reshape(-1) - self.running_mean) * self.momentum)
        self.running_var.update(self.running_var + (batch_var - self.running_var) * self.momentum)
        return out


def _bn(chs: int) -> BatchNorm2d:
    return BatchNorm2d(chs, eps=BN_EPS, momentum=FRAMEWORKS["jittor"].training.native_bn_momentum(BN_MOMENTUM))


def _conv(in_chs, out_chs, k, stride=1, groups=1, bias=False) -> nn.Conv2d:
    conv = nn.Conv2d(in_chs, out_chs, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=bias)
    jt.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class SqueezeExcite(nn.Module):
    def __init__(self, chs: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(chs, hidden, 1, bias=True)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, chs, 1, bias=True)

    def execute(self, x):
        s = x.mean(dims=(2, 3), keepdims=True)
        return x * jt.sigmoid(self.fc2(self.relu(self.fc1(s))))


def _shortcut(b: BlockPlan):
    if b.shortcut == "conv":
        return nn.Sequential(_conv(b.in_chs, b.out_chs, 1, b.stride), _bn(b.out_chs))
    if b.shortcut == "avgpool_conv":
        pool = (AvgPool2d(b.stride, b.stride, 0, ceil_mode=True, count_include_pad=False)
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
        self.convs = nn.ModuleList([_conv(b.width, b.width, 3, b.stride, b.cardinality) for _ in range(b.num_convs)])
        self.bns = nn.ModuleList([_bn(b.width) for _ in range(b.num_convs)])
        self.pool = (AvgPool2d(3, b.stride, 1, ceil_mode=False, count_include_pad=b.stage_pool_count_pad)
                     if b.pools_last_split else None)
        self.conv3 = _conv(b.width * b.scale, b.out_chs, 1)
        self.bn3 = _bn(b.out_chs)
        self.se = SqueezeExcite(b.out_chs, b.se_chs) if b.se_chs else None
        self.relu = nn.ReLU()
        self.downsample = _shortcut(b)

    def execute(self, x, shortcut=None):
        if shortcut is None:
            shortcut = self.downsample(x) if self.downsample is not None else x
        out = self.relu(self.bn1(self.conv1(x)))
        w = self.width
        splits = [out[:, i * w:(i + 1) * w] for i in range(self.scale)] if self.scale > 1 else [out]
        outs = []
        sp = splits[0]
        for i in range(len(self.convs)):
            if i > 0:
                sp = splits[i] if self.stage_block else sp + splits[i]
            sp = self.relu(self.bns[i](self.convs[i](sp)))
            outs.append(sp)
        if self.scale > 1:
            outs.append(self.pool(splits[-1]) if self.pool is not None else splits[-1])
        out = self.bn3(self.conv3(jt.concat(outs, dim=1)))
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + shortcut)


def _conv_bn_relu(items: tuple[ConvBN, ...]) -> nn.Sequential:
    layers = []
    for c in items:
        layers += [_conv(c.in_chs, c.out_chs, c.kernel, c.stride), _bn(c.out_chs), nn.ReLU()]
    return nn.Sequential(*layers)


class Root(nn.Module):
    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv = _conv(in_chs, out_chs, 1)
        self.bn = _bn(out_chs)
        self.relu = nn.ReLU()

    def execute(self, *children):
        return self.relu(self.bn(self.conv(jt.concat(list(children), dim=1))))


class Tree(nn.Module):
    def __init__(self, t: TreePlan):
        super().__init__()
        self.levels = t.levels
        self.level_root = t.level_root
        self.tree1 = Tree(t.tree1) if isinstance(t.tree1, TreePlan) else Bottle2neck(t.tree1)
        self.tree2 = Tree(t.tree2) if isinstance(t.tree2, TreePlan) else Bottle2neck(t.tree2)
        self.root = Root(t.root_dim, t.out_chs) if t.levels == 1 else None
        self.downsample = MaxPool2d(t.stride, t.stride, 0) if t.stride > 1 else None
        self.project = nn.Sequential(_conv(t.in_chs, t.out_chs, 1), _bn(t.out_chs)) if t.project else None

    def execute(self, x, children=None):
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


class _Res2NetBase(nn.Module):
    plan: NetworkPlan

    def __init__(self, spec: Res2NetSpec, features_only: bool, out_indices):
        super().__init__()
        plan_outputs(self, spec, features_only, out_indices)

    def forward_head(self, x):
        x = x.mean(dims=(2, 3), keepdims=self.plan.head_is_conv)
        return self.fc(x).reshape(x.shape[0], -1) if self.fc is not None else x.reshape(x.shape[0], -1)

    def execute(self, x):
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
        self.maxpool = MaxPool2d(3, 2, 1)
        self.stage_names = []
        for i, blocks in enumerate(p.stages):
            name = f"layer{i + 1}"
            setattr(self, name, nn.Sequential(*[Bottle2neck(b) for b in blocks]))
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
            setattr(self, f"level{i}", Tree(p.stages[i][0]))
        self.fc = nn.Conv2d(p.head_in, spec.num_classes, 1, bias=True) if self.has_head else None

    def forward_features(self, x):
        x = self.base_layer(x)
        feats = []
        for i in range(6):
            x = getattr(self, f"level{i}")(x)
            feats.append(x)
        return feats


build_model = model_builder(Res2Net, DLA)
