"""Newton (Eq. 3.48): one step on any bowl, drawn to saddles; saddle-free Newton escapes."""

import numpy as np
import pytest
from scipy.optimize import rosen, rosen_der, rosen_hess

from ddlib.optim.second_order import minimize


def _bowl(condition, d, seed):
    """A rotated, shifted quadratic bowl with the given condition number (Fig. 3.14)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    H = (Q * np.logspace(0, np.log10(condition), d)) @ Q.T
    H = (H + H.T) / 2
    center = rng.standard_normal(d)

    def fun(x):
        r = x - center
        return 0.5 * r @ H @ r + 3.0

    return fun, (lambda x: H @ (x - center)), (lambda x: H), center


@pytest.mark.parametrize("condition", [1.0, 10.0, 1e3, 1e6])
@pytest.mark.parametrize("d", [2, 7])
def test_newton_solves_any_quadratic_bowl_in_one_step(condition, d):
    fun, jac, hess, center = _bowl(condition, d, seed=d)
    x0 = center + np.random.default_rng(1).standard_normal(d) * 5
    res = minimize(fun, x0, jac=jac, hess=hess, method="newton", gtol=1e-8)
    assert res.success and res.nit == 1
    np.testing.assert_allclose(res.x, center, rtol=0, atol=1e-9 * max(1.0, condition) ** 0.5)
    hp = minimize(fun, x0, jac=jac, hessp=lambda x, p: hess(x) @ p, method="newton",
                  cg_tol=1e-14, gtol=1e-6)             # the step by linear CG instead
    assert hp.success and hp.nit == 1


def test_steepest_descent_zigzags_where_newton_does_not():
    """Fig. 3.9 against Fig. 3.14: on an elongated bowl, from its worst start (eigen
    coordinates proportional to (condition, 1)), steepest descent with a near-exact line
    search takes steps at right angles, each cutting the error by (k - 1)/(k + 1) only."""
    condition = 100.0
    Q = np.array([[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]])
    H = Q @ np.diag([1.0, condition]) @ Q.T
    fun, jac = (lambda x: 0.5 * x @ H @ x), (lambda x: H @ x)
    x0 = Q @ np.array([condition, 1.0]) * 0.03
    sd = minimize(fun, x0, jac=jac, method="steepest-descent", c2=0.01, gtol=1e-4,
                  maxiter=5000)
    assert sd.success and sd.nit > 100
    steps = np.diff(sd.path, axis=0)
    cos = np.einsum("ij,ij->i", steps[1:], steps[:-1]) / (
        np.linalg.norm(steps[1:], axis=1) * np.linalg.norm(steps[:-1], axis=1))
    assert np.all(np.abs(cos) < 0.05)
    ratio = np.sqrt(sd.fun_path[1:] / sd.fun_path[:-1])     # error shrink per step
    np.testing.assert_allclose(ratio[:50], (condition - 1) / (condition + 1), rtol=1e-3)
    newton = minimize(fun, x0, jac=jac, hess=lambda x: H, method="newton")
    assert newton.nit == 1 and np.allclose(newton.x, 0.0, atol=1e-12)


def _saddle():
    return (lambda w: w[0] ** 2 - w[1] ** 2, lambda w: np.array([2 * w[0], -2 * w[1]]),
            lambda w: np.diag([2.0, -2.0]))


@pytest.mark.parametrize("start", [(0.3, 0.2), (-0.1, 0.4), (0.05, -0.02), (1.5, 1.0)])
def test_newton_is_attracted_to_the_saddle(start):
    """Sec. 3.5.6.3: on x^2 - y^2 the Newton step from anywhere lands on (0, 0)."""
    f, g, h = _saddle()
    res = minimize(f, start, jac=g, hess=h, method="newton")
    assert res.nit == 1 and res.success
    np.testing.assert_allclose(res.x, [0.0, 0.0], atol=1e-15)
    assert res.hess_min_eig == -2.0 and "saddle point" in res.message
    if abs(start[0]) > abs(start[1]):      # where -H^-1 g points downhill a line search
        ls = minimize(f, start, jac=g, hess=h, method="newton", line_search="armijo")
        np.testing.assert_allclose(ls.x, [0.0, 0.0], atol=1e-15)   # accepts it too


def test_newton_with_line_search_stops_on_an_uphill_direction():
    f, g, h = _saddle()
    res = minimize(f, [0.1, 0.4], jac=g, hess=h, method="newton", line_search="wolfe")
    assert not res.success and "not a descent direction" in res.message
    assert res.nit == 0


def test_saddle_free_newton_escapes_the_saddle():
    f, g, h = _saddle()
    res = minimize(f, [0.3, 0.2], jac=g, hess=h, method="saddle-free-newton", maxiter=6)
    ys = np.abs(res.path[:, 1])
    np.testing.assert_allclose(ys[1:] / ys[:-1], 2.0, rtol=1e-5)   # |y| doubles each step
    assert np.all(np.abs(res.path[1:, 0]) < 1e-6)                  # x goes to 0 at once
    assert np.all(np.diff(res.fun_path) < 0)
    # let loose, it runs downhill until f overflows, and says where
    with np.errstate(over="ignore"):       # y^2 overflows: that is the point
        loose = minimize(f, [0.3, 0.2], jac=g, hess=h, method="saddle-free-newton",
                         maxiter=5000)
    assert not loose.success and "non-finite" in loose.message
    assert f"iteration {loose.nit + 1}" in loose.message and np.isfinite(loose.x).all()


def test_saddle_free_newton_equals_newton_where_the_hessian_is_positive():
    a = minimize(rosen, [0.9, 0.8], jac=rosen_der, hess=rosen_hess, method="newton")
    b = minimize(rosen, [0.9, 0.8], jac=rosen_der, hess=rosen_hess,
                 method="saddle-free-newton", damping=1e-12)
    assert a.success and b.success
    np.testing.assert_allclose(a.path, b.path, rtol=1e-8)


def test_newton_on_rosenbrock_and_a_singular_hessian():
    res = minimize(rosen, [-1.2, 1.0], jac=rosen_der, hess=rosen_hess, method="newton",
                   line_search="wolfe")
    assert res.success and np.allclose(res.x, 1.0, atol=1e-8) and res.nhev == res.nit + 1

    def flat_y(w):       # f = x^2 + y^4: H = diag(2, 12 y^2) is singular on y = 0
        return w[0] ** 2 + w[1] ** 4

    jac = lambda w: np.array([2 * w[0], 4 * w[1] ** 3])        # noqa: E731
    hess = lambda w: np.diag([2.0, 12 * w[1] ** 2])            # noqa: E731
    bad = minimize(flat_y, [1.0, 0.0], jac=jac, hess=hess, method="newton")
    assert not bad.success and "singular" in bad.message and bad.nit == 0
    ok = minimize(flat_y, [1.0, 0.0], jac=jac, hess=hess, method="newton", damping=1e-3)
    assert ok.success


def test_damping_and_hessian_are_checked():
    f, g, h = _saddle()
    for method, value in (("newton", -1.0), ("newton", 0.0), ("saddle-free-newton", 0.0),
                          ("saddle-free-newton", None)):
        with pytest.raises(ValueError, match="damping"):
            minimize(f, [0.3, 0.2], jac=g, hess=h, method=method, damping=value)
    with pytest.raises(ValueError, match="hess"):
        minimize(f, [0.3, 0.2], jac=g, method="newton")
    with pytest.raises(ValueError, match="hess"):
        minimize(f, [0.3, 0.2], jac=g, hessp=lambda x, p: p, method="saddle-free-newton")
