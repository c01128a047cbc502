"""The peers' checkpoint layouts: how PaddleClas, MindCV, MMPretrain and MMDetection name the
canonical tensors, as data.

A layout is a list of rules over full canonical names (regex -> replacement). A replacement
may use the block's plan, because some names depend on where a block sits: PaddleClas names the
blocks of a deep stage 3 ``res4a, res4b1, res4b2 ...`` and the others ``res2a, res2b ...``; MindCV
builds no pool cell in a stride-1 v1b shortcut, so its indices shift by one there. BatchNorm
leaves and transposes are per layout too. Reading a peer's file is then a rename by a table
computed from the spec, and the strict layout check that follows names whatever did not fit.

Which layout a file uses is told by its tensor names (:func:`detect_layout`); which graph its
weights need is the layout's (``GRAPH_OF``): PaddleClas' and MMDetection's differ from the
official one, so their checkpoints are matched against their own registered variants first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..spec import BlockPlan, Res2NetSpec, TensorSpec, canonical_layout, plan

# layout -> the graph its weights were trained or are run in (see Variant.graph)
GRAPH_OF = {"paddleclas": "paddleclas", "mmdet": "mmdet"}
_BN_LEAVES = ("weight", "bias", "running_mean", "running_var")
_BN_ROLES = ("bn_weight", "bn_bias", "bn_mean", "bn_var")


@dataclass(frozen=True)
class Layout:
    name: str
    rules: tuple[tuple[str, str | Callable], ...]   # canonical-name regex -> peer name (template or fn)
    bn_leaves: tuple[str, str, str, str] = _BN_LEAVES  # peer's weight, bias, running mean, running var
    transposed: frozenset[str] = frozenset()          # peer names stored [in, out]
    prefix: str = ""                                  # prepended to every backbone tensor
    ignored: tuple[str, ...] = field(default=())      # name prefixes of non-weights left out (optimizer state ...)

    def peer_name(self, tensor: TensorSpec, blocks: Mapping[str, BlockPlan], renamed: str | None = None) -> str:
        name = renamed or tensor.name
        if renamed is None:
            for pattern, replacement in self.rules:
                m = re.fullmatch(pattern, name)
                if m:
                    name = replacement(m, blocks) if callable(replacement) else m.expand(replacement)
                    break
        if tensor.role in _BN_ROLES:  # BatchNorm leaves by the tensor's role, not its name
            name = f"{name.rpartition('.')[0]}.{self.bn_leaves[_BN_ROLES.index(tensor.role)]}"
        return name if tensor.role.startswith("linear") or tensor.name.startswith("fc.") else self.prefix + name


# --- PaddleClas -----------------------------------------------------------------------------


def _paddleclas_block_name(stage: int, index: int, depth: int) -> str:
    if stage == 3 and depth >= 23:  # res4a, res4b1 ... in the 101/152/200 models
        return "res4a" if index == 0 else f"res4b{index}"
    return f"res{stage + 1}{chr(97 + index)}"


def _paddleclas_block(m: re.Match, blocks: Mapping[str, BlockPlan]) -> str:
    stage, index, rest = int(m["stage"]), int(m["index"]), m["rest"]
    depth = sum(1 for p in blocks if p.startswith(f"layer{stage}."))
    prefix = f"bb_{stage - 1}_{index}"
    unit = {"conv1": "conv0._conv", "bn1": "conv0._batch_norm", "conv3": "conv2._conv", "bn3": "conv2._batch_norm"}
    module, leaf = rest.rsplit(".", 1)
    if module in unit:
        return f"{prefix}.{unit[module]}.{leaf}"
    split = re.fullmatch(r"(convs|bns)\.(\d+)", module)
    if split:
        part = "_conv" if split[1] == "convs" else "_batch_norm"
        return f"{prefix}.{_paddleclas_block_name(stage, index, depth)}_branch2b_{int(split[2]) + 1}.{part}.{leaf}"
    shortcut = re.fullmatch(r"downsample\.(\d)", module)
    if shortcut:
        is_conv = blocks[f"layer{stage}.{index}"].shortcut == "conv"
        conv_index = 0 if is_conv else 1
        part = "_conv" if int(shortcut[1]) == conv_index else "_batch_norm"
        return f"{prefix}.short.{part}.{leaf}"
    return m[0]


def _deep_stem(*names: str) -> tuple[tuple[str, str], ...]:
    """Rules for the official deep stem conv1.{0,1,3,4,6} (conv, BN, conv, BN, conv): the peer's
    module names in that order. Its last BN, bn1, is in _DEEP_STEM_BN."""
    return tuple((rf"conv1\.{i}\.(\w+)", rf"{name}.\1") for i, name in zip((0, 1, 3, 4, 6), names))


PADDLECLAS = Layout(
    "paddleclas",
    rules=(
        (r"conv1\.weight", "conv1._conv.weight"),
        (r"bn1\.(\w+)", r"conv1._batch_norm.\1"),
        *_deep_stem("conv1_1._conv", "conv1_1._batch_norm", "conv1_2._conv", "conv1_2._batch_norm", "conv1_3._conv"),
        (r"layer(?P<stage>\d)\.(?P<index>\d+)\.(?P<rest>.+)", _paddleclas_block),
        (r"fc\.(\w+)", r"out.\1"),
    ),
    bn_leaves=("weight", "bias", "_mean", "_variance"),
    transposed=frozenset({"out.weight"}),
)


# --- MindCV -----------------------------------------------------------------------------------


def _mindcv_shortcut(m: re.Match, blocks: Mapping[str, BlockPlan]) -> str:
    block, index, leaf = m[1], int(m[2]), m[3]
    plan_ = blocks[block]
    if plan_.shortcut == "avgpool_conv" and plan_.stride == 1:  # no pool cell there: indices shift
        index -= 1
    return f"{block}.down_sample.{index}.{leaf}"


MINDCV = Layout(
    "mindcv",
    rules=(
        (r"(layer\d\.\d+)\.downsample\.(\d)\.(\w+)", _mindcv_shortcut),
        (r"fc\.(\w+)", r"classifier.\1"),
    ),
    bn_leaves=("gamma", "beta", "moving_mean", "moving_variance"),
    # what MindSpore's training callbacks save beside the network
    ignored=("moments.", "accum.", "adam_m.", "adam_v.", "global_step", "learning_rate", "momentum", "scale_sense",
             "current_iterator_step", "last_overflow_iterator_step", "epoch_num", "step_num", "loss_scale"),
)

# --- OpenMMLab --------------------------------------------------------------------------------

MMPRETRAIN = Layout(
    "mmpretrain",
    rules=(
        *_deep_stem("stem.0.conv", "stem.0.bn", "stem.1.conv", "stem.1.bn", "stem.2.conv"),
        (r"fc\.(\w+)", r"head.fc.\1"),
    ),
    prefix="backbone.",
    ignored=("data_preprocessor.",),
)

MMDET = Layout(
    "mmdet",
    rules=_deep_stem("stem.0", "stem.1", "stem.3", "stem.4", "stem.6"),
    # a detector's checkpoint: everything but the backbone is the detector's own
    ignored=("neck.", "rpn_head.", "roi_head.", "bbox_head.", "mask_head.", "decode_head.", "auxiliary_head.",
             "query_head.", "panoptic_head.", "data_preprocessor."),
)

LAYOUTS = {layout.name: layout for layout in (PADDLECLAS, MINDCV, MMPRETRAIN, MMDET)}


# The deep stem's last BatchNorm is ``bn1`` in the official names, as after the 7x7 stem; the
# peers name it by its place in their stem.
_DEEP_STEM_BN = {"paddleclas": "conv1_3._batch_norm", "mmpretrain": "stem.2.bn", "mmdet": "stem.7"}


def _special(spec: Res2NetSpec, layout: Layout) -> dict[str, str]:
    """Canonical names whose peer name the rules cannot tell from the name alone."""
    if spec.stem == "deep" and layout.name in _DEEP_STEM_BN:
        return {f"bn1.{leaf}": f"{_DEEP_STEM_BN[layout.name]}.{leaf}" for leaf in _BN_LEAVES}
    return {}


def peer_names(spec: Res2NetSpec, layout_name: str) -> dict[str, str]:
    """canonical name -> the peer's name, for every tensor of ``spec``."""
    layout = LAYOUTS[layout_name]
    if spec.topology != "resnet":
        return {}  # no peer publishes DLA checkpoints
    blocks = {b.prefix: b for stage in plan(spec).stages for b in stage}
    special = _special(spec, layout)
    return {t.name: layout.peer_name(t, blocks, special.get(t.name)) for t in canonical_layout(spec)}


def from_layout(state: Mapping[str, np.ndarray], spec: Res2NetSpec, layout_name: str,
                dropped: list[str] | None = None) -> dict[str, np.ndarray]:
    """A peer's names and layouts -> canonical. Known non-weights (optimizer state, a detector's
    other parts) are left out and listed in ``dropped``; other unknown names pass through, so
    the strict match afterwards reports them."""
    layout = LAYOUTS[layout_name]
    canonical_of = {peer: name for name, peer in peer_names(spec, layout_name).items()}
    if layout is MMDET and any(n.startswith("backbone.") for n in state):  # a whole detector's checkpoint
        if dropped is not None:
            dropped += [n for n in state if not n.startswith("backbone.")]
        state = {n[len("backbone."):]: v for n, v in state.items() if n.startswith("backbone.")}
    out = {}
    for name, value in state.items():
        if name in canonical_of:
            value = np.asarray(value)
            if name in layout.transposed and value.ndim == 2:
                value = np.ascontiguousarray(value.T)
            out[canonical_of[name]] = value
        elif name.startswith(layout.ignored) or name.endswith("num_batches_tracked"):
            if dropped is not None:
                dropped.append(name)
        else:
            out[name] = value
    return out


def to_layout(state: Mapping[str, np.ndarray], spec: Res2NetSpec, layout_name: str) -> dict[str, np.ndarray]:
    """Canonical -> a peer's names and layouts (tests write peers' files this way too)."""
    layout = LAYOUTS[layout_name]
    names = peer_names(spec, layout_name)
    out = {}
    for name, value in state.items():
        peer = names.get(name, name)
        value = np.asarray(value)
        out[peer] = np.ascontiguousarray(value.T) if peer in layout.transposed and value.ndim == 2 else value
    return out


def detect_layout(names) -> str | None:
    """The peer layout a set of tensor names is written in, or None (zoo's own and official)."""
    names = set(names)
    if any(n.startswith(("bb_0_0.", "conv1_1._conv.", "conv1._conv.")) for n in names):
        return "paddleclas"
    if any(n.startswith("classifier.") or ".down_sample." in n for n in names) and \
            any(n.endswith((".gamma", ".moving_mean")) for n in names):
        return "mindcv"
    if any(n.startswith(("backbone.stem.0.conv.", "head.fc.")) for n in names):
        return "mmpretrain"
    if any(n.startswith(("stem.0.weight", "backbone.stem.0.weight")) for n in names):
        return "mmdet"
    if names and all(n.startswith(("backbone.", "head.", "data_preprocessor.")) for n in names):
        return "mmpretrain"  # the 7x7-stem models: backbone.conv1.weight ...
    return None
