"""Average and max pooling with PyTorch's exact semantics, for Jittor.

Jittor 1.3.11's pooling layers do not do what the official graph needs: ``AvgPool2d`` ignores
``count_include_pad=False`` unless ``ceil_mode=True`` (it always divides by k*k), and pooling
raises when the input is not larger than the kernel (a 2x2 map under the v1b shortcut pool or a
DLA max pool). So pooling is written out here: the window sum (or max) is the sum (or max) of
k*k strided slices of the padded input, and the average divides by PyTorch's divisor, which
depends only on the shapes and is computed in numpy. k is at most 3 in Res2Net, so that is at
most nine slices. Where Jittor's own pooling is right the modules below use it: it is one fused
op (res2net50 at 224, batch 8, on a 2-core CPU: 14.6 images/s instead of 13.3 with slices only).
"""

from __future__ import annotations

import jittor as jt
import numpy as np

from ...spec.layout import window_output_size as output_size


def _divisors(size: int, k: int, stride: int, pad: int, out: int, count_include_pad: bool) -> np.ndarray:
    starts = np.arange(out) * stride - pad
    ends = np.minimum(starts + k, size + pad)
    if count_include_pad:
        return (ends - starts).astype(np.float32)
    return (np.minimum(ends, size) - np.maximum(starts, 0)).astype(np.float32)


def _windows(x: jt.Var, k: int, stride: int, pad: int, ceil_mode: bool, fill: float):
    h, w = x.shape[2], x.shape[3]
    oh, ow = output_size(h, k, stride, pad, ceil_mode), output_size(w, k, stride, pad, ceil_mode)
    # pad by `pad` on each side, plus zeros/-inf at the end where ceil-mode windows run over
    extra_h = max(0, (oh - 1) * stride + k - (h + 2 * pad))
    extra_w = max(0, (ow - 1) * stride + k - (w + 2 * pad))
    if pad or extra_h or extra_w:
        x = jt.nn.pad(x, [pad, pad + extra_w, pad, pad + extra_h], mode="constant", value=fill)
    slices = [x[:, :, a: a + (oh - 1) * stride + 1: stride, b: b + (ow - 1) * stride + 1: stride]
              for a in range(k) for b in range(k)]
    return slices, (h, w, oh, ow)


def pool_windows(x: jt.Var, k: int, stride: int, pad: int = 0) -> list[jt.Var]:
    """zoo.training.pool_windows in Jittor (zero padding: where a followed choice never lies)."""
    return _windows(x, k, stride, pad, False, 0.0)[0]


def avg_pool2d(x: jt.Var, k: int, stride: int, pad: int = 0, *, ceil_mode: bool = False,
               count_include_pad: bool = True) -> jt.Var:
    slices, (h, w, oh, ow) = _windows(x, k, stride, pad, ceil_mode, 0.0)
    total = slices[0]
    for s in slices[1:]:
        total = total + s
    divisor = np.outer(_divisors(h, k, stride, pad, oh, count_include_pad),
                       _divisors(w, k, stride, pad, ow, count_include_pad))
    if np.all(divisor == divisor.flat[0]):
        return total / float(divisor.flat[0])
    return total / jt.array(divisor.reshape(1, 1, oh, ow))


def max_pool2d(x: jt.Var, k: int, stride: int, pad: int = 0, *, ceil_mode: bool = False) -> jt.Var:
    slices, _ = _windows(x, k, stride, pad, ceil_mode, float("-inf"))
    out = slices[0]
    for s in slices[1:]:
        out = jt.maximum(out, s)
    return out


def _larger_than_kernel(x: jt.Var, k: int) -> bool:
    return x.shape[2] > k and x.shape[3] > k


class AvgPool2d(jt.nn.Module):
    """Jittor's own (fused, about twice as fast here) pooling where it is right: padding
    counted, no ceil mode, a map larger than the kernel; the exact version elsewhere."""

    def __init__(self, k: int, stride: int, pad: int = 0, *, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__()
        self.k, self.stride, self.pad = k, stride, pad
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.native_ok = count_include_pad and not ceil_mode
        self.native = jt.nn.AvgPool2d(k, stride, pad, ceil_mode=False, count_include_pad=True)

    def execute(self, x):
        if self.native_ok and _larger_than_kernel(x, self.k):
            return self.native(x)
        return avg_pool2d(x, self.k, self.stride, self.pad, ceil_mode=self.ceil_mode,
                          count_include_pad=self.count_include_pad)


class MaxPool2d(jt.nn.Module):
    """Jittor's own max pooling on maps larger than the kernel, the exact version on smaller."""

    def __init__(self, k: int, stride: int, pad: int = 0, *, ceil_mode: bool = False):
        super().__init__()
        self.k, self.stride, self.pad, self.ceil_mode = k, stride, pad, ceil_mode
        self.native = jt.nn.MaxPool2d(k, stride, pad, ceil_mode=ceil_mode)

    def execute(self, x):
        if _larger_than_kernel(x, self.k):
            return self.native(x)
        return max_pool2d(x, self.k, self.stride, self.pad, ceil_mode=self.ceil_mode)
