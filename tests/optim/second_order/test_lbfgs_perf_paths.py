"""The fast paths of L-BFGS (compiled two-loop kernel over ring buffers, cached rho and
gamma, the line search's reused trial point, Problem's same-array shortcut, the inf-norm
finiteness test) give the reference path's results bit for bit, and fall back where
they must."""

import numpy as np
import pytest

from ddlib.optim.second_order import LBFGSHistory, minimize, two_loop_recursion
from ddlib.optim.second_order import lbfgs as lbfgs_mod
from ddlib.optim.second_order._run import Run
from ddlib.optim.second_order.objective import Problem


def _pairs(d, count, seed):
    rng = np.random.default_rng(seed)
    S = rng.standard_normal((count, d))
    Y = S * rng.uniform(0.5, 2.0, size=d) + 0.05 * rng.standard_normal((count, d))
    Y[3] = -S[3]                    # one pair with negative curvature: skipped
    return S, Y


@pytest.mark.parametrize("d", [5, 650])
@pytest.mark.parametrize("m", [1, 4, 10])
def test_matvec_equals_two_loop_recursion_bit_for_bit(d, m):
    S, Y = _pairs(d, 13, seed=d + m)
    h = LBFGSHistory(m)
    g = np.random.default_rng(0).standard_normal(d)
    for s, y in zip(S, Y):
        h.push(s, y)
        ref = two_loop_recursion(g, list(h.s), list(h.y))
        np.testing.assert_array_equal(h.matvec(g), ref)
    assert (h._ring is not None) == (d >= lbfgs_mod.RING_MIN_SIZE)
    assert h.gamma == h._gamma


def test_matvec_falls_back_when_the_pairs_are_edited_from_outside():
    S, Y = _pairs(100, 6, seed=1)
    h = LBFGSHistory(3)
    for s, y in zip(S[:5], Y[:5]):
        h.push(s, y)
    h.s.append(S[5])
    h.y.append(Y[5])            # the caches no longer describe s and y
    g = np.ones(100)
    np.testing.assert_array_equal(h.matvec(g), two_loop_recursion(g, list(h.s), list(h.y)))


def test_matvec_notices_a_pair_replaced_in_the_middle():
    S, Y = _pairs(100, 6, seed=3)
    h = LBFGSHistory(4)
    for s, y in zip(S[:5], Y[:5]):
        h.push(s, y)
    h.s[1], h.y[1] = S[5], Y[5]
    g = np.ones(100)
    np.testing.assert_array_equal(h.matvec(g), two_loop_recursion(g, list(h.s), list(h.y)))


def test_a_change_of_vector_size_switches_the_ring_off():
    h = LBFGSHistory(3)
    S, Y = _pairs(100, 4, seed=2)
    h.push(S[0], Y[0])
    assert h._ring is not None
    h.push(np.array([1.0, 0.0] * 50), np.array([2.0, 0.0] * 50))
    h.push(S[1][:80], Y[1][:80])
    assert h._ring is None
    h.push(S[2], Y[2])
    assert h._ring is None


def _logreg(d_in=40, k=5, n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_in))
    y = rng.integers(0, k, n)

    def fg(x):
        W = x.reshape(d_in, k)
        z = X @ W
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        f = -np.log(p[np.arange(n), y]).mean() + 0.5e-3 * float(x @ x)
        p[np.arange(n), y] -= 1
        return f, (X.T @ p / n).ravel() + 1e-3 * x

    return fg, np.zeros(d_in * k)


def test_minimize_with_the_kernel_equals_the_numpy_path(monkeypatch):
    fg, x0 = _logreg()
    assert x0.size >= lbfgs_mod.RING_MIN_SIZE
    fast = minimize(fg, x0, jac=True, method="l-bfgs", m=5)
    monkeypatch.setattr(lbfgs_mod, "RING_MIN_SIZE", 10 ** 9)
    slow = minimize(fg, x0, jac=True, method="l-bfgs", m=5)
    assert fast.success and (fast.nit, fast.nfev) == (slow.nit, slow.nfev)
    np.testing.assert_array_equal(fast.path, slow.path)
    np.testing.assert_array_equal(fast.x, slow.x)


def test_problem_reuses_only_an_array_that_cannot_have_changed():
    calls = []

    def fg(x):
        calls.append(1)
        return float(x @ x), 2 * x

    prob = Problem(fg, np.zeros(3), jac=True)
    x = np.array([1.0, 2.0, 3.0])
    assert prob.value(x) == 14.0
    x[0] = 0.0                          # edited in place: a new point
    assert prob.value(x) == 13.0 and len(calls) == 2
    np.testing.assert_array_equal(prob.grad(x), [0.0, 4.0, 6.0])
    assert len(calls) == 2              # same values: no new call
    ro = np.array([1.0, 1.0, 1.0])
    ro.flags.writeable = False
    prob.value(ro)
    prob.grad(ro)
    assert len(calls) == 3
    base = np.array([2.0, 2.0, 2.0])
    view = base[:]
    view.flags.writeable = False        # read-only view, but its base may change
    assert prob.value(view) == 12.0
    base[:] = 1.0
    assert prob.value(view) == 3.0 and len(calls) == 5


def test_inf_norm_and_nonfinite_gradients():
    g = np.array([1.0, -3.0, 2.0])
    run = Run(None, "l-bfgs", gtol=0.0, norm=np.inf, maxiter=5)
    assert run.gnorm(g) == np.linalg.norm(g, ord=np.inf)
    for bad in (np.nan, np.inf, -np.inf):
        gb = g.copy()
        gb[1] = bad
        assert Run._nonfinite(1.0, gb, run.gnorm(gb)) == "1 non-finite gradient entries"
    run_m = Run(None, "l-bfgs", gtol=0.0, norm=-np.inf, maxiter=5)
    gb = g.copy()
    gb[1] = np.inf                      # the -inf norm (a min) does not see it: scan
    assert run_m.gnorm(gb) == 1.0
    assert Run._nonfinite(1.0, gb) == "1 non-finite gradient entries"

    run = Run(Problem(lambda x: float(x @ x), np.zeros(3)), "l-bfgs", gtol=0.0,
              norm=np.inf, maxiter=5)
    assert not run.begin(np.ones(3), 3.0, 2 * np.ones(3))
    assert run.advance(np.zeros(3), 0.5, np.array([0.0, np.nan, 1.0]))
    assert run.status == 3 and "1 non-finite gradient entries" in run.message
