"""L-BFGS (Sec. 3.5.6.2): BFGS without the d x d matrix, from the last m pairs (s, y).

The chapter describes L-BFGS as rebuilding G_{t+1} by applying Eq. 3.56 m times to a
simple starting matrix, from the stored steps s_i = q_i and gradient changes y_i = v_i.
The two-loop recursion (Nocedal & Wright Alg. 7.4) computes that matrix's product with
the gradient in O(m d) without ever forming it; ``lbfgs_inverse_hessian`` builds the
matrix explicitly (Nocedal & Wright eq. 7.19), for teaching and for the tests that
hold the two equal.  The starting matrix is gamma I with gamma = s^T y / y^T y from the
newest pair (N&W eq. 7.20), the scaling L-BFGS-B uses; the chapter's plainest variant
uses I.

A pair with non-positive curvature (s^T y <= 0, or so small against ||s|| ||y|| that
rounding decides its sign) would make the estimate indefinite; it is skipped.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ...errors import check_int
from .bfgs import bfgs_inverse_update
from .line_search import search


def _gamma(s_list, y_list, gamma):
    if gamma is not None:
        return float(gamma)
    if not s_list:
        return 1.0
    s, y = s_list[-1], y_list[-1]
    return float(s @ y) / float(y @ y)


def two_loop_recursion(g, s_list, y_list, gamma=None):
    """H_k g by the two-loop recursion (N&W Alg. 7.4); the L-BFGS direction is its negative.

    ``s_list``, ``y_list``: the stored pairs, oldest first, each (d,); ``gamma``: the
    initial matrix gamma I (default s^T y / y^T y of the newest pair).  Costs 4 m d.

    >>> s, y = [np.array([1.0, 0.0])], [np.array([2.0, 0.0])]
    >>> two_loop_recursion(np.array([2.0, 0.0]), s, y)    # H y = s
    array([1., 0.])
    """
    q = np.array(g, dtype=np.float64)
    rhos = [1.0 / float(s @ y) for s, y in zip(s_list, y_list)]
    alphas = []
    for s, y, rho in zip(reversed(s_list), reversed(y_list), reversed(rhos)):  # newest first
        a = rho * float(s @ q)
        q -= a * y
        alphas.append(a)
    r = _gamma(s_list, y_list, gamma) * q
    for s, y, rho, a in zip(s_list, y_list, rhos, reversed(alphas)):          # oldest first
        b = rho * float(y @ r)
        r += (a - b) * s
    return r


def lbfgs_inverse_hessian(s_list, y_list, gamma=None):
    """The L-BFGS matrix H_k itself (N&W eq. 7.19): Eq. 3.56 applied to gamma I once per
    stored pair, oldest first.  O(m d^2); for checking ``two_loop_recursion``.

    >>> H = lbfgs_inverse_hessian([np.array([1.0, 0.0])], [np.array([2.0, 0.0])])
    >>> H @ np.array([2.0, 0.0])
    array([1., 0.])
    """
    if not s_list:
        raise ValueError("lbfgs_inverse_hessian needs at least one (s, y) pair")
    n = np.asarray(s_list[0]).size
    H = _gamma(s_list, y_list, gamma) * np.eye(n)
    for s, y in zip(s_list, y_list):
        H = bfgs_inverse_update(H, s, y)
    return H


class LBFGSHistory:
    """The last ``m`` pairs (s, y) and the inverse-Hessian estimate they define.

    ``push(s, y)`` stores a pair (dropping the oldest beyond m) unless its curvature is
    non-positive, and says whether it did; ``matvec(v)`` is H v by the two-loop
    recursion; ``todense()`` the explicit (d, d) matrix.  ``minimize(method="l-bfgs")``
    returns one as ``hess_inv`` (as scipy's L-BFGS-B returns an operator).

    >>> h = LBFGSHistory(m=2)
    >>> h.push(np.array([1.0, 0.0]), np.array([-1.0, 0.0]))   # negative curvature
    False
    >>> h.push(np.array([1.0, 0.0]), np.array([2.0, 0.0])), len(h)
    (True, 1)
    """

    def __init__(self, m=10):
        self.m = check_int("m", m, minimum=1)
        self.s = deque(maxlen=self.m)
        self.y = deque(maxlen=self.m)

    def __len__(self):
        return len(self.s)

    def push(self, s, y):
        s = np.array(s, dtype=np.float64)
        y = np.array(y, dtype=np.float64)
        sy = float(s @ y)
        if not sy > np.finfo(np.float64).eps * float(np.linalg.norm(s) * np.linalg.norm(y)):
            return False
        self.s.append(s)
        self.y.append(y)
        return True

    @property
    def gamma(self):
        return _gamma(list(self.s), list(self.y), None)

    def matvec(self, v):
        return two_loop_recursion(v, list(self.s), list(self.y))

    def todense(self):
        return lbfgs_inverse_hessian(list(self.s), list(self.y))

    def __repr__(self):
        return f"LBFGSHistory(m={self.m}, pairs={len(self)}, gamma={self.gamma:.4g})"


def minimize_lbfgs(problem, run, x, f, g, *, m=10, line_search="wolfe", c1=1e-4, c2=0.9):
    """The L-BFGS loop for ``minimize(method="l-bfgs")``; returns ``hess_inv`` and counts.

    Like L-BFGS-B without bounds: the first step is steepest descent with a trial step of
    unit length, later ones try alpha = 1 along -H g.
    """
    history = LBFGSHistory(m)
    skipped = 0
    while not run.done:
        if len(history):
            p = -history.matvec(g)
            alpha0 = 1.0
        else:
            p = -g
            alpha0 = 1.0 / float(np.linalg.norm(g))
        ls = search(line_search, problem, x, p, f, g, alpha0=alpha0, c1=c1, c2=c2)
        if not ls.success:
            run.fail(f"line search failed: {ls.message}")
            break
        s = ls.alpha * p
        x_new = x + s
        g_new = ls.jac if ls.jac is not None else problem.grad(x_new)
        if run.advance(x_new, ls.fun, g_new):
            break
        if not history.push(s, g_new - g):
            skipped += 1
        x, f, g = x_new, ls.fun, g_new
    return {"hess_inv": history, "n_skipped": skipped}
