"""Fig. 3.8 chains, Fig. 3.9 descent (chapter.vanishing, .descent) and ddlib.monitor."""

import doctest

import numpy as np
import pytest

from ddlib import monitor, optim
from ddlib.chapter import descent, vanishing
from ddlib.chapter.descent import QuadraticBowl, steepest_descent_path, steps_to_converge
from ddlib.chapter.vanishing import chain_gradients, sigmoid_bound
from ddlib.gradcheck import numerical_gradient
from ddlib.layers import Linear, ReLU, Sequential, mlp
from ddlib.losses import SoftmaxCrossEntropy
from ddlib.monitor import StatsRecorder, backward_norms, batch_stats, dead_fraction, distinct_units


def test_docstring_examples():
    assert all(doctest.testmod(m).failed == 0 for m in (descent, vanishing, monitor))


# ---------------------------------------------------------------- Fig. 3.8


def _chain_output(w, b, x, act):
    return chain_gradients(w, x=x, activation=act, biases=b).h[-1]


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "identity"])
def test_chain_gradients_match_finite_differences(act):
    rng = np.random.default_rng(0)
    w, b, x = rng.normal(size=6), rng.normal(size=6), 0.7
    r = chain_gradients(w, x=x, activation=act, biases=b)
    est = numerical_gradient(lambda: _chain_output(w, b, x, act), w)
    np.testing.assert_allclose(r.dw, est, rtol=1e-6, atol=1e-10)
    # do/dh_t: perturb h_t by re-running the tail of the chain from h_t
    for t in range(5):
        h = np.array([r.h[t]])
        est_h = numerical_gradient(
            lambda t=t, h=h: _chain_output(w[t + 1:], b[t + 1:], h[0], act), h)
        assert r.dh[t] == pytest.approx(est_h[0], rel=1e-6, abs=1e-10)  # FD round-off


def test_equation_3_38_recursion():
    rng = np.random.default_rng(1)
    w = rng.normal(size=8)
    r = chain_gradients(w)
    s = 1 / (1 + np.exp(-r.pre))
    for t in range(7):
        assert r.dh[t] == pytest.approx(s[t + 1] * (1 - s[t + 1]) * w[t + 1] * r.dh[t + 1])


def test_sigmoid_chain_stays_under_the_quarter_power_bound():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(500, 12))
    r = chain_gradients(w, x=rng.normal(size=500))
    g = r.by_distance()  # column r: r layers between h and the output
    # |do/dh_{m-r}| = prod over r layers of Phi' |w| <= 0.25^r prod |w|
    wprod = np.cumprod(np.abs(w[:, ::-1]), axis=1)[:, :-1]
    bound = sigmoid_bound(np.arange(1, 12), wprod)
    assert np.all(g[:, 1:] <= bound * (1 + 1e-12))
    # with standard normal weights the typical gradient falls faster than 0.25^r alone
    med = np.median(g, axis=0)
    assert np.all(med[1:] < 0.25 ** np.arange(1, 12))


def test_chain_with_unit_slope_explodes_and_with_small_weights_vanishes():
    m = 20
    # sigmoid with bias -w/2 sits at a = 0 (slope 1/4) for every layer: factor w/4 per layer
    w = np.full(m, 6.0)
    r = chain_gradients(w, x=0.5, biases=-3.0)
    np.testing.assert_allclose(r.pre, 0.0, atol=1e-12)
    np.testing.assert_allclose(r.by_distance(), 1.5 ** np.arange(m), rtol=1e-10)
    r = chain_gradients(np.full(m, 2.0), x=0.5, biases=-1.0)
    np.testing.assert_allclose(r.by_distance(), 0.5 ** np.arange(m), rtol=1e-10)


def test_chain_bad_input():
    with pytest.raises(ValueError, match="weights must have shape"):
        chain_gradients(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="activation='swish'"):
        chain_gradients(np.ones(3), activation="swish")


# ---------------------------------------------------------------- Fig. 3.9


def test_circular_bowl_converges_in_one_step_with_the_right_step():
    bowl = QuadraticBowl([1.0, 1.0])
    path = steepest_descent_path(bowl.grad, [1.5, -2.0], lr=0.5, steps=3)
    np.testing.assert_allclose(path[1:], 0.0, atol=1e-15)
    assert steps_to_converge(bowl.grad, [1.5, -2.0], lr=bowl.best_lr()) == 1


def test_elliptical_bowl_path_matches_the_closed_form():
    bowl = QuadraticBowl([1.0, 4.0])
    lr = 0.2
    path = steepest_descent_path(bowl.grad, [2.0, 1.0], lr=lr, steps=10)
    k = np.arange(11)
    np.testing.assert_allclose(path[:, 0], 2.0 * (1 - 2 * lr) ** k)
    np.testing.assert_allclose(path[:, 1], 1.0 * (1 - 8 * lr) ** k)  # y flips sign: zig-zag
    assert np.all(np.sign(path[1:, 1]) != np.sign(path[:-1, 1]))


def test_steps_grow_with_the_curvature_ratio():
    steps = []
    for c in (1, 2, 4, 8, 16, 32):
        bowl = QuadraticBowl([1.0, c])
        steps.append(steps_to_converge(bowl.grad, [1.0, 1.0], lr=bowl.best_lr(), tol=1e-6))
    assert steps[0] == 1 and all(b > a for a, b in zip(steps, steps[1:]))
    # with the best fixed step the error shrinks by (c-1)/(c+1) per step
    c = 32
    expect = np.log(1e-6) / np.log((c - 1) / (c + 1))
    assert abs(steps[-1] - expect) <= 3


def test_descent_diverges_with_too_large_a_step():
    bowl = QuadraticBowl([1.0, 4.0])
    assert steps_to_converge(bowl.grad, [1.0, 1.0], lr=0.3, max_steps=500) is None
    path = steepest_descent_path(bowl.grad, [1.0, 1.0], lr=0.3, steps=5)
    assert np.abs(path[-1, 1]) > np.abs(path[0, 1])


def test_bowl_and_descent_bad_input():
    with pytest.raises(ValueError, match="must be finite and > 0"):
        QuadraticBowl([1.0, -4.0])
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        steepest_descent_path(QuadraticBowl([1, 1]).grad, [1.0, 1.0], lr=0.0, steps=3)


def test_activation_derivative_maxima_of_figure_3_10():
    v = np.linspace(-6, 6, 2001)
    d = {k: vanishing.activation_derivative(k, v) for k in ("sigmoid", "tanh", "relu",
                                                              "hardtanh")}
    assert d["sigmoid"].max() == pytest.approx(0.25)
    assert d["tanh"].max() == pytest.approx(1.0)
    assert set(np.unique(d["relu"])) == {0.0, 1.0} and set(np.unique(d["hardtanh"])) == {0.0, 1.0}


# ---------------------------------------------------------------- statistics


def test_batch_stats_values():
    a = np.array([[0.0, 1.0, -2.0], [0.0, 3.0, 2.0]])
    s = batch_stats(a)
    assert s["mean"] == pytest.approx(a.mean()) and s["std"] == pytest.approx(a.std())
    assert s["norm"] == pytest.approx(np.sqrt(18 / 2))
    assert s["dead"] == pytest.approx(1 / 3)


def _train(net, X, y, steps, lr=0.1):
    loss = SoftmaxCrossEntropy()
    opt = optim.Optimizer(net, optim.sgd(lr))
    for _ in range(steps):
        net.zero_grad()
        loss.forward(net.forward(X), y)
        net.backward(loss.backward(), need_dx=False)
        opt.step()


def test_recorder_stats_equal_a_manual_pass_and_detach_restores():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 5)), rng.integers(0, 3, 16)
    net = mlp([5, 7, 6, 3], activation="relu", rng=0)
    rec = StatsRecorder(net)
    _train(net, X, y, steps=3)
    assert len(rec.records[0]["act"]) == 3 and len(rec.records[4]["grad"]) == 3
    rec.detach()
    assert "forward" not in net.layers[0].__dict__
    # an unrecorded twin after two steps holds the weights the third recorded step used
    twin = mlp([5, 7, 6, 3], activation="relu", rng=0)
    _train(twin, X, y, steps=2)
    h = X
    for i, layer in enumerate(twin.layers):
        h = layer.forward(h)
        assert rec.records[i]["act"][-1] == pytest.approx(batch_stats(h))
    loss = SoftmaxCrossEntropy()
    loss.forward(h, y)
    g = loss.backward()
    assert rec.records[4]["grad"][-1] == pytest.approx(batch_stats(g))
    twin.zero_grad()
    twin.backward(g, need_dx=False)
    assert rec.series(0, "wgrad")[-1] == pytest.approx(np.linalg.norm(twin.layers[0].grads["W"]))
    # the recorder changed nothing: the recorded net and a third twin trained alike agree
    third = mlp([5, 7, 6, 3], activation="relu", rng=0)
    _train(third, X, y, steps=3)
    np.testing.assert_array_equal(third.state_dict()["0.W"], net.state_dict()["0.W"])


def test_recorder_skips_evaluation_and_honours_every():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 4)), rng.integers(0, 2, 8)
    net = mlp([4, 5, 2], rng=0)
    with StatsRecorder(net, every=2, layers=[1]) as rec:
        _train(net, X, y, steps=5)
        net.forward(X, train=False)
    assert len(rec.series(1, "act", "mean")) == 3  # steps 1, 3, 5
    assert len(rec.series(1, "grad", "norm")) == 3
    assert "dead" in rec.table()


def test_recorder_bad_input():
    with pytest.raises(TypeError, match="needs a Sequential"):
        StatsRecorder(Linear(2, 2, rng=0))
    with pytest.raises(ValueError, match="layer index 9 out of range"):
        StatsRecorder(mlp([2, 3, 2], rng=0), layers=[9])
    rec = StatsRecorder(mlp([2, 3, 2], rng=0))
    with pytest.raises(ValueError, match="stat must be one of"):
        rec.series(0, "act", "median")


def test_dead_fraction_counts_units_silent_on_every_example():
    lin = Linear(2, 4, rng=0)
    lin.params["W"][:] = [[1.0, -1.0, 1.0, -1.0], [1.0, -1.0, -1.0, 0.0]]
    lin.params["b"][:] = [0.0, 0.0, 0.0, -5.0]
    net = Sequential(lin, ReLU())
    X = np.abs(np.random.default_rng(0).normal(size=(50, 2)))  # non-negative inputs
    # unit 1 (all weights negative) and unit 3 (large negative bias) never fire
    assert dead_fraction(net, X) == {1: pytest.approx(0.5)}


def test_backward_norms_one_per_weight_layer():
    rng = np.random.default_rng(0)
    net = mlp([4, 6, 6, 3], activation="sigmoid", rng=0)
    idx, norms = backward_norms(net, SoftmaxCrossEntropy(), rng.normal(size=(10, 4)),
                                rng.integers(0, 3, 10))
    assert idx == [0, 2, 4] and norms.shape == (3,) and np.all(norms > 0)
    np.testing.assert_allclose(norms[2], np.linalg.norm(net.layers[4].grads["W"]))


def test_distinct_units():
    W = np.array([[1.0, 1.0, 2.0], [3.0, 3.0, 3.0]])
    assert distinct_units(W) == 2
    assert distinct_units(np.ones((3, 5))) == 1


# ---------------------------------------------------------------- Sec. 3.3.2


def test_least_squares_descent_reaches_the_optimum_and_whitening_needs_one_step():
    from ddlib.chapter.descent import least_squares_descent
    from ddlib.preprocess import PCAWhiten

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)) @ np.array([[5.0, 0, 0], [4.0, 0.5, 0], [0, 0, 0.2]]) + 3.0
    Y = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=300)
    raw = least_squares_descent(X, Y, steps=300)
    white = least_squares_descent(PCAWhiten().fit_transform(X), Y, steps=3)
    assert white.condition_number == pytest.approx(1.0)
    assert white.iterations_to(1e-12) == 1  # Hessian = identity: one step of size 1
    assert raw.condition_number > 100
    assert raw.iterations_to(1e-3) is None or raw.iterations_to(1e-3) > 50
    assert np.all(np.diff(raw.losses) <= 1e-12)  # step 1/lambda_max never increases the loss
    assert white.optimum == pytest.approx(raw.optimum)


def test_dead_fraction_counts_leaky_units_that_never_fire():
    from ddlib.layers import LeakyReLU

    lin = Linear(1, 2, rng=0)
    lin.params["W"][:] = [[1.0, -1.0]]
    net = Sequential(lin, LeakyReLU(alpha=0.1))
    X = np.linspace(0.1, 2.0, 20)[:, None]
    assert dead_fraction(net, X) == {1: pytest.approx(0.5)}
    assert dead_fraction(net, X, kinds=("relu",)) == {}
