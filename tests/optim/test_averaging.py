"""Polyak averaging of Sec. 3.5.7 (Eq. 3.57 and its exponential forms)."""

import numpy as np
import pytest

import ddlib
from ddlib import layers, optim


def _points():
    rng = np.random.default_rng(6)
    return rng.normal(size=(30, 2))


def test_simple_average_is_eq_3_57():
    p = _points()
    avg = optim.average_path(p)
    for t in range(1, len(p) + 1):
        np.testing.assert_allclose(avg[t - 1], p[:t].mean(axis=0), rtol=1e-12)


def test_exponential_explicit_and_recursive_forms():
    p, beta = _points(), 0.8
    exp_ = optim.average_path(p, beta=beta, form="explicit")
    rec = optim.average_path(p, beta=beta, form="recursive")
    for t in range(1, len(p) + 1):
        wts = beta ** np.arange(t - 1, -1, -1)
        np.testing.assert_allclose(exp_[t - 1], (wts[:, None] * p[:t]).sum(0) / wts.sum(),
                                   rtol=1e-12)
    want = p[0].copy()
    for t in range(1, len(p)):
        want = (1 - beta) * p[t] + beta * want
    np.testing.assert_allclose(rec[-1], want, rtol=1e-12)
    # the two agree for large t (the start-up weight decays as beta^t)
    assert np.abs(exp_[-1] - rec[-1]).max() < 10 * beta ** len(p)


def test_averaging_smooths_a_bouncing_path():
    t = np.arange(200)
    bounce = np.stack([np.linspace(-1, 0, 200), 0.5 * (-1.0) ** t], axis=1)
    avg = optim.average_path(bounce, beta=0.9)
    assert np.abs(avg[50:, 1]).max() < 0.1 * np.abs(bounce[50:, 1]).max()


@pytest.mark.parametrize("beta", [None, 0.9])
def test_polyak_average_over_a_model_and_swap(backend, beta):
    net = layers.mlp([3, 4, 2], "tanh", rng=0, dtype=np.float64).to(backend.name)
    named = net.named_parameters()
    avg = optim.PolyakAverage(net, beta=beta, form="explicit")
    history = []
    rng = np.random.default_rng(0)
    for _ in range(4):
        for _, layer, k in named:
            host = backend.to_numpy(layer.params[k]) + rng.normal(size=layer.params[k].shape)
            layer.params[k] = backend.asarray(host)
        history.append({n: backend.to_numpy(layer.params[k]) for n, layer, k in named})
        avg.update()
    pts = {n: np.stack([h[n] for h in history]) for n in history[0]}
    current = history[-1]
    with avg.swapped():
        for n, layer, k in named:
            want = optim.average_path(pts[n].reshape(4, -1), beta=beta, form="explicit")[-1]
            np.testing.assert_allclose(backend.to_numpy(layer.params[k]).ravel(), want,
                                       rtol=1e-12)
    for n, layer, k in named:
        np.testing.assert_array_equal(backend.to_numpy(layer.params[k]), current[n])


def test_polyak_follows_the_iterate_of_a_nesterov_optimizer():
    with ddlib.use_backend("numpy"):
        net = layers.mlp([3, 2], "tanh", rng=0)
        opt = optim.Optimizer(net, optim.nesterov(0.1, 0.9))
        avg = optim.PolyakAverage(opt)
        for _, layer, k in net.named_parameters():
            layer.grads[k][...] = 1.0
        opt.step()
        avg.update()
        for n, w in opt.iterate_params().items():
            np.testing.assert_array_equal(avg.average[n], w)


def test_bad_averaging_arguments():
    with pytest.raises(ValueError, match="beta"):
        optim.average_path(_points(), beta=1.0)
    with pytest.raises(ValueError, match="form"):
        optim.average_path(_points(), beta=0.5, form="other")
