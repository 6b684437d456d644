"""Optimizer over a model: fused == explicit, checkpoints resume bit-for-bit, lookahead, NaN."""

import numpy as np
import pytest

import ddlib
from ddlib import layers, losses, optim, train
from tests.conftest import SIMULATOR

RULES = {
    "sgd": lambda: optim.sgd(0.1),
    "momentum": lambda: optim.momentum(0.05, 0.9),
    "nesterov": lambda: optim.nesterov(0.05, 0.9),
    "delta_bar_delta": lambda: optim.delta_bar_delta(0.05),
    "adagrad": lambda: optim.adagrad(0.05),
    "rmsprop": lambda: optim.rmsprop(0.005),
    "rmsprop_nesterov": lambda: optim.rmsprop_nesterov(0.005, 0.8),
    "adadelta": lambda: optim.adadelta(),
    "adam": lambda: optim.adam(0.01),
    "adam_schedule": lambda: optim.adam(optim.step_decay(0.01, step_size=2)),
    "clip_nesterov": lambda: optim.chain(optim.clip_by_norm(0.5), optim.nesterov(0.05)),
    "clip_adam": lambda: optim.chain(optim.clip_by_value(0.05), optim.adam(0.01)),
}

SIZES = [6, 5, 3] if SIMULATOR else [10, 16, 3]
N = 16 if SIMULATOR else 64


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, SIZES[0]))
    y = rng.integers(0, SIZES[-1], size=N)
    return X, y


def _net(be):
    return layers.mlp(SIZES, "tanh", rng=3, dtype=np.float64).to(be.name)


def _train(be, net, opt, steps, start=0):
    X, y = _data()
    loss = losses.SoftmaxCrossEntropy()
    for t in range(start, start + steps):
        idx = np.arange(t * 8, t * 8 + 8) % N
        train.train_step(net, loss, opt, be.asarray(X[idx]), y[idx])


def _weights(be, net):
    return {n: be.to_numpy(layer.params[k]).copy() for n, layer, k in net.named_parameters()}


def _load(be, net, weights):
    for n, layer, k in net.named_parameters():
        layer.params[k] = be.asarray(weights[n].copy())


@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("fused", [True, False])
def test_checkpoint_resumes_bit_for_bit(name, fused):
    backend = ddlib.get_backend("cpu")
    a, b = (3, 3) if SIMULATOR else (5, 6)
    net = _net(backend)
    opt = optim.Optimizer(net, RULES[name](), fused=fused)
    _train(backend, net, opt, a)
    saved_w, saved_opt = _weights(backend, net), opt.state_dict()
    _train(backend, net, opt, b, start=a)
    straight = _weights(backend, net)

    net2 = _net(backend)
    _load(backend, net2, saved_w)
    opt2 = optim.Optimizer(net2, RULES[name](), fused=fused)
    opt2.load_state_dict(saved_opt)
    assert opt2.steps == a
    _train(backend, net2, opt2, b, start=a)
    resumed = _weights(backend, net2)
    for k in straight:
        assert not np.array_equal(straight[k], saved_w[k])
        np.testing.assert_array_equal(resumed[k], straight[k])


class _Quadratic:
    """A model-shaped stand-in: two parameters, gradients set from a host formula."""

    def __init__(self, be):
        rng = np.random.default_rng(2)
        self.be = be
        self.params = {"W": be.asarray(rng.normal(size=(2, 3))), "b": be.asarray(rng.normal(size=4))}
        self.grads = {k: be.zeros(v.shape, np.float64) for k, v in self.params.items()}

    def named_parameters(self):
        return [(k, self, k) for k in self.params]

    def backward(self, t):
        for k, p in self.params.items():
            x = self.be.to_numpy(p)
            g = 2.0 * x - np.cos(x + 0.1 * t)
            self.grads[k] = self.be.asarray(g)


@pytest.mark.parametrize("name", ["adam", "clip_adam", "delta_bar_delta", "rmsprop_nesterov"])
def test_checkpoint_resumes_bit_for_bit_on_every_backend(backend, name):
    def run(model, opt, start, steps):
        for t in range(start, start + steps):
            model.backward(t)
            opt.step()

    m = _Quadratic(backend)
    opt = optim.Optimizer(m, RULES[name]())
    assert opt.use_fused
    run(m, opt, 0, 3)
    saved_w = {k: backend.to_numpy(v).copy() for k, v in m.params.items()}
    saved = opt.state_dict()
    run(m, opt, 3, 3)
    m2 = _Quadratic(backend)
    m2.params = {k: backend.asarray(v.copy()) for k, v in saved_w.items()}
    opt2 = optim.Optimizer(m2, RULES[name]())
    opt2.load_state_dict(saved)
    run(m2, opt2, 3, 3)
    for k in m.params:
        got, want = backend.to_numpy(m2.params[k]), backend.to_numpy(m.params[k])
        assert not np.array_equal(want, saved_w[k])
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", list(RULES))
def test_fused_optimizer_equals_explicit(name):
    with ddlib.use_backend("cpu") as be:
        runs = []
        for fused in (True, False):
            net = _net(be)
            opt = optim.Optimizer(net, RULES[name](), fused=fused)
            assert opt.use_fused is fused
            _train(be, net, opt, 10)
            runs.append(_weights(be, net))
    for k in runs[0]:
        np.testing.assert_allclose(runs[0][k], runs[1][k], rtol=1e-6, atol=1e-12)


def test_nesterov_optimizer_differentiates_at_the_lookahead_point():
    with ddlib.use_backend("numpy") as be:
        net = _net(be)
        rule = optim.nesterov(0.05, 0.9)
        opt = optim.Optimizer(net, rule)
        _train(be, net, opt, 4)
        w = opt.iterate_params()
        look = rule.lookahead(w, opt.state)
        for n, p in opt.params().items():
            np.testing.assert_allclose(p, look[n], rtol=1e-12)
            assert not np.allclose(p, w[n])  # the velocity is not zero
        before = _weights(be, net)
        with opt.swap_iterate():
            for n, p in opt.params().items():
                np.testing.assert_array_equal(p, w[n])
        after = _weights(be, net)
        for k in before:
            np.testing.assert_array_equal(before[k], after[k])


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("name", ["adam", "nesterov", "clip_adam"])
def test_nonfinite_gradient_names_parameter_and_step(name, fused):
    with ddlib.use_backend("cpu") as be:
        net = _net(be)
        opt = optim.Optimizer(net, RULES[name](), fused=fused)
        _train(be, net, opt, 3)
        X, y = _data()
        out = net.forward(X[:8])
        net.backward(_dscores(out, y[:8]), need_dx=False)
        target, layer, key = net.named_parameters()[-1]
        layer.grads[key][0] = np.nan
        with pytest.raises(optim.NonFiniteGradient, match=f"'{target}'.*step 3") as err:
            opt.step()
        assert err.value.param == target and err.value.step == 3
        assert np.isfinite(layer.params[key]).all()


def _dscores(out, y):
    loss = losses.SoftmaxCrossEntropy()
    loss.forward(out, y)
    return loss.backward()


def test_optimizer_rejects_bad_arguments():
    net = _net(ddlib.get_backend("numpy"))
    with pytest.raises(TypeError, match="rule"):
        optim.Optimizer(net, "adam")
    with pytest.raises(ValueError, match="fused"):
        optim.Optimizer(net, optim.adam(), fused="yes")


def test_chain_fusable_only_with_gradient_transforms_first():
    assert optim.chain(optim.clip_by_norm(1.0), optim.adam()).fused is not None
    assert optim.chain(optim.adam(), optim.clip_by_norm(1.0)).fused is None
    with pytest.raises(ValueError, match="lookahead"):
        optim.chain(optim.nesterov(), optim.rmsprop_nesterov())
