"""Pure-Python description of Res2Net: no framework is imported here."""

from __future__ import annotations

from functools import lru_cache

from .layout import BN_STAT_ROLES, TRAINABLE_ROLES, TensorSpec, count_macs, iter_layout, unused_official_tensors
from .model import BN_EPS, BN_MOMENTUM, BlockPlan, ConvBN, FeatureInfo, NetworkPlan, Res2NetSpec, TreePlan
from .registry import (
    VARIANTS, Preprocessing, Published, Variant, WeightSource, get_variant, list_variants, resolve_name,
)

__all__ = [
    "BN_EPS", "BN_MOMENTUM", "BN_STAT_ROLES", "TRAINABLE_ROLES", "VARIANTS", "BlockPlan", "ConvBN",
    "FeatureInfo", "NetworkPlan", "Preprocessing", "Published", "Res2NetSpec", "TensorSpec", "TreePlan",
    "Variant", "WeightSource", "canonical_layout", "feature_info", "get_spec", "get_variant", "gflops",
    "list_variants", "param_count", "plan", "resolve_name", "unused_official_tensors",
]


def get_spec(name: str, **overrides) -> Res2NetSpec:
    """The spec of a registered variant, optionally changed (``num_classes=10``)."""
    spec = get_variant(name).spec
    return spec.replace(**overrides) if overrides else spec


@lru_cache(maxsize=64)
def _plan(spec: Res2NetSpec) -> NetworkPlan:
    return spec.plan()


def plan(spec: Res2NetSpec) -> NetworkPlan:
    return _plan(spec)


@lru_cache(maxsize=64)
def _layout(spec: Res2NetSpec, features_only: bool) -> tuple[TensorSpec, ...]:
    return tuple(iter_layout(_plan(spec), head=not features_only))


def canonical_layout(spec: Res2NetSpec, *, features_only: bool = False) -> tuple[TensorSpec, ...]:
    """Ordered canonical tensors (official PyTorch names and layouts) of the model."""
    return _layout(spec, features_only)


def param_count(spec: Res2NetSpec, *, with_bn_stats: bool = False, with_unused: bool = False) -> int:
    """Trainable parameters (the published convention); optionally with BatchNorm statistics
    (MindCV's convention) or with the unused DLA projections the official checkpoints carry."""
    tensors = list(canonical_layout(spec))
    if with_unused:
        tensors += unused_official_tensors(_plan(spec))
    return sum(t.numel for t in tensors if t.trainable or (with_bn_stats and t.role in BN_STAT_ROLES))


def gflops(spec: Res2NetSpec, image_size: int = 224, *, with_unused: bool = False) -> float:
    """Multiply-adds of convolutions and classifier in units of 1e9 (the convention of the
    published tables). ``with_unused`` adds the DLA projections that the official code computes
    and discards, as the published DLA figures do."""
    return count_macs(_plan(spec), image_size, with_unused=with_unused) / 1e9


def feature_info(spec: Res2NetSpec) -> tuple[FeatureInfo, ...]:
    return _plan(spec).features
