"""Everything read off a plan without a framework: the canonical parameter layout, parameter
counts and multiply-adds.

The canonical layout is the official release's state dict: PyTorch names, PyTorch tensor
layouts (conv ``[out, in/groups, kh, kw]``, linear ``[out, in]``), in the order the official
code registers its modules, without ``num_batches_tracked``. Each tensor carries a *role* so
that the per-framework rename/layout tables can be written once per role.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

from .model import BlockPlan, ConvBN, NetworkPlan, TreePlan

TRAINABLE_ROLES = frozenset({"conv_weight", "conv_bias", "linear_weight", "linear_bias", "bn_weight", "bn_bias"})
BN_STAT_ROLES = frozenset({"bn_mean", "bn_var"})


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    role: str

    @property
    def trainable(self) -> bool:
        return self.role in TRAINABLE_ROLES

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _conv(name: str, out_chs: int, in_chs: int, k: int, groups: int = 1, bias: bool = False):
    yield TensorSpec(f"{name}.weight", (out_chs, in_chs // groups, k, k), "conv_weight")
    if bias:
        yield TensorSpec(f"{name}.bias", (out_chs,), "conv_bias")


def _bn(name: str, chs: int):
    yield TensorSpec(f"{name}.weight", (chs,), "bn_weight")
    yield TensorSpec(f"{name}.bias", (chs,), "bn_bias")
    yield TensorSpec(f"{name}.running_mean", (chs,), "bn_mean")
    yield TensorSpec(f"{name}.running_var", (chs,), "bn_var")


def _convbn(c: ConvBN):
    yield from _conv(c.conv, c.out_chs, c.in_chs, c.kernel)
    yield from _bn(c.bn, c.out_chs)


def _block(b: BlockPlan):
    p = b.prefix
    yield from _conv(f"{p}.conv1", b.width * b.scale, b.in_chs, 1)
    yield from _bn(f"{p}.bn1", b.width * b.scale)
    for i in range(b.num_convs):
        yield from _conv(f"{p}.convs.{i}", b.width, b.width, 3, groups=b.cardinality)
    for i in range(b.num_convs):
        yield from _bn(f"{p}.bns.{i}", b.width)
    yield from _conv(f"{p}.conv3", b.out_chs, b.width * b.scale, 1)
    yield from _bn(f"{p}.bn3", b.out_chs)
    if b.se_chs:
        yield from _conv(f"{p}.se.fc1", b.se_chs, b.out_chs, 1, bias=True)
        yield from _conv(f"{p}.se.fc2", b.out_chs, b.se_chs, 1, bias=True)
    if b.shortcut == "conv":
        yield from _conv(f"{p}.downsample.0", b.out_chs, b.in_chs, 1)
        yield from _bn(f"{p}.downsample.1", b.out_chs)
    elif b.shortcut == "avgpool_conv":  # index 0 is the pool, also where it is a 1x1 no-op
        yield from _conv(f"{p}.downsample.1", b.out_chs, b.in_chs, 1)
        yield from _bn(f"{p}.downsample.2", b.out_chs)


def _project(t: TreePlan):
    yield from _conv(f"{t.prefix}.project.0", t.out_chs, t.in_chs, 1)
    yield from _bn(f"{t.prefix}.project.1", t.out_chs)


def _tree(t: TreePlan, with_unused: bool):
    for child in (t.tree1, t.tree2):
        yield from (_tree(child, with_unused) if isinstance(child, TreePlan) else _block(child))
    if t.levels == 1:
        yield from _conv(f"{t.prefix}.root.conv", t.out_chs, t.root_dim, 1)
        yield from _bn(f"{t.prefix}.root.bn", t.out_chs)
    if t.project or (with_unused and t.unused_project):
        yield from _project(t)


def _stage(stage: tuple, with_unused: bool):
    for item in stage:
        if isinstance(item, ConvBN):
            yield from _convbn(item)
        elif isinstance(item, TreePlan):
            yield from _tree(item, with_unused)
        else:
            yield from _block(item)


def _head(plan: NetworkPlan):
    n = plan.spec.num_classes
    if n == 0:
        return
    if plan.head_is_conv:
        yield from _conv("fc", n, plan.head_in, 1, bias=True)
    else:
        yield TensorSpec("fc.weight", (n, plan.head_in), "linear_weight")
        yield TensorSpec("fc.bias", (n,), "linear_bias")


def iter_layout(plan: NetworkPlan, *, head: bool = True, stages: int | None = None,
                with_unused: bool = False) -> Iterator[TensorSpec]:
    for c in plan.stem:
        yield from _convbn(c)
    kept = plan.stages if stages is None else plan.stages[:stages]
    for stage in kept:
        yield from _stage(stage, with_unused)
    if head and stages is None:
        yield from _head(plan)


def unused_official_tensors(plan: NetworkPlan) -> list[TensorSpec]:
    """Tensors the official checkpoints carry that the forward pass never reads (DLA)."""
    used = {t.name for t in iter_layout(plan)}
    return [t for t in iter_layout(plan, with_unused=True) if t.name not in used]


# ---------------------------------------------------------------------------------------------
# Multiply-adds. Counted as the published tables do: convolutions and the classifier.


def window_output_size(size: int, k: int, stride: int, pad: int, ceil_mode: bool = False) -> int:
    """Output length of a conv or pool window along one axis, with torch's ceil-mode rule."""
    span = size + 2 * pad - k
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:  # torch: last window must start inside
        out -= 1
    return out


class _MacCounter:
    def __init__(self, with_unused: bool) -> None:
        self.macs = 0
        self.with_unused = with_unused

    def conv(self, hw, in_chs, out_chs, k, stride=1, groups=1, pad=None):
        pad = (k - 1) // 2 if pad is None else pad
        h, w = (window_output_size(s, k, stride, pad) for s in hw)
        self.macs += h * w * out_chs * (in_chs // groups) * k * k
        return h, w

    def block(self, b: BlockPlan, hw, shortcut_hw=None):
        self.conv(hw, b.in_chs, b.width * b.scale, 1)
        out_hw = hw
        for _ in range(b.num_convs):
            out_hw = self.conv(hw, b.width, b.width, 3, b.stride, b.cardinality)
        self.conv(out_hw, b.width * b.scale, b.out_chs, 1)
        if b.se_chs:
            self.macs += 2 * b.out_chs * b.se_chs
        if b.shortcut == "conv":
            self.conv(hw, b.in_chs, b.out_chs, 1, b.stride)
        elif b.shortcut == "avgpool_conv":
            pooled = tuple(window_output_size(s, b.stride, b.stride, 0, ceil_mode=True) for s in hw)
            self.conv(pooled, b.in_chs, b.out_chs, 1)
        return out_hw

    def tree(self, t: TreePlan, hw):
        bottom = tuple(window_output_size(s, t.stride, t.stride, 0) for s in hw) if t.stride > 1 else hw
        # The official dla.py computes the unused projections too (and discards them).
        if t.project or (self.with_unused and t.unused_project):
            self.conv(bottom, t.in_chs, t.out_chs, 1)
        run = self.tree if isinstance(t.tree1, TreePlan) else self.block
        x1 = run(t.tree1, hw)
        run = self.tree if isinstance(t.tree2, TreePlan) else self.block
        x2 = run(t.tree2, x1)
        if t.levels == 1:
            self.conv(x2, t.root_dim, t.out_chs, 1)
        return x2


def count_macs(plan: NetworkPlan, image_size: int | tuple[int, int] = 224, *,
               with_unused: bool = False) -> int:
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    counter = _MacCounter(with_unused)
    for c in plan.stem:
        hw = counter.conv(hw, c.in_chs, c.out_chs, c.kernel, c.stride)
    if plan.stem_pool:
        hw = tuple(window_output_size(s, 3, 2, 1) for s in hw)
    for stage in plan.stages:
        for item in stage:
            if isinstance(item, ConvBN):
                hw = counter.conv(hw, item.in_chs, item.out_chs, item.kernel, item.stride)
            elif isinstance(item, TreePlan):
                hw = counter.tree(item, hw)
            else:
                hw = counter.block(item, hw)
    counter.macs += plan.head_in * plan.spec.num_classes
    return counter.macs
