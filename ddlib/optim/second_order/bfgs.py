"""BFGS (Sec. 3.5.6.2, Eqs. 3.52-3.56): a running estimate G of the inverse Hessian.

Each iteration steps along -G g with a strong-Wolfe step length (Eq. 3.54), then
corrects G so that it maps the observed change of gradient v = g_{t+1} - g_t onto the
step taken q = W_{t+1} - W_t (the secant condition, Eq. 3.55), changing G as little
as a weighted Frobenius norm allows (Eq. 3.56):

    G <- (I - D q v^T) G (I - D v q^T) + D q q^T,     D = 1 / (q^T v).

The strong-Wolfe curvature condition guarantees q^T v > 0, so G stays symmetric positive
definite and -G g stays a descent direction.  G starts at the identity (the first step
is steepest descent) unless ``hess_inv0`` is given.  The loop follows scipy's BFGS
(same start, first trial step and stopping test) so that the two take comparable paths.
"""

from __future__ import annotations

import numpy as np

from .line_search import initial_step, search


def bfgs_inverse_update(G, s, y):
    """Eq. 3.56: the BFGS update of the inverse-Hessian estimate G (d, d) from the step
    s = q_t and gradient change y = v_t (both (d,)), expanded to avoid d x d products:

        G - D (s (G y)^T + (G y) s^T) + (D^2 y^T G y + D) s s^T,   D = 1 / s^T y.

    Raises ValueError when s^T y <= 0 (the update would lose positive definiteness).

    >>> G = bfgs_inverse_update(np.eye(2), np.array([1.0, 0.0]), np.array([2.0, 0.0]))
    >>> G @ np.array([2.0, 0.0])        # secant condition (Eq. 3.55): G y = s
    array([1., 0.])
    """
    G = np.asarray(G, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    sy = float(s @ y)
    if not sy > 0:
        raise ValueError(f"curvature s^T y = {sy:.6g} must be > 0 for the BFGS update "
                         "(Eq. 3.56) to keep G positive definite")
    D = 1.0 / sy
    Gy = G @ y
    return G - D * (np.outer(s, Gy) + np.outer(Gy, s)) + (D * D * float(y @ Gy) + D) * \
        np.outer(s, s)


def minimize_bfgs(problem, run, x, f, g, *, c1=1e-4, c2=0.9, hess_inv0=None):
    """The BFGS loop for ``minimize(method="bfgs")``; returns the extras (``hess_inv``)."""
    n = x.size
    G = np.eye(n) if hess_inv0 is None else np.array(hess_inv0, dtype=np.float64)
    f_prev = f + np.linalg.norm(g) / 2   # makes the first trial step about 1 long (scipy)
    skipped = 0
    while not run.done:
        p = -(G @ g)
        slope = float(g @ p)
        if not slope < 0:
            run.fail(f"-G g is not a descent direction (g . p = {slope:.3g}); G has lost "
                     "positive definiteness to rounding")
            break
        ls = search("wolfe", problem, x, p, f, g, alpha0=initial_step(f, f_prev, slope),
                    c1=c1, c2=c2)
        if not ls.success:
            run.fail(f"line search failed: {ls.message}")
            break
        s = ls.alpha * p
        x_new = x + s
        y = ls.jac - g
        f_prev = f
        if run.advance(x_new, ls.fun, ls.jac):
            break
        x, f, g = x_new, ls.fun, ls.jac
        if s @ y > 0:
            G = bfgs_inverse_update(G, s, y)
        else:  # cannot happen with an exact strong-Wolfe step; rounding can still do it
            skipped += 1
    return {"hess_inv": G.astype(problem.dtype), "n_skipped": skipped}
