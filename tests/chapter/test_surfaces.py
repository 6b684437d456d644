"""ddlib.chapter.surfaces: closed-form gradients/Hessians vs finite differences, the registry, run()."""

import numpy as np
import pytest

from ddlib import optim
from ddlib.chapter import surfaces
from ddlib.errors import DivergenceError
from ddlib.gradcheck import numerical_gradient

NAMES = sorted(surfaces.SURFACES)


def _points(s, rng, n=12):
    """Random points inside the surface's box (float64)."""
    x = rng.uniform(*s.xlim, size=n)
    y = rng.uniform(*s.ylim, size=n)
    return np.c_[x, y]


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_finite_differences(name):
    s = surfaces.get(name)
    rng = np.random.default_rng(0)
    for w in _points(s, rng):
        v = w.copy()
        num = numerical_gradient(lambda v=v: s.value(v), v, eps=1e-6)
        exact = s.grad(w)
        scale = max(1.0, np.abs(exact).max())
        np.testing.assert_allclose(exact, num, rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize("name", NAMES)
def test_hessian_matches_finite_differences_of_the_gradient(name):
    s = surfaces.get(name)
    rng = np.random.default_rng(1)
    eps = 1e-6
    for w in _points(s, rng):
        num = np.empty((2, 2))
        for j in range(2):
            e = np.zeros(2)
            e[j] = eps
            num[:, j] = (s.grad(w + e) - s.grad(w - e)) / (2 * eps)
        exact = s.hessian(w)
        scale = max(1.0, np.abs(exact).max())
        np.testing.assert_allclose(exact, num, rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(exact, exact.T)


@pytest.mark.parametrize("name", NAMES)
def test_methods_broadcast_over_grids_of_points(name):
    s = surfaces.get(name)
    X, Y, Z = s.grid(7)
    W = np.stack([X, Y], axis=-1)
    assert Z.shape == (7, 7)
    np.testing.assert_allclose(s.value(W), Z)
    assert s.grad(W).shape == (7, 7, 2)
    assert s.hessian(W).shape == (7, 7, 2, 2)
    np.testing.assert_allclose(s.grad(W)[3, 4], s.grad(W[3, 4]))
    np.testing.assert_allclose(s.hessian(W)[2, 5], s.hessian(W[2, 5]))


@pytest.mark.parametrize("name", NAMES)
def test_declared_minima_are_stationary_with_positive_definite_hessian(name):
    s = surfaces.get(name)
    for m in s.minima:
        assert np.abs(s.grad(m)).max() < 1e-9
        assert np.linalg.eigvalsh(s.hessian(m)).min() >= 0
    if s.minima:
        assert s.value(s.minima[0]) == pytest.approx(s.floor, abs=1e-12)
        _, _, Z = s.grid(60)
        assert Z.min() >= s.floor - 1e-12  # the global minimum is the lowest point in view


def test_chapter_formulas_at_a_point():
    w = np.array([0.7, -1.3])
    x, y = w
    assert surfaces.get("bowl").value(w) == pytest.approx(x**2 + y**2)
    assert surfaces.get("ellipse").value(w) == pytest.approx(x**2 + 4 * y**2)  # Fig. 3.9(b)
    assert surfaces.get("saddle").value(w) == pytest.approx(x**2 - y**2)
    assert surfaces.get("degenerate").value(w) == pytest.approx(x**3 + y**3)
    assert surfaces.get("x2_y10").value(w) == pytest.approx(x**2 + y**10)
    assert surfaces.get("rosenbrock").value(w) == pytest.approx((1 - x)**2 + 100 * (y - x * x)**2)


def test_saddle_and_degenerate_points_are_what_the_chapter_says():
    sad, deg = surfaces.get("saddle"), surfaces.get("degenerate")
    origin = np.zeros(2)
    assert np.all(sad.grad(origin) == 0)
    ev = np.linalg.eigvalsh(sad.hessian(origin))
    assert ev.min() < 0 < ev.max()  # a minimum along x, a maximum along y
    assert np.all(deg.grad(origin) == 0) and np.all(deg.hessian(origin) == 0)  # 0/0 for Newton


def test_cliff_face_is_far_steeper_than_the_terrace():
    c = surfaces.get("cliff")
    terrace = np.abs(c.grad([-2.0, 0.0])[0])
    face = np.abs(c.grad([0.0, 0.0])[0])
    assert terrace < 1 and face > 50 * terrace


def test_local_minima_surface_has_a_shallow_and_a_deep_well():
    s = surfaces.get("local_minima")
    glob, loc = s.minima
    assert s.value(glob) < s.value(loc) - 1.0
    assert glob[0] > 0 > loc[0]


def test_registry_rejects_unknown_names_and_passes_surfaces_through():
    with pytest.raises(ValueError, match="unknown surface 'banana'.*bowl"):
        surfaces.get("banana")
    s = surfaces.get("ellipse", ratio=10)
    assert surfaces.get(s) is s
    assert s.value([0.0, 1.0]) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="ratio"):
        surfaces.get("ellipse", ratio=-1)
    with pytest.raises(ValueError, match="last axis of length 2"):
        s.value([1.0, 2.0, 3.0])


def test_run_takes_the_rules_own_steps():
    """Two steps of SGD on the bowl, by hand: w <- w - lr * 2w."""
    path = surfaces.run("bowl", optim.sgd(0.1), start=(1.0, -2.0), steps=2)
    np.testing.assert_allclose(path.points, [[1, -2], [0.8, -1.6], [0.64, -1.28]])
    np.testing.assert_allclose(path.losses, [5.0, 3.2, 2.048])
    assert path.rule == "sgd" and path.surface == "bowl" and path.status == "ok"
    assert path.steps_to(2.1) == 2 and path.steps_to(1.0) is None


def test_run_uses_the_nesterov_lookahead():
    """One hand-computed Nesterov step after a momentum step differs from plain momentum."""
    s = surfaces.get("ellipse")
    lr, beta = 0.1, 0.9
    w0 = np.array([-1.0, 0.5])
    nes = surfaces.run(s, optim.nesterov(lr, beta), start=w0, steps=2).points
    v1 = -lr * s.grad(w0)
    w1 = w0 + v1
    v2 = beta * v1 - lr * s.grad(w1 + beta * v1)
    np.testing.assert_allclose(nes[2], w1 + v2)
    mom = surfaces.run(s, optim.momentum(lr, beta), start=w0, steps=2).points
    assert not np.allclose(mom[2], nes[2])


@pytest.mark.parametrize("rule", sorted(optim.RULES))
def test_every_rule_runs_on_every_surface(rule):
    for name in NAMES:
        path = surfaces.run(name, optim.RULES[rule](1e-3), steps=5, on_divergence="record")
        assert path.points.shape[1] == 2 and len(path.points) == len(path.losses)
        assert np.isfinite(path.losses).all()


def test_divergence_raises_with_step_and_loss():
    # Exercise 6 from (2, 2): the y-gradient 10 y^9 = 5120 throws the first step far away.
    with pytest.raises(DivergenceError, match=r"sgd on the x2_y10 surface diverged at step 1"):
        surfaces.run("x2_y10", optim.sgd(0.01), start=(2.0, 2.0), steps=50)


def test_divergence_can_be_recorded_without_nans():
    path = surfaces.run("x2_y10", optim.sgd(0.01), start=(2.0, 2.0), steps=50,
                        on_divergence="record")
    assert path.diverged and path.diverged_at == 1 and len(path.points) == 1
    assert abs(path.diverged_loss) > 1e6
    assert "step 1" in path.status
    assert np.isfinite(path.points).all() and np.isfinite(path.losses).all()
    assert path.steps_to(1e-3) is None


def test_saddle_escape_is_recorded_as_divergence():
    path = surfaces.run("saddle", optim.sgd(0.1), steps=200, on_divergence="record")
    assert path.diverged and path.diverged_loss < -1e6
    # first order methods are not attracted by the saddle: |y| grows by 1.2 every step
    np.testing.assert_allclose(np.abs(path.points[1:, 1] / path.points[:-1, 1]), 1.2)


def test_run_records_state_per_step():
    path = surfaces.run("ellipse", optim.adagrad(0.5), steps=4, record_state=True)
    assert len(path.states) == 4
    g0 = surfaces.get("ellipse").grad(surfaces.get("ellipse").start)
    np.testing.assert_allclose(path.states[0].sum_sq["w"], g0**2)
    sizes = path.step_sizes
    assert sizes.shape == (4,)


def test_run_validates_its_inputs():
    with pytest.raises(TypeError, match="Transform"):
        surfaces.run("bowl", "sgd")
    with pytest.raises(ValueError, match="start"):
        surfaces.run("bowl", optim.sgd(0.1), start=(1.0, np.nan))
    with pytest.raises(ValueError, match="on_divergence"):
        surfaces.run("bowl", optim.sgd(0.1), on_divergence="ignore")
    with pytest.raises(ValueError, match="steps"):
        surfaces.run("bowl", optim.sgd(0.1), steps=-1)


def test_momentum_rolls_past_the_local_well_where_plain_descent_stops():
    """Fig. 3.12: the marble's speed carries it through a shallow local minimum."""
    s = surfaces.get("local_minima")
    glob, loc = s.minima
    for lr in (0.25, 0.5, 1.0):
        gd = surfaces.run(s, optim.sgd(lr), steps=400)
        mom = surfaces.run(s, optim.momentum(lr, 0.9), steps=400)
        assert np.linalg.norm(gd.points[-1] - loc) < 0.1
        assert np.linalg.norm(mom.points[-1] - glob) < 0.1


def test_loss_along_line_restores_weights_and_hits_both_ends():
    from ddlib import layers, losses, train

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    y = rng.integers(0, 2, size=20)
    net = layers.mlp([3, 4, 2], rng=0)
    loss = losses.SoftmaxCrossEntropy()
    a = {n: np.array(layer.params[k]) for n, layer, k in net.named_parameters()}
    b = {n: v + rng.normal(size=v.shape) for n, v in a.items()}
    out = surfaces.loss_along_line(net, loss, a, b, {"all": (X, y)}, alphas=[0.0, 1.0])
    assert out["all"][0] == pytest.approx(train.evaluate(net, loss, X, y)[0])
    for n, layer, k in net.named_parameters():
        np.testing.assert_array_equal(layer.params[k], a[n])
        layer.params[k][...] = b[n]
    assert out["all"][1] == pytest.approx(train.evaluate(net, loss, X, y)[0])
    with pytest.raises(ValueError, match="lacks parameters"):
        surfaces.loss_along_line(net, loss, a, {}, {"all": (X, y)})


def test_the_fig_3_9_bowls_are_one_quadratic_bowl():
    from ddlib.chapter.descent import QuadraticBowl as FromDescent

    assert FromDescent is surfaces.QuadraticBowl
    w = np.array([[0.3, -1.2], [1.5, 0.7]])
    for s, c in ((surfaces.bowl(), [1.0, 1.0]), (surfaces.ellipse(), [1.0, 4.0]),
                 (surfaces.ellipse(ratio=10), [1.0, 10.0])):
        q = surfaces.QuadraticBowl(c)
        np.testing.assert_allclose(s.value(w), q(w))
        np.testing.assert_allclose(s.grad(w), np.stack([q.grad(p) for p in w]))
        np.testing.assert_allclose(s.hessian(w[0]), np.diag(2 * np.array(c)))
    assert surfaces.QuadraticBowl([11.0, 1.0]).surface().formula == "11 x^2 + y^2"
    with pytest.raises(ValueError, match="surface is for 2-D bowls"):
        surfaces.QuadraticBowl([1.0, 2.0, 3.0]).surface()
