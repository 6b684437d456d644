"""Products H v without forming H (Eq. 3.51), and the exact product when H is known.

Moving from x by a small delta along v changes the gradient by about delta H v, so two
gradient evaluations give H v (Eq. 3.51's forward difference):

    H v ~ (grad(x + delta v) - grad(x)) / delta                      error O(delta)

and the symmetric version cancels the second-order term:

    H v ~ (grad(x + delta v) - grad(x - delta v)) / (2 delta)        error O(delta^2)

Both are exact for quadratics.  The price of a small delta is rounding: the difference
of two nearly equal gradients loses about eps / delta of relative accuracy, so the
total error falls with delta while truncation dominates, then rises again.  The default
delta balances the two: sqrt(eps) (forward) or cbrt(eps) (central), scaled by
(1 + ||x||) / ||v|| so the perturbation is relative to the size of x.
"""

from __future__ import annotations

import numpy as np

from ...errors import check_positive

METHODS = ("central", "forward")


def default_delta(x, v, method="central", dtype=np.float64):
    """The finite-difference step for Eq. 3.51 described in the module docstring.

    >>> round(default_delta(np.zeros(2), np.array([1.0, 0.0]), "forward"), 10)
    1.49e-08
    """
    eps = np.finfo(dtype).eps
    base = np.sqrt(eps) if method == "forward" else np.cbrt(eps)
    vnorm = float(np.linalg.norm(v))
    return float(base * (1.0 + np.linalg.norm(x)) / (vnorm if vnorm > 0 else 1.0))


def hessian_vector_product(grad, x, v, method="central", eps=None, grad_x=None):
    """H(x) v by finite differences of ``grad`` (Eq. 3.51).

    ``grad(x) -> (d,)``; ``x``, ``v`` of shape (d,); ``method``: "central" (two
    gradient calls, error O(eps^2)) or "forward" (one call beyond ``grad_x``, the
    gradient at x if you have it; error O(eps)); ``eps``: the step delta, default
    ``default_delta``.  Returns H v in the dtype of x (float64 inside).

    >>> A = np.array([[3.0, 1.0], [1.0, 2.0]])
    >>> hv = hessian_vector_product(lambda x: A @ x, np.ones(2), np.array([1.0, 0.0]))
    >>> np.round(hv, 8)                    # exact for a quadratic, up to rounding
    array([3., 1.])
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not callable(grad):
        raise TypeError(f"grad must be callable, got {type(grad).__name__}")
    xa = np.asarray(x)
    dtype = xa.dtype if xa.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    xf = xa.astype(np.float64).reshape(-1)
    vf = np.asarray(v, dtype=np.float64).reshape(-1)
    if vf.shape != xf.shape:
        raise ValueError(f"v has {vf.size} entries, x has {xf.size}")
    if not (np.isfinite(xf).all() and np.isfinite(vf).all()):
        raise ValueError("x and v must be finite")
    delta = default_delta(xf, vf, method, dtype) if eps is None else check_positive("eps", eps)

    def g(point):
        return np.asarray(grad(point.astype(dtype)), dtype=np.float64).reshape(-1)

    if method == "forward":
        g0 = g(xf) if grad_x is None else np.asarray(grad_x, dtype=np.float64).reshape(-1)
        hv = (g(xf + delta * vf) - g0) / delta
    else:
        hv = (g(xf + delta * vf) - g(xf - delta * vf)) / (2 * delta)
    return hv.astype(dtype)


def exact_hessian_vector_product(hess, x, v):
    """H(x) v from a function ``hess(x) -> (d, d)`` (the reference for Eq. 3.51).

    >>> exact_hessian_vector_product(lambda x: np.diag(2 * x), np.array([1.0, 3.0]),
    ...                              np.ones(2))
    array([2., 6.])
    """
    xa = np.asarray(x)
    H = np.asarray(hess(xa), dtype=np.float64)
    vf = np.asarray(v, dtype=np.float64).reshape(-1)
    if H.shape != (vf.size, vf.size):
        raise ValueError(f"hess returned shape {H.shape} for a vector of {vf.size} entries")
    dtype = xa.dtype if xa.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    return (H @ vf).astype(dtype)
