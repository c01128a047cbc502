"""Jittor port: the shared port checks (tests/port_suite.py) with Jittor's adapter, plus the
pooling that replaces Jittor's own, checked against a numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

import zoo

from .port_suite import *  # noqa: F401,F403  the shared tests
from .port_suite import Port

pytestmark = pytest.mark.jittor


class JittorPort(Port):
    name, extension, modes = "jittor", ".pkl", ("lazy", "eager")

    def __init__(self):
        import zoo.frameworks.jittor  # noqa: F401  configures jittor before its import
        import jittor

        self.jt = jittor

    def logits(self, model, weights, inputs, mode):
        jt = self.jt
        previous = jt.flags.lazy_execution
        jt.flags.lazy_execution = int(mode == "lazy")
        try:
            net = zoo.create_model(model, framework="jittor", weights=str(weights))
            net.eval()
            with jt.no_grad():
                return net(jt.array(np.load(inputs))).numpy()
        finally:
            jt.flags.lazy_execution = previous

    def state_shapes(self, model):
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    def trainable_count(self, model):
        return sum(int(np.prod(p.shape)) for _, p in model.named_parameters() if p.requires_grad)

    def native_load(self, model_name, path):
        # Jittor's load_parameters never reports problems, so compare the key sets and shapes.
        net = zoo.create_model(model_name, framework="jittor")
        params = self.jt.load(str(path))
        own = net.state_dict()
        net.load_parameters(params)
        missing = [k for k in own if k not in params]
        unexpected = [k for k in params if k not in own or tuple(np.shape(params[k])) != tuple(own[k].shape)]
        return missing, unexpected

    def train_losses(self, spec, steps):
        jt = self.jt
        net = zoo.create_model(spec, framework="jittor")
        opt = jt.optim.SGD(net.parameters(), lr=0.1)
        x = jt.array(np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32))
        y = jt.array(np.arange(4))
        losses = []
        for _ in range(steps):
            loss = jt.nn.cross_entropy_loss(net(x), y)
            opt.step(loss)
            losses.append(float(loss.numpy()))
        return losses

    def feature_shapes(self, model_name, size):
        net = zoo.create_model(model_name, framework="jittor", features_only=True)
        net.eval()
        return [tuple(f.shape[1:]) for f in net(self.jt.zeros((1, 3, size, size)))]

    def write_native(self, state_path, out):
        from zoo.convert import convert_here

        convert_here(state_path, "jittor", out=out)


@pytest.fixture(scope="module")
def port():
    return JittorPort()


def _numpy_avg_pool(x, k, s, p, ceil_mode, count_include_pad):
    """Direct loop over windows, as PyTorch defines avg_pool2d."""
    from zoo.spec.layout import window_output_size

    n, c, h, w = x.shape
    oh, ow = window_output_size(h, k, s, p, ceil_mode), window_output_size(w, k, s, p, ceil_mode)
    out = np.zeros((n, c, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * s - p, j * s - p
            h1, w1 = min(h0 + k, h + p), min(w0 + k, w + p)
            size = (h1 - h0) * (w1 - w0)
            h0c, w0c, h1c, w1c = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            window = x[:, :, h0c:h1c, w0c:w1c]
            out[:, :, i, j] = window.sum((2, 3)) / (size if count_include_pad else (h1c - h0c) * (w1c - w0c))
    return out


def _numpy_max_pool(x, k, s, p):
    n, c, h, w = x.shape
    padded = np.full((n, c, h + 2 * p, w + 2 * p), -np.inf)
    padded[:, :, p:p + h, p:p + w] = x
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    return np.stack([np.stack([padded[:, :, i * s:i * s + k, j * s:j * s + k].max((2, 3)) for j in range(ow)], -1)
                     for i in range(oh)], -2)


@pytest.mark.parametrize("size", [2, 3, 5, 8])
@pytest.mark.parametrize("k,s,p,ceil_mode,include", [
    (3, 1, 1, False, True),    # stage pool, stride 1 (layer1.0), padding counted
    (3, 2, 1, False, True),    # stage pool, stride 2
    (3, 2, 1, False, False),   # the same, padding excluded (stage_pool_count_pad=False)
    (2, 2, 0, True, False),    # v1b shortcut pool: ceil mode, padding excluded
])
def test_avg_pool_matches_numpy_reference(port, size, k, s, p, ceil_mode, include):
    from zoo.frameworks.jittor.pooling import avg_pool2d

    x = np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32)
    got = avg_pool2d(port.jt.array(x), k, s, p, ceil_mode=ceil_mode, count_include_pad=include).numpy()
    np.testing.assert_allclose(got, _numpy_avg_pool(x.astype(np.float64), k, s, p, ceil_mode, include), atol=1e-6)


@pytest.mark.parametrize("size", [2, 3, 5, 9])
@pytest.mark.parametrize("k,s,p,ceil_mode,include", [
    (3, 1, 1, False, True), (3, 2, 1, False, True), (3, 2, 1, False, False), (2, 2, 0, True, False),
])
def test_pool_modules_match_numpy_on_both_paths(port, size, k, s, p, ceil_mode, include):
    """The modules pick Jittor's op or the exact one by map size and flags: both must be right."""
    from zoo.frameworks.jittor.pooling import AvgPool2d, MaxPool2d

    x = np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32)
    avg = AvgPool2d(k, s, p, ceil_mode=ceil_mode, count_include_pad=include)(port.jt.array(x)).numpy()
    np.testing.assert_allclose(avg, _numpy_avg_pool(x.astype(np.float64), k, s, p, ceil_mode, include), atol=1e-6)
    if not ceil_mode:
        np.testing.assert_array_equal(MaxPool2d(k, s, p)(port.jt.array(x)).numpy(), _numpy_max_pool(x, k, s, p))


@pytest.mark.parametrize("size", [2, 3, 7])
@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (2, 2, 0)])
def test_max_pool_matches_numpy_reference_even_on_tiny_maps(port, size, k, s, p):
    from zoo.frameworks.jittor.pooling import max_pool2d

    x = np.random.default_rng(size).standard_normal((1, 2, size, size)).astype(np.float32)
    np.testing.assert_array_equal(max_pool2d(port.jt.array(x), k, s, p).numpy(), _numpy_max_pool(x, k, s, p))


def test_jittor_is_configured_for_this_machine(port):
    import sys

    from zoo.frameworks.jittor import JITTOR_SETTINGS
    from zoo.frameworks.jittor.setup import system_onednn

    assert "torch" not in sys.modules  # jittor would import it by itself

    assert port.jt.flags.use_cuda == 0 or "nvcc_path" not in JITTOR_SETTINGS
    if system_onednn() is not None:
        assert JITTOR_SETTINGS.get("use_mkl", "1").startswith("1")
