"""PaddlePaddle port: the shared port checks (tests/port_suite.py) with Paddle's adapter."""

from __future__ import annotations

import numpy as np
import pytest

import zoo

from .port_suite import *  # noqa: F401,F403  the shared tests
from .port_suite import Port

pytestmark = pytest.mark.paddle


class PaddlePort(Port):
    name, extension, modes = "paddle", ".pdparams", ("dynamic", "to_static")

    def __init__(self):
        import paddle

        paddle.set_device("cpu")
        self.paddle = paddle

    def logits(self, model, weights, inputs, mode):
        paddle = self.paddle
        net = zoo.create_model(model, framework="paddle", weights=str(weights))
        net.eval()
        if mode == "to_static":
            spec = paddle.static.InputSpec([None, 3, None, None], "float32")
            net = paddle.jit.to_static(net, input_spec=[spec], full_graph=True)
        with paddle.no_grad():
            return net(paddle.to_tensor(np.load(inputs))).numpy()

    def state_shapes(self, model):
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    def trainable_count(self, model):
        return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)

    def native_load(self, model_name, path):
        net = zoo.create_model(model_name, framework="paddle")
        return net.set_state_dict(self.paddle.load(str(path)))

    def train_losses(self, spec, steps):
        paddle = self.paddle
        net = zoo.create_model(spec, framework="paddle")
        opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=net.parameters())
        x = paddle.to_tensor(np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32))
        y = paddle.to_tensor(np.arange(4))
        losses = []
        for _ in range(steps):
            loss = paddle.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            opt.clear_grad()
            losses.append(float(loss))
        return losses

    def feature_shapes(self, model_name, size):
        net = zoo.create_model(model_name, framework="paddle", features_only=True)
        net.eval()
        return [tuple(f.shape[1:]) for f in net(self.paddle.zeros([1, 3, size, size]))]

    def write_native(self, state_path, out):
        from zoo.convert import convert_here

        convert_here(state_path, "paddle", out=out)


@pytest.fixture(scope="module")
def port():
    return PaddlePort()


def test_linear_weight_is_stored_in_out(port):
    model = zoo.create_model("res2net50_26w_4s", framework="paddle")
    assert tuple(model.state_dict()["fc.weight"].shape) == (2048, 1000)
    assert "layer1.0.bns.0._variance" in model.state_dict()
