"""minimize(): scipy's interface and result, every method, counts, dtypes, errors, NaN."""

import math

import numpy as np
import pytest
from scipy.optimize import rosen, rosen_der, rosen_hess

from ddlib.optim.second_order import METHODS, OptimizeResult, minimize

X0 = np.array([-1.2, 1.0])


class Counted:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, *a):
        self.calls += 1
        return self.f(*a)


@pytest.mark.parametrize("method, options", [
    ("bfgs", {}), ("l-bfgs", {"ftol": 0}), ("newton", {"line_search": "wolfe"}),
    ("newton", {}), ("saddle-free-newton", {"line_search": "armijo"}),
    ("fletcher-reeves", {}), ("cg", {}), ("polak-ribiere", {}),
    ("steepest-descent", {"maxiter": 20000, "gtol": 1e-4}),
])
def test_every_method_finds_the_rosenbrock_minimum(method, options):
    res = minimize(rosen, X0, jac=rosen_der, hess=rosen_hess, method=method, **options)
    assert res.success, res.message
    tol = 1e-3 if method == "steepest-descent" else 1e-5
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=tol)
    assert res.fun == pytest.approx(rosen(res.x), abs=1e-15)
    assert res.method == {"cg": "fletcher-reeves"}.get(method, method)


def test_result_fields_path_and_counts():
    f, g = Counted(rosen), Counted(rosen_der)
    res = minimize(f, X0, jac=g, method="bfgs")
    assert isinstance(res, OptimizeResult) and isinstance(res, dict)
    for key in ("x", "fun", "jac", "nit", "nfev", "njev", "nhev", "success", "status",
                "message", "path", "fun_path", "hess_inv"):
        assert key in res and res[key] is getattr(res, key)
    assert (res.nfev, res.njev, res.nhev) == (f.calls, g.calls, 0)
    assert res.path.shape == (res.nit + 1, 2)
    np.testing.assert_array_equal(res.path[0], X0)
    np.testing.assert_array_equal(res.path[-1], res.x)
    np.testing.assert_allclose(res.fun_path, [rosen(p) for p in res.path], rtol=1e-12)
    np.testing.assert_array_equal(res.jac, rosen_der(res.x))
    assert res.status == 0 and "successfully" in res.message
    with pytest.raises(AttributeError, match="no field"):
        res.not_a_field


def test_jac_true_gives_the_same_run_with_one_call_per_point():
    both = Counted(lambda x: (rosen(x), rosen_der(x)))
    a = minimize(both, X0, jac=True, method="l-bfgs")
    b = minimize(rosen, X0, jac=rosen_der, method="l-bfgs")
    np.testing.assert_array_equal(a.path, b.path)
    assert a.nfev == a.njev == both.calls


def test_finite_difference_gradient_when_jac_is_none():
    res = minimize(rosen, X0, method="bfgs")
    assert res.success and np.allclose(res.x, 1.0, atol=1e-5)
    assert res.nfev >= 2 * 2 * res.njev       # each gradient cost 2 d calls


def test_args_tol_options_and_callback():
    def f(x, a, b):
        return (a - x[0]) ** 2 + b * (x[1] - x[0] ** 2) ** 2

    def g(x, a, b):
        return rosen_der(x) if (a, b) == (1.0, 100.0) else None

    loose = minimize(f, X0, args=(1.0, 100.0), jac=g, method="bfgs", tol=1e-2)
    tight = minimize(f, X0, args=(1.0, 100.0), jac=g, method="bfgs", options={"gtol": 1e-8})
    assert loose.nit < tight.nit and np.max(np.abs(tight.jac)) <= 1e-8
    seen = []
    res = minimize(rosen, X0, jac=rosen_der, callback=lambda r: seen.append(r.nit) or
                   r.nit == 5)
    assert seen == [1, 2, 3, 4, 5] and res.nit == 5 and not res.success
    assert "callback" in res.message
    with pytest.raises(TypeError, match="both"):
        minimize(rosen, X0, jac=rosen_der, options={"gtol": 1.0}, gtol=1.0)


def test_maxiter_zero_and_reached():
    res = minimize(rosen, X0, jac=rosen_der, maxiter=0)
    assert res.nit == 0 and res.status == 1 and not res.success
    np.testing.assert_array_equal(res.x, X0)
    res = minimize(rosen, X0, jac=rosen_der, method="l-bfgs", maxiter=3)
    assert res.nit == 3 and res.status == 1 and "maxiter = 3" in res.message


@pytest.mark.parametrize("method", ["bfgs", "l-bfgs", "newton", "steepest-descent"])
def test_float32_in_float32_out(method):
    seen = set()

    def f(x):
        seen.add(x.dtype)
        return rosen(x)

    def g(x):
        seen.add(x.dtype)
        return rosen_der(x)

    opts = {"maxiter": 20000, "gtol": 1e-2} if method == "steepest-descent" else {"gtol": 1e-3}
    res = minimize(f, X0.astype(np.float32), jac=g, hess=rosen_hess, method=method, **opts)
    assert seen == {np.dtype(np.float32)}
    assert res.x.dtype == res.jac.dtype == res.path.dtype == np.float32
    assert isinstance(res.fun, float)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=5e-2 if method == "steepest-descent"
                               else 1e-3)
    assert minimize(rosen, [1, 2], jac=rosen_der, maxiter=1).x.dtype == np.float64


def test_non_finite_starting_point_value():
    res = minimize(lambda x: math.nan, X0, jac=lambda x: np.zeros(2))
    assert not res.success and res.status == 3 and res.nit == 0
    assert "starting point" in res.message and "iteration 0" in res.message


def test_divergence_stops_with_the_iteration_and_the_last_finite_point():
    # fixed steps that overshoot more each time, until f overflows to inf
    f = lambda x: float(x @ x)      # noqa: E731
    with np.errstate(over="ignore"):
        res = minimize(f, [1.0, 1.0], jac=lambda x: 2 * x, method="steepest-descent", lr=1.5,
                       maxiter=10000)
    assert not res.success and res.status == 3
    assert f"non-finite (f = inf) at iteration {res.nit + 1}" in res.message
    assert np.isfinite(res.path).all() and np.isfinite(res.x).all()
    np.testing.assert_array_equal(res.x, res.path[-1])


def test_gradient_turning_nan_is_caught():
    def g(x):
        return np.array([np.nan, 0.0]) if x[0] < 0.5 else 2 * x

    res = minimize(lambda x: float(x @ x), [1.0, 1.0], jac=g, method="steepest-descent",
                   lr=0.25)
    assert res.status == 3 and "non-finite gradient" in res.message and "iteration 2" in \
        res.message and res.nit == 1


def test_line_search_methods_step_back_from_a_region_of_nan():
    # f is nan beyond x = 2.5; BFGS's early long steps land there and must back off
    def f(x):
        return math.nan if x[0] > 2.5 else float((x[0] - 2.0) ** 2 + x[1] ** 2)

    res = minimize(f, [0.0, 1.0], jac=lambda x: np.array([2 * (x[0] - 2), 2 * x[1]]),
                   method="bfgs")
    assert res.success and np.allclose(res.x, [2.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("x0", [[np.nan, 1.0], [np.inf, 0.0], [1.0, -np.inf]])
def test_non_finite_x0_is_rejected(x0):
    with pytest.raises(ValueError, match="x0 contains 1 non-finite"):
        minimize(rosen, x0, jac=rosen_der)


def test_unknown_method_lists_the_options():
    with pytest.raises(ValueError, match="unknown method 'adam'") as err:
        minimize(rosen, X0, method="adam")
    for name in METHODS:
        assert name in str(err.value)
    assert minimize(rosen, X0, jac=rosen_der, method="L-BFGS").method == "l-bfgs"


@pytest.mark.parametrize("options, error, match", [
    ({"maxiter": -1}, ValueError, "maxiter must be >= 0"),
    ({"maxiter": 2.5}, TypeError, "maxiter must be an integer"),
    ({"gtol": -1.0}, ValueError, "gtol"),
    ({"c1": 0.95}, ValueError, "0 < c1 < c2 < 1"),
    ({"momentum": 0.9}, TypeError, "unknown option.*momentum"),
    ({"m": 5}, TypeError, "unknown option.*'m'"),           # m is an l-bfgs option
    ({"norm": 0.5}, ValueError, "norm"),
])
def test_bad_options_name_the_parameter(options, error, match):
    with pytest.raises(error, match=match):
        minimize(rosen, X0, jac=rosen_der, method="bfgs", **options)


def test_other_bad_input():
    with pytest.raises(ValueError, match="m must be >= 1"):
        minimize(rosen, X0, jac=rosen_der, method="l-bfgs", m=0)
    with pytest.raises(ValueError, match="line_search"):
        minimize(rosen, X0, jac=rosen_der, method="newton", hess=rosen_hess,
                 line_search="exact")
    with pytest.raises(ValueError, match="lr"):
        minimize(rosen, X0, jac=rosen_der, method="steepest-descent", lr=-0.1)
    with pytest.raises(ValueError, match="1-D"):
        minimize(rosen, np.ones((2, 2)), jac=rosen_der)
    with pytest.raises(TypeError, match="jac must be"):
        minimize(rosen, X0, jac="2-point")
    with pytest.raises(ValueError, match="jac returned 3 entries"):
        minimize(rosen, X0, jac=lambda x: np.ones(3))
    with pytest.raises(TypeError, match="fun must return a real scalar"):
        minimize(lambda x: x, X0, jac=rosen_der)


def test_nonlinear_cg_on_a_quadratic_behaves_like_linear_cg():
    """With a near-exact line search, FR and PR+ on a quadratic reduce to Eqs. 3.49-3.50
    and finish in about d iterations; steepest descent needs many more."""
    rng = np.random.default_rng(3)
    d = 6
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    H = (Q * np.linspace(1.0, 50.0, d)) @ Q.T
    b = rng.standard_normal(d)
    f, g = (lambda x: 0.5 * x @ H @ x - b @ x), (lambda x: H @ x - b)
    for method in ("fletcher-reeves", "polak-ribiere"):
        res = minimize(f, np.zeros(d), jac=g, method=method, c2=1e-3, gtol=1e-8,
                       restart_threshold=None)
        assert res.success and res.nit <= d + 2, (method, res.nit)
        np.testing.assert_allclose(res.x, np.linalg.solve(H, b), atol=1e-7)
    sd = minimize(f, np.zeros(d), jac=g, method="steepest-descent", c2=1e-3, gtol=1e-8,
                  maxiter=5000)
    assert sd.nit > 5 * d
