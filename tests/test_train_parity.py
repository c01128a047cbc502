"""`zoo verify --train`: every port trains like the torch reference, and a port that does not is
caught at the place it goes wrong.

The port checks run the command as a user does (each framework in its own worker); the
convention checks hold the framework record's training facts against each framework's own
BatchNorm, in that framework's test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from zoo.frameworks import FRAMEWORKS
from zoo.parity import GRADIENT_LIMIT, PARITY_LIMIT
from zoo.spec import Res2NetSpec

from .mutations import mutated

VARIANTS = ["res2net50_26w_4s", "res2net50_v1b_26w_4s", "res2next50", "res2net_dla60", "res2net50_vd_26w_4s"]
CUSTOM = Res2NetSpec((2, 1, 1), base_width=10, scale=5, cardinality=2, num_classes=7, stem="deep",
                     shortcut="avgpool_conv", se=True)
# the mutations' model: Res2Net-50's blocks (w 26, s 4) at two blocks per early stage, ten classes
SMALL = Res2NetSpec((2, 2, 1, 1), base_width=26, scale=4, num_classes=10)


def each_framework(*names):
    return [pytest.param(fw, marks=getattr(pytest.mark, fw)) for fw in (names or FRAMEWORKS)]


def zoo_cli(*args, env=None, timeout=1800):
    return subprocess.run([sys.executable, "-m", "zoo.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="module")
def custom_spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "custom.json"
    path.write_text(CUSTOM.to_json())
    return path


@pytest.fixture(scope="module")
def small_spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "small.json"
    path.write_text(SMALL.to_json())
    return path


def verify_train(*args, env=None):
    result = zoo_cli("verify", "--train", "--json", *args, env=env)
    rows = json.loads(result.stdout) if result.stdout.strip() else []
    return result, rows


@pytest.mark.parametrize("framework", each_framework())
def test_every_port_trains_like_the_reference(framework, custom_spec):
    # torch against itself only shows the check is exact where nothing differs: two models suffice
    models = VARIANTS if framework != "torch" else VARIANTS[:1]
    result, rows = verify_train(*models, custom_spec, "-f", framework)
    assert result.returncode == 0, result.stderr
    assert [r["model"] for r in rows] == models + ["custom"]
    for r in rows:
        assert r["passed"] and r["first_over"] is None, r["model"]
        assert r["weights"] == "random, calibrated BN" and (r["image_size"], r["batch"], r["steps"]) == (64, 4, 3)
        # every quantity was compared: all stage outputs, every parameter's gradient, every step
        assert r["checked"]["stage"] >= 4 and r["checked"]["loss"] == 3
        assert r["checked"]["gradient"] * 3 == r["checked"]["momentum"] == r["checked"]["parameter"]
        assert r["checked"]["statistic"] > 0
        for kind, limit in (("stage", PARITY_LIMIT), ("loss", PARITY_LIMIT), ("statistic", PARITY_LIMIT),
                            ("parameter", PARITY_LIMIT), ("gradient", GRADIENT_LIMIT), ("momentum", GRADIENT_LIMIT)):
            assert r["worst"][kind]["rel"] <= limit, (r["model"], kind, r["worst"][kind])
        # a real training step moved the weights: losses of order 1-10, not a frozen copy
        assert all(1.0 < step["reference"] < 30.0 for step in r["losses"])
        if framework == "torch":  # the same code on the same machine: bit for bit
            assert all(w["rel"] == 0.0 for w in r["worst"].values())
        else:
            assert r["worst"]["gradient"]["rel"] > 0.0
        # only a handful of the millions of ReLU inputs lie within rounding of the kink
        assert all(0 <= n < 100 for n in r["kinks_followed"]) and not r["kinks_note"]


@pytest.mark.parametrize("framework", each_framework("paddle", "mindspore", "jittor"))
def test_nesterov_and_no_decay_on_norms_and_biases(framework, custom_spec):
    result, rows = verify_train(custom_spec, "-f", framework, "--nesterov", "--no-decay-norm-and-bias", "--lr",
                                "0.05", "--steps", "2")
    assert result.returncode == 0, result.stderr
    assert rows[0]["passed"] and "Nesterov" in rows[0]["optimizer"] and "no decay on norms" in rows[0]["optimizer"]


def _first_over(rows):
    assert len(rows) == 1 and not rows[0]["passed"]
    return rows[0]["first_over"]


@pytest.mark.paddle
def test_a_wrong_batchnorm_momentum_convention_is_named(tmp_path, small_spec):
    """Paddle's momentum given in torch's direction (0.1 meaning keep 10% of the running value):
    the train-mode forward, loss and gradients stay right; the first BatchNorm's statistics are not."""
    env = mutated(tmp_path, at_start="""
        import dataclasses
        import zoo.frameworks as f
        paddle = f.FRAMEWORKS["paddle"]
        f.FRAMEWORKS["paddle"] = dataclasses.replace(paddle, training=dataclasses.replace(paddle.training,
                                                                                          bn_momentum="new"))
        """)
    result, rows = verify_train(small_spec, "-f", "paddle", env=env)
    assert result.returncode == 9
    first = _first_over(rows)
    assert (first["kind"], first["name"], first["step"]) == ("statistic", "bn1.running_mean", 1)
    assert rows[0]["worst"]["gradient"]["rel"] <= GRADIENT_LIMIT and rows[0]["worst"]["stage"]["rel"] <= PARITY_LIMIT


@pytest.mark.mindspore
def test_weight_decay_on_batchnorm_in_one_framework_only_is_named(tmp_path, small_spec):
    """MindSpore's own default, given a plain parameter list: no weight decay on any parameter
    named gamma or beta, where torch decays them. A BatchNorm parameter's momentum buffer shows it
    after the first step (a change of lr * 1e-4 to the weights, far below the parity limit); the
    first one named is the first whose gradient is small enough for 1e-4 * gamma to exceed 1e-3
    of it."""
    from zoo.spec import canonical_layout

    env = mutated(tmp_path, after_import=("zoo.frameworks.mindspore.train", """
        from mindspore import nn

        def create_optimizer(model, sgd):
            return nn.Momentum(model.trainable_params(), learning_rate=sgd.lr, momentum=sgd.momentum,
                               weight_decay=sgd.weight_decay)

        module.create_optimizer = create_optimizer
        """))
    result, rows = verify_train(small_spec, "-f", "mindspore", env=env)
    assert result.returncode == 9
    first = _first_over(rows)
    role = {t.name: t.role for t in canonical_layout(SMALL)}
    assert (first["kind"], first["step"]) == ("momentum", 1) and role[first["name"]] in ("bn_weight", "bn_bias")
    assert rows[0]["worst"]["gradient"]["rel"] <= GRADIENT_LIMIT


@pytest.mark.jittor
def test_a_gradient_cut_in_one_split_is_named(tmp_path, small_spec):
    """layer2.1 with its third split's hierarchical input detached: the forward is unchanged, the
    gradients of the splits before it are not; the first wrong one in backward order is in that
    block, at the split whose output was cut."""
    env = mutated(tmp_path, after_import=("zoo.frameworks.jittor.model", """
        import types

        import jittor as jt

        def cut(self, x, shortcut=None):
            shortcut = (self.downsample(x) if self.downsample is not None else x) if shortcut is None else shortcut
            out = self.relu(self.bn1(self.conv1(x)))
            w = self.width
            splits = [out[:, i * w:(i + 1) * w] for i in range(self.scale)]
            outs, sp = [], splits[0]
            for i in range(len(self.convs)):
                if i > 0:
                    sp = (sp.detach() if i == 2 else sp) + splits[i]
                sp = self.relu(self.bns[i](self.convs[i](sp)))
                outs.append(sp)
            outs.append(splits[-1])
            return self.relu(self.bn3(self.conv3(jt.concat(outs, dim=1))) + shortcut)

        build = module.build_model

        def build_model(spec, **kwargs):
            net = build(spec, **kwargs)
            block = net.layer2[1]
            block.execute = types.MethodType(cut, block)
            return net

        module.build_model = build_model
        """))
    result, rows = verify_train(small_spec, "-f", "jittor", env=env)
    assert result.returncode == 9
    first = _first_over(rows)
    assert first["kind"] == "gradient" and first["name"].startswith("layer2.1.bns.1.")
    assert first["rel"] > 0.05 and not first.get("note")  # a real difference, not a missing gradient
    assert rows[0]["worst"]["stage"]["rel"] <= PARITY_LIMIT


@pytest.mark.paddle
def test_a_frozen_stage_fails_loudly(tmp_path, small_spec):
    env = mutated(tmp_path, after_import=("zoo.frameworks.paddle.model", """
        build = module.build_model

        def build_model(spec, **kwargs):
            net = build(spec, **kwargs)
            for p in net.layer1.parameters():
                p.stop_gradient = True
            return net

        module.build_model = build_model
        """))
    result = zoo_cli("verify", "--train", small_spec, "-f", "paddle", env=env)
    assert result.returncode == 9
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "do not train like the reference" in error[0]
    assert "gradient of layer1.1.bn3.bias: received no gradient in paddle" in error[0]
    assert "FAIL" in result.stdout and "first over its limit: gradient of layer1." in result.stdout


@pytest.mark.parametrize("args, message", [
    (["res2net101_v1d_26w_4s", "-f", "paddle"], "no classifier to train"),
    (["res2net50", "-f", "mindspore", "--mode", "graph"], "mindspore trains in pynative mode, not 'graph'"),
    (["res2net50", "-f", "paddle", "--batch-size", "1"], "--batch-size at least 2"),
    (["res2net50", "-f", "paddle", "--momentum", "1.5"], "0 <= momentum < 1"),
])
def test_bad_requests_are_refused_before_any_work(args, message):
    result = zoo_cli("verify", "--train", *args, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip().split('error: ', 1)[1]}"]
    assert message in result.stderr


# --- the framework record's training facts, against each framework's own layers -------------


def _own_batchnorm_step(framework: str, x: np.ndarray, torch_momentum: float):
    """One train-mode step of the framework's own BatchNorm (not zoo's), momentum given in the
    framework's convention according to the record; returns (running mean, running variance)."""
    momentum = FRAMEWORKS[framework].training.native_bn_momentum(torch_momentum)
    if framework == "torch":
        import torch

        bn = torch.nn.BatchNorm2d(x.shape[1], momentum=momentum).train()
        bn(torch.from_numpy(x))
        return bn.running_mean.numpy(), bn.running_var.numpy()
    if framework == "paddle":
        import paddle

        bn = paddle.nn.BatchNorm2D(x.shape[1], momentum=momentum)
        bn.train()
        bn(paddle.to_tensor(x))
        return bn._mean.numpy(), bn._variance.numpy()
    if framework == "mindspore":
        import mindspore as ms

        bn = ms.nn.BatchNorm2d(x.shape[1], momentum=momentum)
        bn.set_train(True)
        bn(ms.Tensor(x))
        return bn.moving_mean.asnumpy(), bn.moving_variance.asnumpy()
    import zoo.frameworks.jittor  # noqa: F401  configures Jittor before its import
    import jittor as jt

    bn = jt.nn.BatchNorm2d(x.shape[1], momentum=momentum)
    bn.train()
    bn(jt.array(x))
    return bn.running_mean.numpy(), bn.running_var.numpy()


@pytest.mark.parametrize("framework", each_framework())
def test_the_record_states_the_frameworks_own_batchnorm(framework):
    x = (np.random.default_rng(0).standard_normal((4, 3, 2, 2)) * 2 + 1).astype(np.float32)
    mean, var = _own_batchnorm_step(framework, x, torch_momentum=0.1)
    # the record's momentum direction: 10% of the batch value, as torch's 0.1
    np.testing.assert_allclose(mean, 0.1 * x.mean((0, 2, 3)), rtol=1e-5, atol=1e-7)
    ddof = 1 if FRAMEWORKS[framework].training.running_var == "unbiased" else 0
    np.testing.assert_allclose(var, 0.9 + 0.1 * x.var((0, 2, 3), ddof=ddof), rtol=1e-5)


@pytest.mark.parametrize("framework", each_framework())
def test_zoo_batchnorm_stores_torchs_running_statistics(framework):
    """zoo's BatchNorm in every port, whatever its framework stores: momentum 0.1 on the batch
    value and the unbiased batch variance, as torch's own (checked against torch above)."""
    import importlib

    port = importlib.import_module(f"zoo.frameworks.{framework}.model")
    x = (np.random.default_rng(1).standard_normal((4, 3, 2, 2)) * 2 + 1).astype(np.float32)
    bn = port._bn(3)
    mean, var = _run_batchnorm(framework, bn, x)
    np.testing.assert_allclose(mean, 0.1 * x.mean((0, 2, 3)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(var, 0.9 + 0.1 * x.var((0, 2, 3), ddof=1), rtol=1e-5)


def _run_batchnorm(framework: str, bn, x: np.ndarray):
    if framework == "torch":
        import torch

        bn.train()(torch.from_numpy(x))
        return bn.running_mean.numpy(), bn.running_var.numpy()
    if framework == "paddle":
        import paddle

        bn.train()
        bn(paddle.to_tensor(x))
        return bn._mean.numpy(), bn._variance.numpy()
    if framework == "mindspore":
        import mindspore as ms

        bn.set_train(True)
        bn(ms.Tensor(x))
        return bn.moving_mean.asnumpy(), bn.moving_variance.asnumpy()
    import jittor as jt

    bn.train()
    bn(jt.array(x))
    return bn.running_mean.numpy(), bn.running_var.numpy()


@pytest.mark.parametrize("framework", each_framework())
def test_create_optimizer_is_the_frameworks_own_with_decay_groups(framework):
    import zoo

    spec = Res2NetSpec((1,), base_width=8, scale=2, num_classes=3, se=True)
    model = zoo.create_model(spec, framework)
    optimizer = zoo.create_optimizer(model, framework, lr=0.05, momentum=0.8, weight_decay=1e-3,
                                     decay_norm_and_bias=False)
    own = {"torch": "torch.optim.sgd.SGD", "paddle": "paddle.optimizer.momentum.Momentum",
           "mindspore": "mindspore.nn.optim.momentum.Momentum", "jittor": "jittor.optim.SGD"}[framework]
    assert f"{type(optimizer).__module__}.{type(optimizer).__name__}" == own
    groups = _decay_by_rank(framework, optimizer)
    assert groups == {1: {0.0}, 2: {1e-3}, 4: {1e-3}}  # 1-d: norms and biases; 2-d: fc; 4-d: convs


def _decay_by_rank(framework, optimizer) -> dict[int, set[float]]:
    """rank of each parameter -> the weight decays the optimizer gives parameters of that rank"""
    out: dict[int, set[float]] = {}
    if framework == "mindspore":
        for p, wd in zip(optimizer.parameters, optimizer.group_weight_decay):
            out.setdefault(len(p.shape), set()).add(round(float(wd), 9))
        return out
    for group in (optimizer._param_groups if framework == "paddle" else optimizer.param_groups):
        if framework == "paddle":
            wd = group.get("regularization_coeff", 0.0)
        else:
            wd = group.get("weight_decay", getattr(optimizer, "weight_decay", 0.0))
        for p in group["params"]:
            out.setdefault(len(p.shape), set()).add(round(float(wd), 9))
    return out


@pytest.mark.mindspore
def test_mindspores_own_nesterov_is_plain_momentum_so_zoo_writes_it_out():
    """Why zoo.frameworks.mindspore.train.NesterovMomentum exists: MindSpore 2.10's own
    ``nn.Momentum(use_nesterov=True)`` takes the plain momentum step on the CPU. If this starts
    failing, MindSpore fixed it and the workaround can go."""
    import mindspore as ms
    from mindspore import nn

    from zoo.frameworks.mindspore.train import NesterovMomentum

    p0 = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
    grads = [np.array([[0.1, 0.2], [-0.3, 0.4]], np.float32), np.array([[0.5, -0.1], [0.2, 0.1]], np.float32)]

    def run(make, lr=0.1, m=0.9, wd=0.01):
        p = ms.Parameter(ms.Tensor(p0.copy()), name="w")
        opt = make([{"params": [p], "weight_decay": wd}], lr, m)
        for g in grads:
            opt((ms.Tensor(g),))
        return p.asnumpy()

    def numpy_sgd(nesterov, lr=0.1, m=0.9, wd=0.01):  # torch.optim.SGD's documented update
        p, v = p0.astype(np.float64), np.zeros((2, 2))
        for g in grads:
            d = g + wd * p
            v = m * v + d
            p = p - lr * (d + m * v if nesterov else v)
        return p

    own = run(lambda params, lr, m: nn.Momentum(params, learning_rate=lr, momentum=m, use_nesterov=True))
    np.testing.assert_allclose(own, numpy_sgd(nesterov=False), rtol=1e-6)
    zoos = run(lambda params, lr, m: NesterovMomentum(params, learning_rate=lr, momentum=m))
    np.testing.assert_allclose(zoos, numpy_sgd(nesterov=True), rtol=1e-6)


@pytest.mark.torch
def test_recorded_max_pool_choices_are_torchs_own():
    """The reference's max-pool decisions (zoo.training.max_offsets, in numpy) are the elements
    torch's kernel routes the gradient to, ties and zeros after a ReLU included: a candidate that
    follows them takes the reference's gradient path."""
    import torch
    import torch.nn.functional as F

    from zoo.training import max_offsets

    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((2, 3, 17, 16)), 0).astype(np.float32)
    x[0, 0, 4:8, 4:8] = 1.5  # exact ties
    for k, s, p in ((3, 2, 1), (2, 2, 0)):
        _, index = F.max_pool2d(torch.from_numpy(x), k, s, p, return_indices=True)
        index = index.numpy()
        oh, ow = index.shape[2:]
        a = index // x.shape[3] - (np.arange(oh)[:, None] * s - p)
        b = index % x.shape[3] - (np.arange(ow)[None, :] * s - p)
        np.testing.assert_array_equal(max_offsets(x, k, s, p), a * k + b)


@pytest.mark.jittor
def test_a_max_pool_near_tie_is_followed():
    """res2net101_v1b_26w_4s at 64 px: at step 2 the stem's max pool has windows whose two largest
    inputs differ by less than fp32 rounding (9e-9 of the largest), and Jittor's convolutions take
    the other one. Not followed, the stem's gradient moved by 3e-3 of its peak (over the limit);
    followed, the port passes within the ReLU cases' 1e-5s."""
    result, rows = verify_train("res2net101_v1b_26w_4s", "-f", "jittor")
    assert result.returncode == 0, result.stderr
    assert rows[0]["passed"] and rows[0]["worst"]["momentum"]["rel"] < 1e-4 and sum(rows[0]["kinks_followed"]) > 0
