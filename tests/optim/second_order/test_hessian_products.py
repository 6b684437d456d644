"""Eq. 3.51: H v by differences of gradients; the error against delta has the textbook shape."""

import numpy as np
import pytest

from ddlib.optim.second_order import exact_hessian_vector_product, hessian_vector_product

A = np.array([0.5, 1.0, 1.5])


def grad(x):   # of f = sum(exp(a x)) + sin(x0 x1): third derivatives everywhere
    c = np.cos(x[0] * x[1])
    return A * np.exp(A * x) + np.array([c * x[1], c * x[0], 0.0])


def hess(x):
    c, s = np.cos(x[0] * x[1]), np.sin(x[0] * x[1])
    H = np.diag(A * A * np.exp(A * x))
    H[0, 0] -= s * x[1] ** 2
    H[1, 1] -= s * x[0] ** 2
    H[0, 1] = H[1, 0] = c - s * x[0] * x[1]
    return H


X = np.array([0.3, -0.7, 0.4])
V = np.array([1.0, 2.0, -1.0]) / np.sqrt(6.0)


def _errors(method, eps):
    exact = hess(X) @ V
    return np.array([np.linalg.norm(hessian_vector_product(grad, X, V, method, e) - exact)
                     for e in eps]) / np.linalg.norm(exact)


def _slope(eps, err):
    return np.polyfit(np.log10(eps), np.log10(err), 1)[0]


def test_exact_for_a_quadratic():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((5, 5))
    H = B + B.T
    x, v = rng.standard_normal(5), rng.standard_normal(5)
    for method in ("forward", "central"):
        np.testing.assert_allclose(hessian_vector_product(lambda z: H @ z, x, v, method),
                                   H @ v, rtol=1e-6, atol=1e-6)


def test_default_step_is_accurate():
    exact = hess(X) @ V
    for method, bound in (("forward", 1e-6), ("central", 1e-9)):
        err = np.linalg.norm(hessian_vector_product(grad, X, V, method) - exact)
        assert err <= bound * np.linalg.norm(exact), method
    assert np.allclose(exact_hessian_vector_product(hess, X, V), exact)


def test_error_against_delta_has_the_truncation_and_rounding_shape():
    """Large delta: truncation, forward error ~ delta, central ~ delta^2.  Small delta:
    rounding, the error grows like 1/delta.  Each has a best delta in between, the central
    one larger and far more accurate.  (Measured: slopes 1.00, 2.00 and about -1.1.)"""
    big = np.logspace(-3, -1, 9)
    small = np.logspace(-13, -10, 13)
    everything = np.logspace(-13, -1, 49)
    fwd, cen = _errors("forward", everything), _errors("central", everything)
    assert 0.85 <= _slope(big, _errors("forward", big)) <= 1.15
    assert 1.8 <= _slope(big, _errors("central", big)) <= 2.2
    for method in ("forward", "central"):
        assert -1.6 <= _slope(small, _errors(method, small)) <= -0.6, method
    best_f, best_c = everything[fwd.argmin()], everything[cen.argmin()]
    assert 1e-9 <= best_f <= 1e-6 and 1e-7 <= best_c <= 1e-3 and best_c > best_f
    assert cen.min() < 1e-2 * fwd.min()
    assert fwd[0] > 1e3 * fwd.min() and cen[0] > 1e3 * cen.min()


def test_forward_reuses_the_gradient_and_keeps_dtype():
    calls = []

    def g(x):
        calls.append(x.dtype)
        return grad(x.astype(np.float64))

    hessian_vector_product(g, X, V, "forward", grad_x=grad(X))
    assert len(calls) == 1
    calls.clear()
    hv = hessian_vector_product(g, X.astype(np.float32), V, "central")
    assert hv.dtype == np.float32 and calls == [np.float32, np.float32]
    np.testing.assert_allclose(hv, hess(X) @ V, rtol=1e-2)    # float32's step is larger


def test_bad_input():
    with pytest.raises(ValueError, match="method"):
        hessian_vector_product(grad, X, V, "backward")
    with pytest.raises(ValueError, match="eps"):
        hessian_vector_product(grad, X, V, eps=0.0)
    with pytest.raises(ValueError, match="entries"):
        hessian_vector_product(grad, X, np.ones(2))
    with pytest.raises(ValueError, match="finite"):
        hessian_vector_product(grad, X, np.array([np.nan, 0.0, 0.0]))
