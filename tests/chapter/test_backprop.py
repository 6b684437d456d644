"""ddlib.chapter.backprop: the post-activation, pre-activation and decoupled recursions agree
(Exercise 9) and match finite differences."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddlib.backend.numpy_ref.core import ACTIVATIONS
from ddlib.chapter import backprop as B
from ddlib.gradcheck import KINK_THRESHOLD, SMOOTH_THRESHOLD
from tests.conftest import SIMULATOR

SMOOTH = ("identity", "sigmoid", "tanh")


def problem(sizes, acts, seed, n=6):
    rng = np.random.default_rng(seed)
    net = B.Network.random(sizes, acts, seed=rng)
    X = rng.standard_normal((n, sizes[0]))
    y = rng.integers(0, sizes[-1], n)
    return net, X, y


def scale(g):
    return max(float(np.max(np.abs(a))) for a in g.dW + g.db)


@pytest.mark.parametrize("name", list(B.RECURSIONS))
def test_each_recursion_matches_the_reference_on_every_backend(backend, name):
    import ddlib

    sizes = [3, 2, 2] if SIMULATOR else [5, 7, 6, 4]
    acts = ["tanh", "identity"] if SIMULATOR else ["sigmoid", "leaky_relu", "identity"]
    net, X, y = problem(sizes, acts, seed=2, n=2 if SIMULATOR else 8)
    got = B.RECURSIONS[name](net, X, y)
    with ddlib.use_backend("numpy"):
        ref = B.pre_activation_backprop(net, X, y)
    assert got.loss == pytest.approx(ref.loss, rel=1e-12)
    # other backends may sum in another order: agreement to rounding, not bit for bit
    assert B.max_difference(got, ref) <= 1e-12 * scale(ref)


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=2, max_size=5).map(lambda s: s + [3]),
       data=st.data(), seed=st.integers(0, 2 ** 31))
def test_three_recursions_agree_on_random_nets(sizes, data, seed):
    acts = data.draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=len(sizes) - 1,
                              max_size=len(sizes) - 1))
    net, X, y = problem(sizes, acts, seed)
    res = B.all_recursions(net, X, y)
    post, pre, dec = res["post-activation"], res["pre-activation"], res["decoupled"]
    s = scale(post)
    assert B.max_difference(post, pre) <= 1e-12 * s
    assert B.max_difference(post, dec) <= 1e-12 * s
    for g in (post, pre, dec):
        assert [a.shape for a in g.dW] == [W.shape for W in net.weights]
        assert [a.shape for a in g.db] == [b.shape for b in net.biases]


@settings(max_examples=10, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2 ** 31))
def test_smooth_nets_pass_gradcheck(data, seed):
    acts = data.draw(st.lists(st.sampled_from(SMOOTH), min_size=3, max_size=3))
    net, X, y = problem([4, 5, 4, 3], acts, seed)
    for fn in B.RECURSIONS.values():
        rho = B.finite_difference_check(net, X, y, fn(net, X, y))
        assert max(rho.values()) < SMOOTH_THRESHOLD, (fn.__name__, acts, rho)


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "hardtanh"])
def test_kinked_nets_pass_gradcheck_at_the_kink_threshold(act):
    net, X, y = problem([4, 6, 5, 3], [act, act, "identity"], seed=5)
    for fn in B.RECURSIONS.values():
        rho = B.finite_difference_check(net, X, y, fn(net, X, y))
        assert max(rho.values()) < KINK_THRESHOLD, (fn.__name__, rho)


def test_a_wrong_gradient_fails_the_check():
    net, X, y = problem([4, 5, 3], ["tanh", "identity"], seed=1)
    g = B.pre_activation_backprop(net, X, y)
    g.dW[0] = g.dW[0] * 1.01
    rho = B.finite_difference_check(net, X, y, g)
    assert rho["W1"] > 1e-3 and rho["W2"] < SMOOTH_THRESHOLD


def test_carried_quantities_are_related_as_the_chapter_says():
    net, X, y = problem([4, 6, 5, 3], ["tanh", "sigmoid", "identity"], seed=7)
    trace = B.forward(net, X)
    deriv = B.activation_derivatives(net, trace)
    post = B.post_activation_backprop(net, X, y)
    pre = B.pre_activation_backprop(net, X, y)
    dec = B.decoupled_backprop(net, X, y)
    L = net.n_layers
    assert len(post.carried) == L + 1 and len(pre.carried) == L and len(dec.carried) == 2 * L + 1
    for r in range(1, L + 1):
        # delta_r = dL/da_r = Phi'(a_r) * dL/dh_r = Phi'(a_r) * Delta_r (Fig. 3.6)
        np.testing.assert_allclose(pre.carried[r - 1], deriv[r - 1] * post.carried[r],
                                   rtol=1e-12, atol=1e-15)
        # decoupled: the gradient after Linear r is delta_r, after its activation Delta_r
        np.testing.assert_allclose(dec.carried[2 * r - 1], pre.carried[r - 1], rtol=1e-12,
                                   atol=1e-15)
        np.testing.assert_allclose(dec.carried[2 * r], post.carried[r], rtol=1e-12, atol=1e-15)
        # Eq. 3.19: dW_r = h_{r-1}^T delta_r
        np.testing.assert_allclose(pre.dW[r - 1], trace.h[r - 1].T @ pre.carried[r - 1],
                                   rtol=1e-12, atol=1e-15)
    # the input gradient of the post-activation recursion matches the decoupled one
    np.testing.assert_allclose(post.carried[0], dec.carried[0], rtol=1e-12, atol=1e-15)


def test_activation_derivatives_use_the_backend_rules():
    net, X, _ = problem([3, 4, 4, 2], ["sigmoid", "tanh", "relu"], seed=3)
    trace = B.forward(net, X)
    d = B.activation_derivatives(net, trace)
    h = trace.h
    np.testing.assert_allclose(d[0], h[1] * (1 - h[1]), rtol=1e-12)
    np.testing.assert_allclose(d[1], 1 - h[2] ** 2, rtol=1e-12)
    np.testing.assert_array_equal(d[2], (trace.a[2] > 0).astype(float))


def test_mse_loss_is_accepted():
    from ddlib.losses import MSE

    net, X, _ = problem([3, 4, 2], ["tanh", "identity"], seed=0)
    t = np.random.default_rng(1).standard_normal((X.shape[0], 2))
    res = B.all_recursions(net, X, t, loss=MSE())
    assert B.max_difference(res["post-activation"], res["decoupled"]) <= 1e-12 * scale(
        res["decoupled"])
    rho = B.finite_difference_check(net, X, t, res["post-activation"], loss=MSE())
    assert max(rho.values()) < SMOOTH_THRESHOLD


def test_table_3_1_rules_hold_on_every_backend(backend):
    # the simulator runs ~0.2 ms per thread: check the rules there, differences elsewhere
    rows = B.table_3_1(seed=0, n=2 if SIMULATOR else 4, d=4 if SIMULATOR else 6,
                       finite_differences=not SIMULATOR)
    assert [r["function"] for r in rows] == ["Linear", "Sigmoid", "Tanh", "ReLU", "Hard tanh",
                                             "Max", "Arbitrary f"]
    for r in rows:
        assert r["rule_error"] <= 1e-12, r
        assert SIMULATOR or r["rho"] < SMOOTH_THRESHOLD, r


def test_network_validation_names_layer_and_shapes():
    W1, W2 = np.zeros((3, 4)), np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"layer 2: W has shape \(5, 2\) but layer 1 outputs 4"):
        B.Network([W1, W2], [np.zeros(4), np.zeros(2)], ["tanh", "identity"])
    with pytest.raises(ValueError, match=r"layer 1: bias has shape \(3,\)"):
        B.Network([W1], [np.zeros(3)], ["tanh"])
    with pytest.raises(ValueError, match="layer 1: activation 'softplus'"):
        B.Network([W1], [np.zeros(4)], ["softplus"])
    with pytest.raises(ValueError, match="as many biases and activations"):
        B.Network([W1], [], ["tanh"])
    net = B.Network([W1], [np.zeros(4)], ["identity"])
    with pytest.raises(ValueError, match=r"input X has shape \(2, 5\) but layer 1 expects"):
        B.forward(net, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="non-finite"):
        B.post_activation_backprop(net, np.full((2, 3), np.nan), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        B.pre_activation_backprop(net, np.zeros((2, 3)), np.array([0, 9]))


def test_to_sequential_matches_network_forward():
    net, X, _ = problem([3, 5, 2], ["leaky_relu", "identity"], seed=4)
    seq = net.to_sequential("numpy")
    assert len(seq.layers) == 4
    np.testing.assert_allclose(seq.forward(X), B.forward(net, X).h[-1], rtol=1e-13)
    # copies: training the Sequential must not change the Network's weights
    seq.layers[0].params["W"][...] = 0.0
    assert np.any(net.weights[0] != 0.0)


def test_finite_difference_gradients_match_the_recursion():
    net, X, y = problem([3, 4, 2], ["sigmoid", "identity"], seed=8)
    fd = B.finite_difference_gradients(net, X, y)
    bp = B.post_activation_backprop(net, X, y)
    assert fd.loss == pytest.approx(bp.loss, rel=1e-14)
    assert B.max_difference(fd, bp) < 1e-9


def test_draw_decoupled_draws_two_boxes_per_layer():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    net, X, y = problem([3, 4, 3, 2], ["tanh", "relu", "identity"], seed=0)
    ax = B.draw_decoupled(net, grads=B.decoupled_backprop(net, X, y))
    assert sum(isinstance(p, FancyBboxPatch) for p in ax.patches) == 2 * net.n_layers
    assert any(t.get_text() == "mean |g|:" for t in ax.texts)
    plt.close(ax.figure)
