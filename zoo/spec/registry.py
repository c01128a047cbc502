"""The named variants: one line of data each, plus where their weights live and how the
published models expect their input.

Names are the official release's; timm's (and MindCV's) names are aliases.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace

import re

from ..errors import UnknownNameError
from .model import Res2NetSpec

# name-<sha256 prefix>.ext: the torch-hub convention of the official files, checked on download
SHA256_IN_FILE_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Evaluation transform: resize the short side to ``input_size / crop_pct``, center crop
    ``input_size``, scale to [0, 1], normalize."""

    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def resize_size(self) -> int:
        return int(self.input_size / self.crop_pct)


@dataclass(frozen=True)
class Published:
    """The figures of the official table (project page / README), 224x224 ImageNet."""

    params_m: float
    gflops: float          # multiply-adds
    top1_err: float
    top5_err: float

    @property
    def top1(self) -> float:
        return round(100.0 - self.top1_err, 2)

    @property
    def top5(self) -> float:
        return round(100.0 - self.top5_err, 2)


@dataclass(frozen=True)
class WeightSource:
    """One released checkpoint: a URL, or a file of a Hugging Face Hub repository (``hf_hub_id``,
    fetched with huggingface_hub, whose LFS metadata gives the full sha256). ``sha256`` is the
    full digest when known; official file names carry its first 8 hex digits (torch-hub
    convention), kept in ``sha256_prefix``."""

    tag: str               # "official", "timm", "mindcv", "paddleclas", "paddleclas-ssld", "jittor", ...
    framework: str         # framework whose file this is
    url: str = ""
    hf_hub_id: str = ""
    sha256_prefix: str = ""
    sha256: str = ""
    # whose tensor names the file uses (zoo.converters.layouts): "official" (torch's, also timm's
    # and Jittor's), "paddle", "mindspore", "paddleclas", "mindcv", "mmpretrain", "mmdet"
    layout: str = "official"
    top1: float | None = None  # the source's own published top-1, where it differs from the paper's
    hf_filename: str = "model.safetensors"
    # the same tensors as the variant's official release (timm's Hub copies of the official files)
    same_as: str = ""

    @property
    def on_hub(self) -> bool:
        return bool(self.hf_hub_id) and not self.url

    @property
    def filename(self) -> str:
        return self.hf_filename if self.on_hub else self.url.rsplit("/", 1)[-1] if self.url else ""

    @property
    def location(self) -> str:
        return f"hf://{self.hf_hub_id}/{self.hf_filename}" if self.on_hub else self.url

    @property
    def full_digest(self) -> bool:
        return self.on_hub or bool(self.sha256)

    @property
    def integrity(self) -> str:
        """How the bytes are checked on download, strongest first."""
        if self.full_digest:
            return "full sha256" + (" (the Hub's LFS metadata)" if self.on_hub else "")
        if self.sha256_prefix:
            return f"sha256 prefix ({len(self.sha256_prefix) * 4} bits, from the file name)"
        return "none published (the digest of the first download is recorded)"

    @property
    def runs_no_code(self) -> bool:
        """safetensors and MindSpore's protobuf cannot run code; pickles (.pth .pdparams .pkl) can
        (zoo reads them without executing anything, but other tools may not)."""
        return self.filename.endswith((".safetensors", ".ckpt"))

    @property
    def rank(self) -> tuple[int, int]:
        return (0 if self.full_digest else 1 if self.sha256_prefix else 2, 0 if self.runs_no_code else 1)


@dataclass(frozen=True)
class Variant:
    name: str
    title: str
    spec: Res2NetSpec
    aliases: tuple[str, ...] = ()
    published: Published | None = None
    sources: tuple[WeightSource, ...] = ()
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    timm_name: str = ""    # the same graph in timm, for cross-checks
    note: str = ""
    # whose graph the spec reproduces: "official" (the release, timm, MindCV, Jittor, MMPretrain),
    # "paddleclas" or "mmdet"; a peer's checkpoint is identified among its own graphs first
    graph: str = "official"

    @property
    def has_weights(self) -> bool:
        return bool(self.sources)

    def _same_tensors(self) -> list[WeightSource]:
        """The sources that hold the release's tensors (a peer's graph: its first source's)."""
        if not any(s.tag == "official" for s in self.sources):
            return list(self.sources[:1])
        return [s for s in self.sources if s.tag == "official" or s.same_as == "official"]

    @property
    def default_source(self) -> WeightSource | None:
        """The source fetched when none is named: the strongest check first (a full sha256 over
        a prefix over none), then a format that cannot run code; among equals, the order listed.
        A copy not known to hold the release's tensors never displaces the release."""
        same = self._same_tensors()
        return min(same, key=lambda s: s.rank) if same else None

    def why_default(self) -> str:
        """Why ``default_source`` is the default, in one phrase."""
        best = self.default_source
        if best is None:
            return ""

        def traits(s: WeightSource) -> str:
            return f"{s.integrity}, {'a format that cannot run code' if s.runs_no_code else 'a pickle'}"

        others = [s for s in self._same_tensors() if s is not best]
        if not others:
            what = "the release" if best.tag == "official" else "the first release listed for this graph"
            return f"{what} ({traits(best)}); no other source is known to hold the same tensors"
        return f"{traits(best)}; over " + "; ".join(f"{s.tag}: {traits(s)}" for s in others)


_NANKAI = "http://mc.nankai.edu.cn/projects/res2net/pretrainmodels/"
_KAIZHAO = "http://data.kaizhao.net/projects/res2net/pretrained/"
_V1B = "https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/"
_MINDCV = "https://download.mindspore.cn/toolkits/mindcv/res2net/"
_PADDLECLAS = "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/"
_JITTOR_HUB = "https://cg.cs.tsinghua.edu.cn/jittor/assets/build/checkpoints/"
_MMPRETRAIN = "https://download.openmmlab.com/mmclassification/v0/res2net/"
_MMDET = "https://download.openmmlab.com/pretrain/third_party/"

# tag -> (framework of the file, layout of its names)
_PEERS = {"mindcv": ("mindspore", "mindcv"), "paddleclas": ("paddle", "paddleclas"),
          "paddleclas-ssld": ("paddle", "paddleclas"), "jittor": ("jittor", "official"),
          "mmpretrain": ("torch", "mmpretrain"), "mmdet": ("torch", "mmdet")}


def _peer(tag: str, url: str, top1: float | None = None) -> WeightSource:
    framework, layout = _PEERS[tag]
    prefix = SHA256_IN_FILE_NAME.search(url.rsplit("/", 1)[-1]) if tag in ("mindcv", "mmpretrain", "mmdet") else None
    return WeightSource(tag, framework, url=url, sha256_prefix=prefix.group(1) if prefix else "", layout=layout,
                        top1=top1)


def _paddleclas(name: str, top1: float, ssld_top1: float | None = None) -> tuple[WeightSource, ...]:
    out = (_peer("paddleclas", f"{_PADDLECLAS}{name}_pretrained.pdparams", top1),)
    if ssld_top1 is not None:  # distilled (SSLD) weights of the same graph
        out += (_peer("paddleclas-ssld", f"{_PADDLECLAS}{name}_ssld_pretrained.pdparams", ssld_top1),)
    return out


# The peers' own weights of the official graph. Top-1 as each peer publishes it (MindCV's res2net
# page, MMPretrain's model table); Jittor publishes none per file.
PEER_WEIGHTS: dict[str, tuple[WeightSource, ...]] = {
    "res2net50_26w_4s": (_peer("mindcv", _MINDCV + "res2net50-f42cf71b.ckpt", 79.35),
                         _peer("jittor", _JITTOR_HUB + "res2net50_26w_4s.pkl")),
    "res2net50_14w_8s": (_peer("jittor", _JITTOR_HUB + "res2net50_14w_8s.pkl"),
                         _peer("mmpretrain", _MMPRETRAIN + "res2net50-w14-s8_3rdparty_8xb32_in1k_20210927-bc967bf1.pth",
                               78.14)),
    "res2net50_26w_6s": (_peer("jittor", _JITTOR_HUB + "res2net50_26w_6s.pkl"),),
    "res2net50_26w_8s": (_peer("jittor", _JITTOR_HUB + "res2net50_26w_8s.pkl"),
                         _peer("mmpretrain", _MMPRETRAIN + "res2net50-w26-s8_3rdparty_8xb32_in1k_20210927-f547a94b.pth",
                               79.20)),
    "res2net50_48w_2s": (_peer("jittor", _JITTOR_HUB + "res2net50_48w_2s.pkl"),),
    "res2net101_26w_4s": (_peer("mindcv", _MINDCV + "res2net101-8ae60132.ckpt", 79.56),
                          _peer("jittor", _JITTOR_HUB + "res2net101_26w_4s.pkl"),
                          _peer("mmpretrain", _MMPRETRAIN + "res2net101-w26-s4_3rdparty_8xb32_in1k_20210927-870b6c36.pth",
                                79.19)),
    "res2net50_v1b_26w_4s": (_peer("mindcv", _MINDCV + "res2net50_v1b-99304e92.ckpt", 80.32),),
    "res2net101_v1b_26w_4s": (_peer("mindcv", _MINDCV + "res2net101_v1b-7e6db001.ckpt", 81.26),),
}

R50, R101, R152 = (3, 4, 6, 3), (3, 4, 23, 3), (3, 8, 36, 3)
R200 = (3, 12, 48, 3)  # PaddleClas' Res2Net-200, the only one trained (official README: 76.21M, 15.7 GMACs)
DLA60_LEVELS, DLA60_CHANNELS = (1, 1, 1, 2, 3, 1), (16, 32, 128, 256, 512, 1024)
V1B = dict(stem="deep", shortcut="avgpool_conv")
# PaddleClas' graph: only strided blocks are stage blocks (layer1.0 is hierarchical, unpooled),
# and their pool leaves the padding out (Paddle's AvgPool2D default).
PADDLECLAS = dict(stage_blocks="strided", stage_pool_count_pad=False)
# MMDetection's graph: stage blocks of stride 1 (layer1.0) do not pool their last split.
MMDET = dict(stage_pool_stride1=False)


def _official(base: str, filename: str, timm_hub: str = "", timm_mirror: bool = False):
    """The release's file, and timm's Hub copy: of the release file itself (``timm_mirror``: timm
    first served these very files from its GitHub release, then moved them to the Hub as
    safetensors), or of weights timm published under its own name."""
    sha_prefix = filename.rsplit("-", 1)[-1].split(".")[0]
    out = [WeightSource("official", "torch", url=base + filename, sha256_prefix=sha_prefix)]
    if timm_hub:
        out.append(WeightSource("timm", "torch", hf_hub_id=timm_hub, same_as="official" if timm_mirror else ""))
    return tuple(out)


def _v(name, title, spec, published=None, sources=(), aliases=(), timm_name="", note="", graph="official"):
    return Variant(name, title, spec, tuple(aliases), Published(*published) if published else None,
                   sources, timm_name=timm_name, note=note, graph=graph)


# name, title, spec, published (params M, GFLOPs, top-1 err, top-5 err), sources, aliases
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    _v("res2net50_26w_4s", "Res2Net-50-26w-4s", Res2NetSpec(R50, 26, 4), (25.70, 4.2, 22.01, 6.15),
       _official(_NANKAI, "res2net50_26w_4s-06e79181.pth", "timm/res2net50_26w_4s.in1k", True),
       ("res2net50",), "res2net50_26w_4s"),
    _v("res2net50_48w_2s", "Res2Net-50-48w-2s", Res2NetSpec(R50, 48, 2), (25.29, 4.2, 22.68, 6.47),
       _official(_NANKAI, "res2net50_48w_2s-afed724a.pth", "timm/res2net50_48w_2s.in1k", True),
       timm_name="res2net50_48w_2s"),
    _v("res2net50_14w_8s", "Res2Net-50-14w-8s", Res2NetSpec(R50, 14, 8), (25.06, 4.2, 21.86, 6.14),
       _official(_NANKAI, "res2net50_14w_8s-6527dddc.pth", "timm/res2net50_14w_8s.in1k", True),
       timm_name="res2net50_14w_8s"),
    _v("res2net50_26w_6s", "Res2Net-50-26w-6s", Res2NetSpec(R50, 26, 6), (37.05, 6.3, 21.42, 5.87),
       _official(_NANKAI, "res2net50_26w_6s-19041792.pth", "timm/res2net50_26w_6s.in1k", True),
       timm_name="res2net50_26w_6s"),
    _v("res2net50_26w_8s", "Res2Net-50-26w-8s", Res2NetSpec(R50, 26, 8), (48.40, 8.3, 20.80, 5.63),
       _official(_NANKAI, "res2net50_26w_8s-2c7c9f12.pth", "timm/res2net50_26w_8s.in1k", True),
       timm_name="res2net50_26w_8s"),
    _v("res2net101_26w_4s", "Res2Net-101-26w-4s", Res2NetSpec(R101, 26, 4), (45.21, 8.1, 20.81, 5.57),
       _official(_NANKAI, "res2net101_26w_4s-02a759a1.pth", "timm/res2net101_26w_4s.in1k", True),
       ("res2net101",), "res2net101_26w_4s"),
    _v("res2next50", "Res2NeXt-50", Res2NetSpec(R50, 4, 4, cardinality=8), (24.67, 4.2, 21.76, 6.09),
       _official(_KAIZHAO, "res2next50_4s-6ef7e7bf.pth", "timm/res2next50.in1k", True),
       timm_name="res2next50"),
    _v("res2net_dla60", "Res2Net-DLA-60",
       Res2NetSpec(DLA60_LEVELS, 28, 4, topology="dla", channels=DLA60_CHANNELS), (21.15, 4.2, 21.53, 5.80),
       _official(_KAIZHAO, "res2net_dla60_4s-d88db7f9.pth", "timm/dla60_res2net.in1k", True),
       ("dla60_res2net",), "dla60_res2net",
       note="the published 21.15M counts unused projection layers of the official dla.py"),
    _v("res2next_dla60", "Res2NeXt-DLA-60",
       Res2NetSpec(DLA60_LEVELS, 4, 4, cardinality=8, topology="dla", channels=DLA60_CHANNELS),
       (17.33, 3.6, 21.55, 5.86),
       _official(_KAIZHAO, "res2next_dla60_4s-d327927b.pth", "timm/dla60_res2next.in1k", True),
       ("dla60_res2next",), "dla60_res2next",
       note="the published 17.33M counts unused projection layers of the official dla.py"),
    _v("res2net50_v1b_26w_4s", "Res2Net-v1b-50", Res2NetSpec(R50, 26, 4, **V1B), (25.72, 4.5, 19.73, 4.96),
       _official(_V1B, "res2net50_v1b_26w_4s-3cf99910.pth", "timm/res2net50d.in1k"),
       ("res2net50_v1b", "res2net50d"), "res2net50d"),
    _v("res2net101_v1b_26w_4s", "Res2Net-v1b-101", Res2NetSpec(R101, 26, 4, **V1B), (45.23, 8.3, 18.77, 4.64),
       _official(_V1B, "res2net101_v1b_26w_4s-0812c246.pth", "timm/res2net101d.in1k"),
       ("res2net101_v1b", "res2net101d"), "res2net101d"),
    _v("res2net152_v1b_26w_4s", "Res2Net-v1b-152", Res2NetSpec(R152, 26, 4, **V1B),
       aliases=("res2net152_v1b",),
       note="defined in the official res2net_v1b.py; no published figures or checkpoint URL"),
    _v("res2net200_v1b_26w_4s", "Res2Net-v1b-200", Res2NetSpec(R200, 26, 4, **V1B),
       aliases=("res2net200_v1b",),
       note="the official v1b graph at PaddleClas' Res2Net-200 depths (3, 12, 48, 3); the trained "
            "Res2Net-200 weights are PaddleClas' own graph: res2net200_vd_26w_4s"),
    _v("se_res2net50_26w_4s", "SE-Res2Net-50-26w-4s", Res2NetSpec(R50, 26, 4, se=True),
       aliases=("se_res2net50",),
       note="paper only (SE before the residual add); no released weights"),
    # PaddleClas' own graph and weights (top-1 as PaddleClas publishes it; no paper figures).
    _v("res2net50_vd_26w_4s", "PaddleClas Res2Net50_vd_26w_4s", Res2NetSpec(R50, 26, 4, **V1B, **PADDLECLAS),
       sources=_paddleclas("Res2Net50_vd_26w_4s", 79.8, 83.1), graph="paddleclas",
       note="PaddleClas' graph: layer1.0 hierarchical and unpooled, stage pools exclude the padding"),
    _v("res2net101_vd_26w_4s", "PaddleClas Res2Net101_vd_26w_4s", Res2NetSpec(R101, 26, 4, **V1B, **PADDLECLAS),
       sources=_paddleclas("Res2Net101_vd_26w_4s", 80.6, 83.9), graph="paddleclas",
       note="PaddleClas' graph: layer1.0 hierarchical and unpooled, stage pools exclude the padding"),
    _v("res2net200_vd_26w_4s", "PaddleClas Res2Net200_vd_26w_4s", Res2NetSpec(R200, 26, 4, **V1B, **PADDLECLAS),
       (76.21, 15.7, 14.87, 2.58), _paddleclas("Res2Net200_vd_26w_4s", 81.2, 85.13), ("res2net200_vd",),
       graph="paddleclas",
       note="the official README's Res2Net-v1b-200-SSLD row (76.21M, 15.7 GFLOPs, 85.13% top-1) is "
            "PaddleClas' SSLD model"),
    _v("res2net50_26w_4s_paddleclas", "PaddleClas Res2Net50_26w_4s", Res2NetSpec(R50, 26, 4, **PADDLECLAS),
       sources=_paddleclas("Res2Net50_26w_4s", 79.3), graph="paddleclas",
       note="PaddleClas' graph of Res2Net-50-26w-4s (its names collide with the official one's)"),
    _v("res2net50_14w_8s_paddleclas", "PaddleClas Res2Net50_14w_8s", Res2NetSpec(R50, 14, 8, **PADDLECLAS),
       sources=_paddleclas("Res2Net50_14w_8s", 79.5), graph="paddleclas",
       note="PaddleClas' graph of Res2Net-50-14w-8s"),
    # MMDetection's backbone: the official v1b weights in MMDetection's graph, no classifier.
    _v("res2net101_v1d_26w_4s", "MMDetection Res2Net-101-v1d-26w-4s (backbone)",
       Res2NetSpec(R101, 26, 4, **V1B, **MMDET, num_classes=0),
       sources=(_peer("mmdet", _MMDET + "res2net101_v1d_26w_4s_mmdetv2-f0a600f9.pth"),),
       aliases=("mmdet_res2net101",), graph="mmdet",
       note="MMDetection's graph (layer1.0 does not pool its last split); backbone only, for FPN "
            "(features_only); open-mmlab://res2net101_v1d_26w_4s"),
)}

VARIANTS = {name: replace(v, sources=v.sources + PEER_WEIGHTS.get(name, ())) for name, v in VARIANTS.items()}
_ALIASES: dict[str, str] = {a: v.name for v in VARIANTS.values() for a in v.aliases}


def _normalize(name: str) -> str:
    name = name.strip().lower().replace("-", "_")
    if name.startswith("timm/"):
        name = name[len("timm/"):]
    return name.split(".", 1)[0]  # timm's pretrained tags: res2net50d.in1k


def resolve_name(name: str) -> str:
    """Canonical variant name for a name or alias; raises UnknownNameError with suggestions."""
    key = _normalize(name)
    if key in VARIANTS:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    choices = sorted(set(VARIANTS) | set(_ALIASES))
    close = difflib.get_close_matches(key, choices, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(f"unknown model {name!r}{hint} (run `zoo list` for all names)")


def get_variant(name: str) -> Variant:
    return VARIANTS[resolve_name(name)]


def list_variants() -> list[Variant]:
    return list(VARIANTS.values())
