"""The Res2Net hyperparameters and the structural plan derived from them.

A :class:`Res2NetSpec` is a handful of numbers; :meth:`Res2NetSpec.plan` expands them into
the exact graph of the official release (Res2Net-PretrainedModels, reproduced by timm): every
block with its channels, stride and pooling flags, in the order the official code registers
its modules. The framework modules build native models from that plan and nothing else, and the
canonical parameter layout and the FLOP count are read off the same plan, so they cannot drift
apart.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal, Union

Stem = Literal["conv7", "deep"]
Shortcut = Literal["conv", "avgpool_conv"]
StageBlocks = Literal["first", "strided"]
Topology = Literal["resnet", "dla"]

BN_EPS = 1e-5
# torch convention: running = (1 - m) * running + m * batch. MindSpore/Paddle write 1 - m.
BN_MOMENTUM = 0.1
RESNET_EXPANSION = 4
DLA_EXPANSION = 2
SE_REDUCTION = 16


@dataclass(frozen=True)
class Res2NetSpec:
    """Hyperparameters of one Res2Net network.

    depths: blocks per stage (``resnet``) or the six DLA levels (``dla``).
    base_width: the paper's ``w``; scale: the paper's ``s``; cardinality: the paper's ``c``.
    stem: ``conv7`` (one 7x7/2 conv) or ``deep`` (3x3 convs 32-32-64, v1b).
    shortcut: ``conv`` (strided 1x1 conv + BN) or ``avgpool_conv`` (v1b: AvgPool2d(stride,
        stride, ceil_mode=True, count_include_pad=False), then 1x1 conv + BN).
    stage_blocks: which blocks are "stage" blocks (no hierarchical adds, last split pooled):
        ``first`` = the first block of every stage, layer1.0 included (official release);
        ``strided`` = only blocks with stride > 1 (PaddleClas' reading of the paper).
    stage_pool_count_pad: the stage pool is AvgPool2d(3, stride, padding=1); the official
        weights were trained with the padding counted (PaddleClas' without).
    stage_pool_stride1: whether a stage block of stride 1 (layer1.0) pools its last split; the
        official code does (a 3x3 pool of stride 1), MMDetection's Res2Net does not.
    se: the paper's SE-Res2Net, SE right before the residual add.
    channels: DLA only, channels of the six levels.
    """

    depths: tuple[int, ...]
    base_width: int = 26
    scale: int = 4
    cardinality: int = 1
    stem: Stem = "conv7"
    shortcut: Shortcut = "conv"
    stage_blocks: StageBlocks = "first"
    stage_pool_count_pad: bool = True
    stage_pool_stride1: bool = True
    se: bool = False
    topology: Topology = "resnet"
    channels: tuple[int, ...] = ()
    stem_width: int = 64
    num_classes: int = 1000
    in_chans: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        problems = []
        if self.topology == "resnet":
            if not self.depths or any(d < 1 for d in self.depths):
                problems.append(f"depths must be positive block counts, got {self.depths}")
            if self.channels:
                problems.append("channels applies to the dla topology only")
        elif self.topology == "dla":
            if len(self.depths) != 6 or len(self.channels) != 6:
                problems.append("dla needs six levels and six channel counts")
            elif any(d < 1 for d in self.depths):
                problems.append(f"dla levels must be >= 1, got {self.depths}")
        else:
            problems.append(f"unknown topology {self.topology!r}")
        if self.scale < 1 or self.cardinality < 1 or self.base_width < 1:
            problems.append("scale, cardinality and base_width must be >= 1")
        if self.stem not in ("conv7", "deep"):
            problems.append(f"unknown stem {self.stem!r}")
        if self.shortcut not in ("conv", "avgpool_conv"):
            problems.append(f"unknown shortcut {self.shortcut!r}")
        if self.stage_blocks not in ("first", "strided"):
            problems.append(f"unknown stage_blocks rule {self.stage_blocks!r}")
        if self.num_classes < 0 or self.in_chans < 1:
            problems.append("num_classes must be >= 0 and in_chans >= 1")
        if problems:
            raise ValueError("invalid Res2NetSpec: " + "; ".join(problems))

    def replace(self, **changes) -> "Res2NetSpec":
        return replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Res2NetSpec":
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid Res2NetSpec JSON: {exc}") from exc

    def plan(self) -> "NetworkPlan":
        return _plan_dla(self) if self.topology == "dla" else _plan_resnet(self)


# ---------------------------------------------------------------------------------------------
# The plan: what every framework builds. Prefixes are the canonical (official) module paths.


@dataclass(frozen=True)
class ConvBN:
    """A bias-free conv followed by BatchNorm, named ``conv``/``bn`` (or ``prefix.i``)."""

    conv: str
    bn: str
    in_chs: int
    out_chs: int
    kernel: int
    stride: int
    relu: bool = True


@dataclass(frozen=True)
class BlockPlan:
    """One Bottle2neck. ``shortcut`` None means the residual is the input (or, in DLA, given by
    the enclosing tree)."""

    prefix: str
    in_chs: int
    out_chs: int
    width: int
    scale: int
    cardinality: int
    stride: int
    stage_block: bool
    stage_pool_count_pad: bool
    shortcut: Shortcut | None
    se_chs: int = 0
    stage_pool_stride1: bool = True

    @property
    def num_convs(self) -> int:
        return max(1, self.scale - 1)

    @property
    def pools_last_split(self) -> bool:
        return self.stage_block and self.scale > 1 and (self.stride > 1 or self.stage_pool_stride1)


@dataclass(frozen=True)
class TreePlan:
    """One DLA aggregation tree (official dla.py ``Tree``)."""

    prefix: str
    levels: int
    in_chs: int
    out_chs: int
    stride: int
    level_root: bool
    root_dim: int
    tree1: Union[BlockPlan, "TreePlan"]
    tree2: Union[BlockPlan, "TreePlan"]
    # levels == 1 and in != out: the projection feeds tree1's residual.
    project: bool
    # levels > 1 and in != out: the official code builds a projection whose output it never
    # reads; its checkpoints carry those weights, the graph does not.
    unused_project: bool


@dataclass(frozen=True)
class FeatureInfo:
    module: str
    channels: int
    reduction: int


@dataclass(frozen=True)
class Outputs:
    """What a built model returns: logits, or the feature levels ``indices``."""

    features_only: bool
    indices: tuple[int, ...]
    info: tuple[FeatureInfo, ...]
    has_head: bool


@dataclass(frozen=True)
class NetworkPlan:
    spec: Res2NetSpec
    stem: tuple[ConvBN, ...]          # resnet: conv1/bn1 or the deep stem; dla: base_layer
    stem_pool: bool                    # resnet: MaxPool2d(3, 2, padding=1) after the stem
    stages: tuple[tuple, ...]          # resnet: blocks per layer; dla: level0/1 ConvBNs, trees
    head_in: int
    head_is_conv: bool                 # DLA's classifier is a 1x1 conv named fc
    features: tuple[FeatureInfo, ...]
    default_out_indices: tuple[int, ...] = field(default=())

    def outputs(self, features_only: bool = False, out_indices=None) -> Outputs:
        n = len(self.features)
        indices = tuple(out_indices) if out_indices is not None else self.default_out_indices
        if any(not -n <= i < n for i in indices):
            raise ValueError(f"out_indices {indices} out of range for {n} feature levels")
        indices = tuple(i % n for i in indices)
        return Outputs(features_only, indices, tuple(self.features[i] for i in indices),
                       has_head=not features_only and self.spec.num_classes > 0)


def _is_stage_block(spec: Res2NetSpec, index_in_stage: int, stride: int) -> bool:
    if spec.stage_blocks == "first":
        return index_in_stage == 0
    return stride > 1


def _plan_resnet(spec: Res2NetSpec) -> NetworkPlan:
    if spec.stem == "deep":
        half = spec.stem_width // 2
        stem = (
            ConvBN("conv1.0", "conv1.1", spec.in_chans, half, 3, 2),
            ConvBN("conv1.3", "conv1.4", half, half, 3, 1),
            ConvBN("conv1.6", "bn1", half, spec.stem_width, 3, 1),
        )
    else:
        stem = (ConvBN("conv1", "bn1", spec.in_chans, spec.stem_width, 7, 2),)
    stages = []
    features = [FeatureInfo("act1", spec.stem_width, 2)]
    in_chs = spec.stem_width
    for stage_index, depth in enumerate(spec.depths):
        planes = 64 * 2**stage_index
        out_chs = planes * RESNET_EXPANSION
        width = int(math.floor(planes * (spec.base_width / 64.0))) * spec.cardinality
        blocks = []
        for b in range(depth):
            stride = 2 if (b == 0 and stage_index > 0) else 1
            needs_shortcut = b == 0 and (stride != 1 or in_chs != out_chs)
            blocks.append(
                BlockPlan(
                    prefix=f"layer{stage_index + 1}.{b}",
                    in_chs=in_chs,
                    out_chs=out_chs,
                    width=width,
                    scale=spec.scale,
                    cardinality=spec.cardinality,
                    stride=stride,
                    stage_block=_is_stage_block(spec, b, stride),
                    stage_pool_count_pad=spec.stage_pool_count_pad,
                    shortcut=spec.shortcut if needs_shortcut else None,
                    se_chs=out_chs // SE_REDUCTION if spec.se else 0,
                    stage_pool_stride1=spec.stage_pool_stride1,
                )
            )
            in_chs = out_chs
        stages.append(tuple(blocks))
        features.append(FeatureInfo(f"layer{stage_index + 1}", out_chs, 4 * 2**stage_index))
    n = len(features)
    return NetworkPlan(
        spec=spec,
        stem=stem,
        stem_pool=True,
        stages=tuple(stages),
        head_in=in_chs,
        head_is_conv=False,
        features=tuple(features),
        default_out_indices=tuple(range(1, n)),
    )


def _dla_block(spec: Res2NetSpec, prefix: str, in_chs: int, out_chs: int, stride: int) -> BlockPlan:
    width = int(math.floor(out_chs * (spec.base_width / 64.0)) * spec.cardinality) // DLA_EXPANSION
    return BlockPlan(
        prefix=prefix,
        in_chs=in_chs,
        out_chs=out_chs,
        width=width,
        scale=spec.scale,
        cardinality=spec.cardinality,
        stride=stride,
        # dla.py decides by stride alone, whatever stage_blocks says for the ResNet trunk.
        stage_block=stride > 1,
        stage_pool_count_pad=spec.stage_pool_count_pad,
        shortcut=None,
        se_chs=out_chs // SE_REDUCTION if spec.se else 0,
    )


def _dla_tree(spec, prefix, levels, in_chs, out_chs, stride, level_root=False, root_dim=0) -> TreePlan:
    if root_dim == 0:
        root_dim = 2 * out_chs
    if level_root:
        root_dim += in_chs
    if levels == 1:
        tree1 = _dla_block(spec, f"{prefix}.tree1", in_chs, out_chs, stride)
        tree2 = _dla_block(spec, f"{prefix}.tree2", out_chs, out_chs, 1)
    else:
        tree1 = _dla_tree(spec, f"{prefix}.tree1", levels - 1, in_chs, out_chs, stride)
        tree2 = _dla_tree(
            spec, f"{prefix}.tree2", levels - 1, out_chs, out_chs, 1, root_dim=root_dim + out_chs
        )
    return TreePlan(
        prefix=prefix,
        levels=levels,
        in_chs=in_chs,
        out_chs=out_chs,
        stride=stride,
        level_root=level_root,
        root_dim=root_dim,
        tree1=tree1,
        tree2=tree2,
        project=levels == 1 and in_chs != out_chs,
        unused_project=levels > 1 and in_chs != out_chs,
    )


def _dla_conv_level(prefix: str, in_chs: int, out_chs: int, convs: int, stride: int) -> tuple:
    out = []
    for i in range(convs):
        out.append(ConvBN(f"{prefix}.{3 * i}", f"{prefix}.{3 * i + 1}", in_chs, out_chs, 3,
                          stride if i == 0 else 1))
        in_chs = out_chs
    return tuple(out)


def _plan_dla(spec: Res2NetSpec) -> NetworkPlan:
    levels, ch = spec.depths, spec.channels
    stem = (ConvBN("base_layer.0", "base_layer.1", spec.in_chans, ch[0], 7, 1),)
    stages = (
        _dla_conv_level("level0", ch[0], ch[0], levels[0], 1),
        _dla_conv_level("level1", ch[0], ch[1], levels[1], 2),
        (_dla_tree(spec, "level2", levels[2], ch[1], ch[2], 2, level_root=False),),
        (_dla_tree(spec, "level3", levels[3], ch[2], ch[3], 2, level_root=True),),
        (_dla_tree(spec, "level4", levels[4], ch[3], ch[4], 2, level_root=True),),
        (_dla_tree(spec, "level5", levels[5], ch[4], ch[5], 2, level_root=True),),
    )
    features = tuple(FeatureInfo(f"level{i}", ch[i], 2**i) for i in range(6))
    return NetworkPlan(
        spec=spec,
        stem=stem,
        stem_pool=False,
        stages=stages,
        head_in=ch[5],
        head_is_conv=True,
        features=features,
        default_out_indices=(2, 3, 4, 5),
    )
