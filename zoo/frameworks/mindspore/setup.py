"""MindSpore settings chosen before its first kernel runs.

Measured with MindSpore 2.10 on an AMD EPYC CPU with AVX-512 (2 cores): the oneDNN bundled with
MindSpore runs a 3x3 convolution (256 channels, 56x56) in 3.7 s with its AVX-512 kernels and in
0.05 s when capped at AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``); res2net50 at 224 in GRAPH mode goes
from 0.33 to 2.9 images/s. torch's oneDNN on the same CPU is not affected. oneDNN reads the
variable when it first dispatches a kernel, so it works even if mindspore was imported first.
Only that CPU family is capped (the one measured); a setting the user made is never overridden.
"""

from __future__ import annotations

import os


def _cpu() -> tuple[str, set[str]]:
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return "", set()
    vendor = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("vendor_id")), "")
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())
    return vendor, flags


def configure() -> dict[str, str]:
    """The settings zoo made (empty when none were needed or the user set them)."""
    if any(v in os.environ for v in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")):
        return {}
    vendor, flags = _cpu()
    if vendor == "AuthenticAMD" and "avx512f" in flags:
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        return {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    return {}
