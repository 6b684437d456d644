"""Issue 13, divergence that loses nothing: a refused step leaves model and optimizer as
they were, an overflow with finite gradients is caught, and fit reports one error."""

import numpy as np
import pytest

import ddlib
from ddlib import layers, losses, optim
from ddlib.errors import DivergenceError
from ddlib.optim.base import NonFiniteParameter
from ddlib.train import DivergedStep, fit


def _net(dtype=np.float64):
    return layers.mlp([3, 5, 2], rng=0, dtype=dtype)


def _grads(net, X, y):
    loss = losses.SoftmaxCrossEntropy()
    net.zero_grad()
    loss.forward(net.forward(X), y)
    net.backward(loss.backward(), need_dx=False)


def _data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(16, 3))
    return X, (X[:, 0] > 0).astype(np.int64)


def _snapshot(net, opt):
    from ddlib.backend.arrays import tree_leaves
    return ({k: v.copy() for k, v in net.state_dict().items()},
            [np.array(a, copy=True) for a in tree_leaves(opt.state_dict())], opt.steps)


def _same(a, b):
    assert a[2] == b[2]
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])
    assert len(a[1]) == len(b[1])
    for x, y in zip(a[1], b[1]):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("fused", ["auto", False])
@pytest.mark.parametrize("name", list(optim.RULES))
def test_nan_gradient_step_loses_nothing(backend, fused, name):
    with ddlib.use_backend(backend):
        net = _net()
        opt = optim.Optimizer(net, optim.RULES[name](), fused=fused)
        X, y = _data()
        for _ in range(2):
            _grads(net, X, y)
            opt.step()
        _grads(net, X, y)
        before = _snapshot(net, opt)
        net[0].grads["W"][0, 0] = np.nan
        with pytest.raises(optim.NonFiniteGradient, match="'0.W' at optimizer step 2"):
            opt.step()
        _same(before, _snapshot(net, opt))   # every entry, not only the NaN one
        _grads(net, X, y)
        opt.step()                            # and training goes on
        assert opt.steps == 3


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("fused", ["auto", False])
@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad"])
def test_overflow_with_finite_gradients_is_caught_and_undone(backend, fused, name):
    with ddlib.use_backend(backend):
        net = _net()
        opt = optim.Optimizer(net, optim.RULES[name](lr=1e308), fused=fused)
        X, y = _data()
        _grads(net, X, y)
        for _, layer, k in net.named_parameters():
            layer.grads[k][...] = 1e10   # finite, but lr * g overflows
        before = _snapshot(net, opt)
        with pytest.raises(NonFiniteParameter, match="'0.W'.*step 0") as err:
            opt.step()
        assert err.value.param == "0.W" and err.value.step == 0
        assert isinstance(err.value, optim.NonFiniteGradient)
        _same(before, _snapshot(net, opt))


def test_all_finite_fast_path_and_overflowing_sum():
    from ddlib.optim.base import all_finite
    assert all_finite(np.array([1e308, 1e308]))        # the sum overflows, entries do not
    assert not all_finite(np.array([1.0, np.inf]))
    assert not all_finite(np.array([np.inf, -np.inf]))
    assert not all_finite(np.array([[1.0], [np.nan]], np.float32))
    assert all_finite(np.zeros(0))


def test_check_false_defers_and_documents():
    net = _net()
    opt = optim.Optimizer(net, optim.sgd(0.1))
    X, y = _data()
    _grads(net, X, y)
    net[0].grads["b"][0] = np.inf
    opt.step(check=False)       # nothing raised: the deferred path
    assert opt.steps == 1
    with pytest.raises(optim.NonFiniteGradient, match="'0.b'"):
        opt.check_finite()


def test_fit_reports_a_refused_step_with_loss_and_parameter():
    X, y = _data()
    X = X * 100                         # gradients of tens: 1e308 * g overflows at once
    net = _net()
    opt = optim.Optimizer(net, optim.sgd(1e308))
    before = {k: v.copy() for k, v in net.state_dict().items()}
    with pytest.raises(DivergedStep) as err:
        fit(net, losses.SoftmaxCrossEntropy(), opt, X, y, epochs=1, batch_size=8, seed=0,
            max_loss=np.inf)
    e = err.value
    assert isinstance(e, DivergenceError) and isinstance(e, optim.NonFiniteGradient)
    assert e.step == 0 and np.isfinite(e.loss) and e.param
    assert "step 0" in str(e) and "loss =" in str(e) and repr(e.param) in str(e)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert opt.steps == 0


def test_fit_non_finite_loss_is_a_divergence_not_a_gradient_error(recwarn):
    X, y = _data()
    X = X * 1e200                       # the forward pass overflows
    net = _net()
    opt = optim.Optimizer(net, optim.sgd(0.1))
    with pytest.raises(DivergenceError) as err:
        fit(net, losses.SoftmaxCrossEntropy(), opt, X, y, epochs=1, batch_size=8, seed=0,
            max_loss=np.inf)
    assert err.value.step in (0, 1) and "loss =" in str(err.value)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_fit_loss_above_max_loss_touches_nothing():
    X, y = _data()
    net = _net()
    opt = optim.Optimizer(net, optim.sgd(0.1))
    before = {k: v.copy() for k, v in net.state_dict().items()}
    with pytest.raises(DivergenceError, match="step 0"):
        fit(net, losses.SoftmaxCrossEntropy(), opt, X, y, epochs=1, batch_size=8,
            max_loss=1e-9)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_fit_reports_non_finite_scores_as_a_divergence():
    X, y = _data()
    net = _net()
    opt = optim.Optimizer(net, optim.sgd(1e306))   # finite first update, then inf scores
    with pytest.raises(DivergenceError, match="non-finite scores") as err:
        fit(net, losses.SoftmaxCrossEntropy(), opt, X, y, epochs=2, batch_size=8, seed=0,
            max_loss=np.inf)
    assert err.value.step >= 1
