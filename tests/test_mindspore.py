"""MindSpore port: the shared port checks (tests/port_suite.py) with MindSpore's adapter."""

from __future__ import annotations

import os

import numpy as np
import pytest

import zoo

from .port_suite import *  # noqa: F401,F403  the shared tests
from .port_suite import Port

pytestmark = pytest.mark.mindspore


class MindSporePort(Port):
    name, extension, modes = "mindspore", ".ckpt", ("pynative", "graph")

    def __init__(self):
        import mindspore

        self.ms = mindspore

    def logits(self, model, weights, inputs, mode):
        ms = self.ms
        ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
        try:
            net = zoo.create_model(model, framework="mindspore", weights=str(weights))
            net.set_train(False)
            return net(ms.Tensor(np.load(inputs))).asnumpy()
        finally:
            ms.set_context(mode=ms.PYNATIVE_MODE)

    def state_shapes(self, model):
        return {p.name: tuple(p.shape) for p in model.get_parameters()}

    def trainable_count(self, model):
        return sum(int(np.prod(p.shape)) for p in model.trainable_params())

    def native_load(self, model_name, path):
        net = zoo.create_model(model_name, framework="mindspore")
        return self.ms.load_param_into_net(net, self.ms.load_checkpoint(str(path)), strict_load=True)

    def train_losses(self, spec, steps):
        ms = self.ms
        net = zoo.create_model(spec, framework="mindspore")
        loss_fn = ms.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
        opt = ms.nn.SGD(net.trainable_params(), learning_rate=0.1)
        step = ms.nn.TrainOneStepCell(ms.nn.WithLossCell(net, loss_fn), opt)
        step.set_train(True)
        x = ms.Tensor(np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32))
        y = ms.Tensor(np.arange(4, dtype=np.int32))
        return [float(step(x, y).asnumpy()) for _ in range(steps)]

    def feature_shapes(self, model_name, size):
        net = zoo.create_model(model_name, framework="mindspore", features_only=True)
        net.set_train(False)
        return [tuple(f.shape[1:]) for f in net(self.ms.ops.zeros((1, 3, size, size), self.ms.float32))]

    def write_native(self, state_path, out):
        from zoo.convert import convert_here

        convert_here(state_path, "mindspore", out=out)


@pytest.fixture(scope="module")
def port():
    return MindSporePort()


def test_leaf_names_are_mindspores_own(port):
    names = {p.name for p in zoo.create_model("res2net50_26w_4s", framework="mindspore").get_parameters()}
    assert {"layer1.0.bns.0.gamma", "layer1.0.bns.0.beta", "layer1.0.bns.0.moving_mean",
            "layer1.0.bns.0.moving_variance", "fc.weight"} <= names


def test_onednn_is_capped_only_where_measured_and_never_over_the_user(monkeypatch):
    """MindSpore's bundled oneDNN is ~70x slower in AVX-512 convolutions on AMD EPYC (see
    zoo/frameworks/mindspore/setup.py): capped there at AVX2, unless the user chose."""
    from zoo.frameworks.mindspore import setup

    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    monkeypatch.setattr(setup, "_cpu", lambda: ("AuthenticAMD", {"avx2", "avx512f"}))
    assert setup.configure() == {} and os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert setup.configure() == {"ONEDNN_MAX_CPU_ISA": "AVX2"} and os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    for cpu in (("GenuineIntel", {"avx2", "avx512f"}), ("AuthenticAMD", {"avx2"})):
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        monkeypatch.setattr(setup, "_cpu", lambda cpu=cpu: cpu)
        assert setup.configure() == {} and "ONEDNN_MAX_CPU_ISA" not in os.environ
