"""BFGS (Eqs. 3.52-3.56) and L-BFGS: against scipy on Rosenbrock; the two-loop recursion
against the explicitly built inverse-Hessian estimate."""

import numpy as np
import pytest
import scipy.optimize as so
from scipy.optimize import rosen, rosen_der, rosen_hess

from ddlib.optim.second_order import (
    LBFGSHistory,
    bfgs_inverse_update,
    lbfgs_inverse_hessian,
    minimize,
    two_loop_recursion,
)

STARTS = {"rosen2d": [-1.2, 1.0], "rosen5d": [1.3, 0.7, 0.8, 1.9, 1.2]}  # scipy's tutorial


@pytest.mark.parametrize("start", STARTS, ids=list(STARTS))
@pytest.mark.parametrize("ours, theirs, options", [
    ("bfgs", "BFGS", {}),
    ("l-bfgs", "L-BFGS-B", {"m": 10}),
], ids=["bfgs", "l-bfgs"])
def test_matches_scipy_on_rosenbrock(start, ours, theirs, options):
    x0 = np.array(STARTS[start])
    ref = so.minimize(rosen, x0, jac=rosen_der, method=theirs)
    res = minimize(rosen, x0, jac=rosen_der, method=ours, **options)
    assert ref.success and res.success, res.message
    assert abs(res.fun - ref.fun) <= 1e-5
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-5)
    np.testing.assert_allclose(res.x, np.ones(x0.size), rtol=0, atol=1e-5)
    # iteration counts within 10% of scipy's, measured here (scipy: BFGS 32 and 25,
    # L-BFGS-B 36 and 24 at scipy 1.17; ddlib: 34, 26, 34, 24)
    assert abs(res.nit - ref.nit) <= 0.1 * ref.nit, (res.nit, ref.nit)
    assert res.path.shape == (res.nit + 1, x0.size)


@pytest.mark.parametrize("start", STARTS, ids=list(STARTS))
def test_bfgs_estimate_approaches_the_inverse_hessian(start):
    res = minimize(rosen, STARTS[start], jac=rosen_der, method="bfgs")
    Hinv = np.linalg.inv(rosen_hess(res.x))
    G = res.hess_inv
    assert np.allclose(G, G.T) and np.linalg.eigvalsh(G).min() > 0
    assert np.linalg.norm(G - Hinv) <= 0.1 * np.linalg.norm(Hinv)


def _literal_update(G, s, y):
    """Eq. 3.56 exactly as written: (I - D q v^T) G (I - D v q^T) + D q q^T."""
    D = 1.0 / (s @ y)
    eye = np.eye(s.size)
    return (eye - D * np.outer(s, y)) @ G @ (eye - D * np.outer(y, s)) + D * np.outer(s, s)


def _pairs(d, count, seed):
    """(s, y) pairs with positive curvature, from a random SPD matrix plus a perturbation
    (as on a non-quadratic function, the y's come from no single matrix)."""
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((d, d))
    A = B @ B.T + d * np.eye(d)
    S = rng.standard_normal((count, d))
    Y = S @ A + 0.1 * rng.standard_normal((count, d))
    keep = np.einsum("ij,ij->i", S, Y) > 0
    return list(S[keep]), list(Y[keep])


def test_bfgs_update_is_eq_3_56_and_satisfies_the_secant_condition():
    S, Y = _pairs(6, 8, 0)
    G = np.eye(6)
    for s, y in zip(S, Y):
        new = bfgs_inverse_update(G, s, y)
        np.testing.assert_allclose(new, _literal_update(G, s, y), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(new @ y, s, rtol=1e-10, atol=1e-12)          # Eq. 3.55
        assert np.allclose(new, new.T) and np.linalg.eigvalsh(new).min() > 0
        G = new
    with pytest.raises(ValueError, match="curvature"):
        bfgs_inverse_update(np.eye(2), np.array([1.0, 0.0]), np.array([-1.0, 0.0]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_loop_equals_the_explicit_estimate_for_every_history_length(seed):
    m, d = 10, 12
    S, Y = _pairs(d, m, seed)
    assert len(S) == m
    g = np.random.default_rng(seed + 10).standard_normal(d)
    for k in range(1, m + 1):
        s_k, y_k = S[-k:], Y[-k:]
        gamma = (s_k[-1] @ y_k[-1]) / (y_k[-1] @ y_k[-1])
        H = gamma * np.eye(d)          # N&W eq. 7.19: m BFGS updates from gamma I
        for s, y in zip(s_k, y_k):
            H = _literal_update(H, s, y)
        np.testing.assert_allclose(two_loop_recursion(g, s_k, y_k), H @ g, rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(lbfgs_inverse_hessian(s_k, y_k), H, rtol=1e-9, atol=1e-12)


def test_lbfgs_run_history_is_its_inverse_hessian_estimate():
    res = minimize(rosen, STARTS["rosen5d"], jac=rosen_der, method="l-bfgs", m=4)
    hist = res.hess_inv
    assert isinstance(hist, LBFGSHistory) and hist.m == 4 and len(hist) == 4
    g = rosen_der(np.array(STARTS["rosen5d"]))
    np.testing.assert_allclose(hist.matvec(g), hist.todense() @ g, rtol=1e-9)


@pytest.mark.parametrize("m", [1, 3, 10, 30])
def test_lbfgs_history_size_is_respected_and_it_converges(m):
    res = minimize(rosen, STARTS["rosen5d"], jac=rosen_der, method="l-bfgs", m=m, ftol=0)
    assert res.success and len(res.hess_inv) <= m
    np.testing.assert_allclose(res.x, np.ones(5), atol=1e-4)


def test_lbfgs_skips_pairs_of_non_positive_curvature():
    hist = LBFGSHistory(m=3)
    assert not hist.push(np.array([1.0, 0.0]), np.array([-2.0, 0.0]))
    assert not hist.push(np.array([1.0, 0.0]), np.array([0.0, 5.0]))    # s^T y = 0
    assert len(hist) == 0
    # with Armijo steps (no curvature condition) a Rosenbrock run meets such a pair
    res = minimize(rosen, STARTS["rosen2d"], jac=rosen_der, method="l-bfgs",
                   line_search="armijo")
    assert res.success and res.n_skipped >= 1
    assert all(s @ y > 0 for s, y in zip(res.hess_inv.s, res.hess_inv.y))


def test_hess_inv0_and_bad_history_size():
    x0 = STARTS["rosen2d"]
    res = minimize(rosen, x0, jac=rosen_der, method="bfgs",
                   hess_inv0=np.linalg.inv(rosen_hess(np.array(x0))))
    assert res.success
    with pytest.raises(ValueError, match="m must be >= 1"):
        minimize(rosen, x0, jac=rosen_der, method="l-bfgs", m=0)
    with pytest.raises(ValueError, match="m must be >= 1"):
        LBFGSHistory(0)
    with pytest.raises(ValueError, match="hess_inv0 must be positive definite"):
        minimize(rosen, x0, jac=rosen_der, method="bfgs", hess_inv0=-np.eye(2))
