"""Armijo backtracking and the strong-Wolfe search (Nocedal & Wright Alg. 3.1, 3.5, 3.6)."""

import math

import numpy as np
import pytest
from scipy.optimize import rosen, rosen_der

from ddlib.optim.second_order import line_search_armijo, line_search_wolfe


class Counted:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, x):
        self.calls += 1
        return self.f(x)


def _starts(n=25):
    rng = np.random.default_rng(0)
    return rng.uniform(-2.0, 2.0, size=(n, 2))


@pytest.mark.parametrize("c2", [0.9, 0.4, 0.1])
def test_strong_wolfe_conditions_hold_at_the_returned_step(c2):
    c1 = 1e-4
    for x in _starts():
        g0 = rosen_der(x)
        for p in (-g0, -g0 / np.linalg.norm(g0), np.array([-np.sign(g0[0]), 0.0])):
            f, g = Counted(rosen), Counted(rosen_der)
            res = line_search_wolfe(f, g, x, p, c1=c1, c2=c2)
            assert res.success, res.message
            a, f0, s0 = res.alpha, rosen(x), g0 @ p
            assert rosen(x + a * p) <= f0 + c1 * a * s0                  # sufficient decrease
            assert abs(rosen_der(x + a * p) @ p) <= c2 * abs(s0)         # strong curvature
            np.testing.assert_allclose(res.jac, rosen_der(x + a * p), rtol=1e-14)
            assert res.fun == rosen(x + a * p)
            assert (res.nfev, res.njev) == (f.calls, g.calls)
            assert len(res.trials) == res.nfev - 1      # f(x) itself was evaluated once


def test_wolfe_extrapolates_and_zooms():
    f = lambda x: float((x[0] - 10.0) ** 2)       # noqa: E731
    g = lambda x: np.array([2 * (x[0] - 10.0)])   # noqa: E731
    far = line_search_wolfe(f, g, np.zeros(1), np.array([1.0]), alpha0=0.1)
    assert far.success and len(far.trials) > 1 and far.trials == sorted(far.trials)
    near = line_search_wolfe(f, g, np.zeros(1), np.array([1.0]), alpha0=1e3)
    assert near.success and near.alpha < 1e3
    assert abs(g(near.alpha * np.ones(1))[0]) <= 0.9 * 20.0


def test_wolfe_with_jac_true_and_a_wall_of_infinities():
    def fg(x):     # minimum at 0.9, undefined (inf) from 1 on: the search must back off
        if x[0] >= 1.0:
            return math.inf, np.array([math.nan])
        return float((x[0] - 0.9) ** 2), np.array([2 * (x[0] - 0.9)])

    res = line_search_wolfe(fg, True, np.zeros(1), np.array([1.0]), alpha0=4.0)
    assert res.success and 0 < res.alpha < 1.0 and math.isfinite(res.fun)


def test_wolfe_failure_is_a_flag_with_a_message():
    res = line_search_wolfe(lambda x: -float(x[0]), lambda x: np.array([-1.0]),
                            np.zeros(1), np.array([1.0]))
    assert not res.success and res.alpha is None and "unbounded" in res.message


def test_armijo_accepts_the_first_step_with_sufficient_decrease():
    c1, shrink = 0.3, 0.5
    for x in _starts():
        g0 = rosen_der(x)
        p = -g0
        f = Counted(rosen)
        res = line_search_armijo(f, x, p, g0, c1=c1, shrink=shrink, alpha0=1.0)
        assert res.success
        a, f0, s0 = res.alpha, rosen(x), g0 @ p
        assert rosen(x + a * p) <= f0 + c1 * a * s0
        if a < 1.0:       # the step before it (a / shrink) did not decrease enough
            assert rosen(x + a / shrink * p) > f0 + c1 * (a / shrink) * s0
        assert res.nfev == f.calls == len(res.trials) + 1
        assert res.jac is None and res.njev == 0


def test_armijo_backs_off_non_finite_values_and_reports_failure():
    f = lambda x: float(x @ x) if abs(x[0]) < 1e-3 else math.nan   # noqa: E731
    ok = line_search_armijo(f, np.array([1e-4]), np.array([-1.0]), np.array([2e-4]))
    assert ok.success and ok.alpha < 1e-3
    bad = line_search_armijo(lambda x: math.nan if x[0] != 1.0 else 1.0, np.array([1.0]),
                             np.array([-1.0]), np.array([1.0]), f0=1.0, maxiter=5)
    assert not bad.success and bad.alpha is None and "5 halvings" in bad.message


@pytest.mark.parametrize("kwargs, match", [
    (dict(p=np.array([1.0, 1.0])), "descent"),
    (dict(c1=0.5, c2=0.4), "c2"),
    (dict(c1=0.0), "c1"),
    (dict(alpha0=-1.0), "alpha0"),
    (dict(p=np.ones(3)), "entries"),
])
def test_wolfe_bad_input(kwargs, match):
    args = dict(p=np.array([-1.0, -1.0]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        line_search_wolfe(lambda x: float(x @ x), lambda x: 2 * x, np.ones(2), args.pop("p"),
                          **args)


def test_armijo_bad_input():
    with pytest.raises(ValueError, match="shrink"):
        line_search_armijo(lambda x: float(x @ x), np.ones(1), -np.ones(1), 2 * np.ones(1),
                           shrink=1.5)
    with pytest.raises(ValueError, match="jac is required"):
        line_search_wolfe(lambda x: float(x @ x), None, np.ones(1), -np.ones(1))
