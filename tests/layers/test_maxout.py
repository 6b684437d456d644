"""Maxout and PReLU (Secs. 3.4.3.1-3.4.3.2): formulas, gradient checks, special cases."""

import doctest

import numpy as np
import pytest

import ddlib.layers.maxout as maxout_mod
from ddlib import optim
from ddlib.gradcheck import KINK_THRESHOLD, SMOOTH_THRESHOLD, check_model
from ddlib.layers import Linear, Sequential, Tanh
from ddlib.layers.maxout import Maxout, PReLU
from ddlib.losses import MSE, SoftmaxCrossEntropy
from tests.conftest import tol


def test_docstring_examples():
    assert doctest.testmod(maxout_mod).failed == 0


def test_maxout_forward_is_the_max_over_pieces(backend, dtype):
    rng = np.random.default_rng(0)
    layer = Maxout(4, 3, k=3, rng=0, dtype=dtype).to(backend.name)
    x = rng.normal(size=(5, 4)).astype(dtype)
    out = backend.to_numpy(layer(backend.asarray(x)))
    pieces = [layer.piece(p) for p in range(3)]
    expect = np.max([x @ W + b for W, b in pieces], axis=0)
    np.testing.assert_allclose(out, expect, **tol(dtype))
    assert out.dtype == dtype and out.shape == (5, 3)


def test_maxout_gradient_flows_through_the_winner_only(backend):
    layer = Maxout(2, 1, k=2, rng=0).to(backend.name)
    W = np.array([[1.0, -1.0], [2.0, 0.5]])  # piece 0: x1 + 2 x2, piece 1: -x1 + 0.5 x2
    layer.params["W"] = backend.asarray(W)
    x = np.array([[1.0, 1.0], [-3.0, 0.0]])  # row 0: piece 0 wins (3 > -0.5); row 1: piece 1
    layer(backend.asarray(x))
    dx = backend.to_numpy(layer.backward(backend.asarray(np.array([[1.0], [10.0]]))))
    np.testing.assert_allclose(dx, [[1.0, 2.0], [-10.0, 5.0]])
    np.testing.assert_allclose(backend.to_numpy(layer.grads["W"]), [[1.0, -30.0], [1.0, 0.0]])
    np.testing.assert_allclose(backend.to_numpy(layer.grads["b"]), [1.0, 10.0])


@pytest.mark.parametrize("k", [2, 3])
def test_maxout_network_passes_the_gradient_check(k):
    rng = np.random.default_rng(k)
    net = Sequential(Maxout(5, 4, k=k, rng=1), Maxout(4, 3, k=k, rng=2), Linear(3, 3, rng=3))
    x, y = rng.normal(size=(6, 5)), rng.integers(0, 3, 6)
    report = check_model(net, SoftmaxCrossEntropy(), x, y, check_input=True)
    # piecewise linear: away from ties the check is as tight as for a smooth function
    assert report.worst_rho < SMOOTH_THRESHOLD, report


def test_maxout_with_a_zero_piece_is_a_relu():
    layer = Maxout(3, 2, k=2, rng=0)
    W = layer.params["W"]
    W[:, 1::2] = 0.0  # piece 1 is the constant 0
    x = np.random.default_rng(0).normal(size=(7, 3))
    W0, b0 = layer.piece(0)
    np.testing.assert_allclose(layer(x), np.maximum(x @ W0 + b0, 0.0))


def test_maxout_with_scaled_piece_is_a_leaky_relu():
    layer = Maxout(3, 2, k=2, rng=0)
    W = layer.params["W"]
    W[:, 1::2] = 0.1 * W[:, 0::2]
    x = np.random.default_rng(1).normal(size=(7, 3))
    v = x @ layer.piece(0)[0]
    np.testing.assert_allclose(layer(x), np.where(v > 0, v, 0.1 * v))


def test_maxout_has_k_times_the_parameters_and_independent_pieces():
    layer = Maxout(6, 4, k=2, init="kaiming_normal", rng=0)
    assert layer.params["W"].shape == (6, 8) and layer.params["b"].shape == (8,)
    W0, W1 = layer.piece(0)[0], layer.piece(1)[0]
    assert not np.allclose(W0, W1)


def test_maxout_bad_input():
    layer = Maxout(3, 2, k=2, rng=0)
    with pytest.raises(ValueError, match="expects 3"):
        layer(np.ones((2, 4)))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.ones((2, 2)))
    layer(np.ones((2, 3)))
    with pytest.raises(ValueError, match="upstream gradient has shape"):
        layer.backward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="k must be >= 1"):
        Maxout(3, 2, k=0)
    with pytest.raises(ValueError, match="piece p=2 out of range"):
        layer.piece(2)


# ------------------------------------------------------------------ PReLU


def test_prelu_is_equation_3_39(backend, dtype):
    x = np.array([[-2.0, 0.0, 3.0], [1.5, -0.5, -4.0]], dtype)
    act = PReLU(alpha=0.2, dtype=dtype)
    y = backend.to_numpy(act(backend.asarray(x)))
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.2 * x), **tol(dtype))


@pytest.mark.parametrize("width", [None, 4])
def test_prelu_gradients_pass_the_check(width):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    net = Sequential(Linear(3, 4, rng=1), PReLU(alpha=0.3, width=width), Tanh(), Linear(4, 2, rng=2))
    y = rng.normal(size=(6, 2))
    report = check_model(net, MSE(), x, y, check_input=True)
    assert report.worst_rho < KINK_THRESHOLD, report
    assert "1.alpha" in report.per_param and report.per_param["1.alpha"] < SMOOTH_THRESHOLD


def test_prelu_alpha_is_learned_by_the_optimizer():
    rng = np.random.default_rng(0)
    # target is a leaky ReLU with slope 0.5: the learned alpha should move from 0.05 to 0.5
    x = rng.normal(size=(200, 1))
    y = np.where(x > 0, x, 0.5 * x)
    act = PReLU(alpha=0.05)
    net = Sequential(act)
    loss = MSE()
    opt = optim.Optimizer(net, optim.sgd(0.5))
    for _ in range(200):
        net.zero_grad()
        loss.forward(net.forward(x), y)
        net.backward(loss.backward())
        opt.step()
    assert act.alpha[0] == pytest.approx(0.5, abs=1e-3)


def test_fixed_prelu_has_no_parameters_and_matches_leaky_relu():
    from ddlib.layers import LeakyReLU

    act = PReLU(alpha=0.1, learn=False)
    assert act.params == {}
    x = np.random.default_rng(0).normal(size=(4, 5))
    np.testing.assert_allclose(act(x), LeakyReLU(alpha=0.1)(x))
    g = np.ones_like(x)
    np.testing.assert_allclose(act.backward(g), np.where(x > 0, 1.0, 0.1))


def test_prelu_bad_input():
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        PReLU(alpha=-0.1)
    with pytest.raises(ValueError, match="expects 4"):
        PReLU(width=4)(np.ones((2, 3)))
