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

import math
from collections import deque

import numpy as np

from ...errors import check_int
from .bfgs import bfgs_inverse_update
from .line_search import search

_EPS = float(np.finfo(np.float64).eps)


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
    return _two_loop(q, s_list, y_list, rhos, _gamma(s_list, y_list, gamma))


def _two_loop(q, s_list, y_list, rhos, gamma):
    """The two loops on ``q`` (a float64 work vector, overwritten and returned) with the
    curvatures rho_i = 1 / s_i^T y_i and the scale gamma already known.  The arithmetic
    is ``two_loop_recursion``'s, operation for operation (``q *= gamma`` rounds as
    ``gamma * q`` does), so both give the same bits."""
    k = len(rhos)
    alphas = [0.0] * k
    for i in range(k - 1, -1, -1):                                            # newest first
        a = rhos[i] * float(s_list[i] @ q)
        q -= a * y_list[i]
        alphas[i] = a
    q *= gamma
    for i in range(k):                                                        # oldest first
        b = rhos[i] * float(y_list[i] @ q)
        q += (alphas[i] - b) * s_list[i]
    return q


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


# The two loops as one compiled kernel over the pairs kept in (m, d) ring buffers.  The
# dot products go through np.dot, which numba hands to BLAS's ddot as numpy does, and the
# axpy loops round each product and sum as numpy's ``q -= a * y`` does (no fused
# multiply-add without fastmath), so the kernel returns ``_two_loop``'s bits (the tests
# hold it to that), an order of magnitude sooner: the numpy loop pays about a microsecond
# of dispatch per vector operation, 4 m + 1 of them per direction.  numba is imported on
# first use (``import ddlib`` stays free of it), and only for d >= RING_MIN_SIZE, below
# which numba's import and dispatch outweigh what the kernel saves.
RING_MIN_SIZE = 64
_RING_KERNEL = []


def _ring_kernel():
    """The compiled two-loop kernel, or None when numba is unavailable."""
    if not _RING_KERNEL:
        try:
            import numba
        except ImportError:                                       # pragma: no cover
            _RING_KERNEL.append(None)
        else:
            _RING_KERNEL.append(numba.njit(cache=True)(_two_loop_ring))
    return _RING_KERNEL[0]


def _two_loop_ring(q, S, Y, rho, order, gamma, alpha):
    """``_two_loop`` on rows ``order`` (oldest first) of S and Y; overwrites q, alpha."""
    k = order.size
    d = q.size
    for ii in range(k - 1, -1, -1):                                           # newest first
        i = order[ii]
        a = rho[i] * np.dot(S[i], q)
        alpha[ii] = a
        yi = Y[i]
        for j in range(d):
            q[j] -= a * yi[j]
    for j in range(d):
        q[j] = gamma * q[j]
    for ii in range(k):                                                       # oldest first
        i = order[ii]
        c = alpha[ii] - rho[i] * np.dot(Y[i], q)
        si = S[i]
        for j in range(d):
            q[j] += c * si[j]
    return q


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
        # computed once in push rather than every iteration: rho = 1 / s^T y per stored
        # pair (the two-loop recursion's weights) and gamma from the newest pair
        self._rho = deque(maxlen=self.m)
        self._gamma = None      # s^T y / y^T y of the newest pair
        self._own = deque(maxlen=self.m)    # the (s, y) arrays push stored, to notice
        #                                     s and y edited from outside
        self._ring = None       # (S, Y, rho, alpha): copies of the pairs for the kernel
        self._order = np.zeros(0, dtype=np.int64)   # ring rows, oldest pair first
        self._pushed = 0        # pairs stored so far (the next ring row is _pushed % m)

    def __len__(self):
        return len(self.s)

    def push(self, s, y):
        s = np.array(s, dtype=np.float64)
        y = np.array(y, dtype=np.float64)
        return self._push(s, y)

    def _push(self, s, y):
        """``push`` for float64 vectors the caller hands over (stored without a copy)."""
        sy = float(s @ y)
        yy = float(y @ y)
        # ||s|| ||y|| as np.linalg.norm computes each: sqrt(v . v)
        if not sy > _EPS * (math.sqrt(float(s @ s)) * math.sqrt(yy)):
            return False
        self.s.append(s)
        self.y.append(y)
        self._rho.append(1.0 / sy)
        self._gamma = sy / yy
        self._own.append((s, y))
        if s.size >= RING_MIN_SIZE and s.ndim == 1:
            self._ring_push(s, y)
        return True

    def _ring_push(self, s, y):
        m, d = self.m, s.size
        if self._pushed < 0:
            return
        if self._ring is None or self._ring[0].shape[1] != d:
            if self._pushed:            # the vector size changed: no ring from here on
                self._ring, self._pushed = None, -1
                return
            self._ring = (np.empty((m, d)), np.empty((m, d)), np.empty(m), np.empty(m))
            # row i: the ring rows oldest first once the oldest pair sits in row i
            self._rotations = (np.arange(m)[None, :] + np.arange(m)[:, None]) % m
        S, Y, rho, _ = self._ring
        row = self._pushed % m
        S[row], Y[row], rho[row] = s, y, self._rho[-1]
        self._pushed += 1
        n = self._pushed
        self._order = self._rotations[n % m] if n >= m else self._rotations[0, :n]

    @property
    def gamma(self):
        return _gamma(list(self.s), list(self.y), None)

    def matvec(self, v):
        n = len(self.s)
        if n == 0 or n != len(self._own) or n != len(self.y) or any(
                a is not s or b is not y for (a, b), s, y in zip(self._own, self.s, self.y)):
            # empty, or s and y were edited from outside: recompute everything
            return two_loop_recursion(v, list(self.s), list(self.y))
        q = np.array(v, dtype=np.float64)
        if self._ring is not None and self._order.size == n and q.shape == (
                self._ring[0].shape[1],):
            kernel = _ring_kernel()
            if kernel is not None:
                S, Y, rho, alpha = self._ring
                return kernel(q, S, Y, rho, self._order, self._gamma, alpha)
        return _two_loop(q, self.s, self.y, self._rho, self._gamma)

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
        if not history._push(s, g_new - g):
            skipped += 1
        x, f, g = x_new, ls.fun, g_new
    return {"hess_inv": history, "n_skipped": skipped}
