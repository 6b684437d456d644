"""Exact curvature products for networks (R-operator H v, Gauss-Newton G v, Eq. 3.51).

The reference Hessian is built column by column from gradients with a fourth-order
central difference, Richardson-extrapolated once (error O(h^6)): an independent way to
get H that shares nothing with the R-operator but the gradient."""

import numpy as np
import pytest

import ddlib
from ddlib.layers import Linear, Sequential, mlp
from ddlib.layers.activations import ACTIVATION_LAYERS, Tanh
from ddlib.layers.batchnorm import BatchNorm
from ddlib.layers.maxout import Maxout
from ddlib.losses import MSE, SoftmaxCrossEntropy
from ddlib.optim.second_order import Curvature, Flattener, fd_hvp, gvp, hvp
from tests.conftest import SIMULATOR


def _grad(model, loss, X, y, fl, w):
    fl.assign(model.params, w)
    return fl.flatten(Curvature(model, loss, X, y).grad)


def explicit_hessian(model, loss, X, y, h=2e-4):
    fl = Flattener(model.params)
    w0 = fl.flatten(model.params)
    d = fl.size

    def stencil(j, h):
        e = np.zeros(d)
        e[j] = h
        g = lambda w: _grad(model, loss, X, y, fl, w)  # noqa: E731
        return (-g(w0 + 2 * e) + 8 * g(w0 + e) - 8 * g(w0 - e) + g(w0 - 2 * e)) / (12 * h)

    H = np.empty((d, d))
    for j in range(d):
        H[:, j] = (64 * stencil(j, h / 2) - stencil(j, h)) / 63
    fl.assign(model.params, w0)
    return H


def _net(kind, rng, dtype=np.float64):
    if kind == "bn":
        net = Sequential(Linear(4, 5, rng=rng, dtype=dtype), BatchNorm(5, dtype=dtype), Tanh(),
                         Linear(5, 3, rng=rng, dtype=dtype))
        g = np.random.default_rng(7)
        net[1].params["gamma"][:] = g.uniform(0.5, 1.5, 5)
        net[1].params["beta"][:] = g.normal(size=5)
        return net
    if kind == "nested":
        return Sequential(Sequential(Linear(4, 5, rng=rng, dtype=dtype), Tanh()),
                          Linear(5, 3, rng=rng, dtype=dtype))
    return mlp([4, 5, 4, 3], activation=kind, rng=rng, dtype=dtype)


def _batch(seed=0, n=7):
    g = np.random.default_rng(seed)
    return g.normal(size=(n, 4)), g.integers(0, 3, n)


KINDS = sorted(ACTIVATION_LAYERS) + ["bn", "nested"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lossname", ["xent", "mse"])
def test_hvp_equals_explicit_hessian(kind, lossname):
    net = _net(kind, 1)
    X, y = _batch()
    if lossname == "mse":
        loss, y = MSE(), np.random.default_rng(3).normal(size=(7, 3))
    else:
        loss = SoftmaxCrossEntropy()
    with ddlib.use_backend("numpy"):
        H = explicit_hessian(net, loss, X, y)
        c = Curvature(net, loss, X, y)
        V = np.random.default_rng(2).normal(size=(3, c.size))
        for v in V:
            want = H @ v
            assert np.linalg.norm(c.hvp(v) - want) <= 1e-10 * np.linalg.norm(want)


@pytest.mark.parametrize("kind", ["tanh", "sigmoid", "relu", "bn"])
def test_every_backend_matches_the_reference(backend, kind, dtype):
    if SIMULATOR and backend.name == "cuda" and dtype == np.float32 and kind != "bn":
        # the bn net runs the R-op kernels of the others (linear, softmax, the tanh branch of
        # the activation's second derivative) plus batch norm's; sigmoid's branch and relu
        # run in float64 here, and every case in both dtypes on a GPU
        pytest.skip("on the CUDA simulator the bn case stands for float32 (it runs the others' "
                    "kernels); a GPU runs every case")
    X, y = _batch(1)
    ref_net = _net(kind, 5)
    with ddlib.use_backend("numpy"):
        ref = Curvature(ref_net, SoftmaxCrossEntropy(), X, y)
        v = np.random.default_rng(4).normal(size=ref.size)
        want_h, want_g = ref.hvp(v), ref.gvp(v)
    net = _net(kind, 5, dtype=dtype).to(backend.name)
    c = Curvature(net, SoftmaxCrossEntropy(), X, y)
    got_h, got_g = c.hvp(v), c.gvp(v)
    rtol = 1e-4 if dtype == np.float32 else 1e-11
    assert np.linalg.norm(got_h - want_h) <= rtol * np.linalg.norm(want_h)
    assert np.linalg.norm(got_g - want_g) <= rtol * np.linalg.norm(want_g)
    # symmetry and semidefiniteness on this backend
    u = np.random.default_rng(5).normal(size=c.size)
    hu = c.hvp(u)
    scale = np.linalg.norm(hu) * np.linalg.norm(v)
    assert abs(u @ got_h - v @ hu) <= 10 * rtol * scale
    assert v @ got_g >= -rtol * np.linalg.norm(got_g) * np.linalg.norm(v)


@pytest.mark.parametrize("kind", ["tanh", "relu", "bn"])
def test_gauss_newton_is_symmetric_positive_semidefinite(kind):
    net = _net(kind, 2)
    X, y = _batch(2)
    with ddlib.use_backend("cpu"):
        c = Curvature(net, SoftmaxCrossEntropy(), X, y, exact=False)
        G = np.column_stack([c.gvp(e) for e in np.eye(c.size)])
        H = np.column_stack([Curvature(net, SoftmaxCrossEntropy(), X, y).hvp(e)
                             for e in np.eye(c.size)[:3]])
    assert np.abs(G - G.T).max() <= 1e-14 * np.abs(G).max() + 1e-300
    assert np.linalg.eigvalsh((G + G.T) / 2).min() >= -1e-12 * np.abs(G).max()
    # the exact Hessian differs from G on a curved network (else this test proves nothing)
    assert np.abs(H - G[:, :3]).max() > 1e-6


def test_gauss_newton_equals_hessian_for_a_linear_model():
    # with no hidden layer the scores are linear in the weights, so J^T H_L J is all of H
    net = Sequential(Linear(4, 3, rng=0))
    X, y = _batch(3)
    c = Curvature(net, SoftmaxCrossEntropy(), X, y)
    v = np.random.default_rng(0).normal(size=c.size)
    np.testing.assert_allclose(c.gvp(v), c.hvp(v), rtol=1e-12, atol=1e-15)


def test_dict_and_flat_directions_agree_and_keep_their_form():
    net = _net("tanh", 3)
    X, y = _batch(4)
    c = Curvature(net, SoftmaxCrossEntropy(), X, y)
    v = np.random.default_rng(1).normal(size=c.size)
    tree = c.flattener.unflatten(v)
    out = c.hvp(tree)
    assert isinstance(out, dict) and list(out) == list(net.params)
    for n, p in net.params.items():
        assert out[n].shape == p.shape and out[n].dtype == p.dtype
    np.testing.assert_allclose(c.flattener.flatten(out), c.hvp(v), rtol=1e-14)
    # the one-shot helpers agree with the object
    np.testing.assert_allclose(hvp(net, SoftmaxCrossEntropy(), X, y, v), c.hvp(v), rtol=1e-13)
    np.testing.assert_allclose(gvp(net, SoftmaxCrossEntropy(), X, y, v), c.gvp(v), rtol=1e-13)


def test_the_model_is_left_as_it_was(backend):
    net = _net("bn", 4).to(backend.name)
    X, y = _batch(5)
    for _, layer, k in net.named_parameters():
        backend.fill(layer.grads[k], 0.25)
    before = net.state_dict()
    grads = {n: backend.to_numpy(g).copy() for n, g in net.grads.items()}
    seen = net[1].batches_seen
    c = Curvature(net, SoftmaxCrossEntropy(), X, y)
    c.hvp(np.ones(c.size))
    c.gvp(np.ones(c.size))
    after = net.state_dict()
    for n in before:
        np.testing.assert_array_equal(before[n], after[n])
    for n, g in net.grads.items():
        np.testing.assert_array_equal(backend.to_numpy(g), grads[n])
    assert net[1].batches_seen == seen
    # the gradient it reports is the batch's gradient
    ref = _net("bn", 4)
    with ddlib.use_backend("numpy"):
        out = ref.forward(X)
        loss = SoftmaxCrossEntropy()
        loss.forward(out, y)
        ref.backward(loss.backward())
    for n, g in ref.grads.items():
        np.testing.assert_allclose(backend.to_numpy(c.grad[n]), g, rtol=1e-10, atol=1e-13)


def test_products_stay_valid_after_another_forward_pass():
    net = _net("tanh", 6)
    X, y = _batch(6)
    loss = SoftmaxCrossEntropy()
    c = Curvature(net, loss, X, y)
    v = np.random.default_rng(2).normal(size=c.size)
    first = c.hvp(v)
    net.forward(np.random.default_rng(9).normal(size=(3, 4)))   # other caches now
    loss.forward(net.forward(X[:2]), y[:2])
    np.testing.assert_array_equal(c.hvp(v), first)


def test_finite_differences_approach_the_exact_product():
    net = _net("sigmoid", 7)
    X, y = _batch(7)
    loss = SoftmaxCrossEntropy()
    exact = hvp(net, loss, X, y, v := np.random.default_rng(3).normal(size=Flattener(net.params).size))
    central = fd_hvp(net, loss, X, y, v)
    forward = fd_hvp(net, loss, X, y, v, method="forward")
    err = lambda a: np.linalg.norm(a - exact) / np.linalg.norm(exact)  # noqa: E731
    assert err(central) < 1e-8
    assert err(central) < err(forward) < 1e-5
    w = Flattener(net.params).flatten(net.params)
    np.testing.assert_array_equal(Flattener(net.params).flatten(net.params), w)  # restored


def test_clear_errors():
    X, y = _batch(8)
    net = _net("tanh", 8)
    c = Curvature(net, SoftmaxCrossEntropy(), X, y, exact=False)
    with pytest.raises(RuntimeError, match="exact=True"):
        c.hvp(np.zeros(c.size))
    with pytest.raises(ValueError, match=f"{c.size} entries"):
        c.gvp(np.zeros(c.size + 1))
    bad = np.zeros(c.size)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        c.gvp(bad)
    with pytest.raises(ValueError, match="missing"):
        c.gvp({"0.W": net.params["0.W"]})
    odd = Sequential(Linear(4, 6, rng=0), Maxout(6, 3, k=2, rng=0))
    with pytest.raises(NotImplementedError, match="Maxout"):
        Curvature(odd, SoftmaxCrossEntropy(), X, y)
    with pytest.raises(TypeError, match="loss"):
        Curvature(net, "xent", X, y)
