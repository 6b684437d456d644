"""``Problem``: a user's objective as the second-order methods see it, with counted calls.

The user supplies ``fun`` and optionally ``jac``, ``hess`` and ``hessp`` in scipy's
conventions (``jac=True`` means ``fun`` returns the pair (f, g); ``hessp(x, p)`` returns
H(x) p).  ``Problem`` counts every call (``nfev``, ``njev``, ``nhev``), remembers the
last point so that asking for f and then g at the same x costs one call when ``fun``
returns both, and converts what comes back to float64.

Precision: your functions are called with x in the dtype of ``x0`` (float32 stays
float32, so a float32 model is never silently promoted); the algorithms keep their own
vectors and matrices (iterates, directions, the BFGS matrix G, the L-BFGS pairs) in
float64, and the results are cast back to the dtype of ``x0``.
"""

from __future__ import annotations

import numpy as np


def start_point(x0, name="x0"):
    """``x0`` as a 1-D float64 copy, and the dtype to hand to user functions and results.

    float32 and float64 are kept; any other real dtype (integers, float16) computes in float64.

    >>> x, dtype = start_point([1, 2])
    >>> x, dtype
    (array([1., 2.]), dtype('float64'))
    """
    arr = np.asarray(x0)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a 1-D array (flatten your parameters), got shape "
                         f"{arr.shape}")
    arr = np.atleast_1d(arr)
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf): {arr!r}")
    dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    return arr.astype(np.float64), np.dtype(dtype)


def _scalar(value, name):
    if isinstance(value, float):    # Python floats and np.float64: nothing to check
        return float(value)
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "iufb":
        raise TypeError(f"{name} must return a real scalar, got {type(value).__name__} "
                        f"of shape {arr.shape}")
    return float(arr.reshape(()))


class Problem:
    """f, g = grad f, H and H p of one objective at float64 points, each call counted.

    ``jac``: a callable ``jac(x, *args) -> (d,)``, ``True`` (``fun`` returns (f, g)), or
    None (central finite differences of ``fun``, 2 d calls per gradient, counted in
    ``nfev``).  ``hess(x, *args) -> (d, d)`` and ``hessp(x, p, *args) -> (d,)`` are
    optional; ``hessp`` falls back to ``hess(x) @ p`` when only ``hess`` is given.

    >>> prob = Problem(lambda x: (x @ x, 2 * x), np.zeros(2), jac=True)
    >>> prob.value(np.array([1.0, 2.0])), prob.grad(np.array([1.0, 2.0]))
    (5.0, array([2., 4.]))
    >>> prob.nfev, prob.njev   # one call gave both
    (1, 1)
    """

    def __init__(self, fun, x0, *, args=(), jac=None, hess=None, hessp=None, dtype=None):
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {type(fun).__name__}")
        if not (jac is None or jac is True or callable(jac)):
            raise TypeError("jac must be a callable, True (fun returns (f, g)) or None "
                            f"(finite differences), got {jac!r}")
        for name, h in (("hess", hess), ("hessp", hessp)):
            if h is not None and not callable(h):
                raise TypeError(f"{name} must be callable or None, got {type(h).__name__}")
        self.fun, self.jac, self.hess_fn, self.hessp_fn = fun, jac, hess, hessp
        self.args = tuple(args) if isinstance(args, (tuple, list)) else (args,)
        x0 = np.asarray(x0)
        self.n = x0.size
        self.dtype = np.dtype(dtype) if dtype is not None else (
            x0.dtype if x0.dtype in (np.float32, np.float64) else np.dtype(np.float64))
        self.nfev = self.njev = self.nhev = 0
        self._x = None          # last point evaluated, and what is known there
        self._x_in = None       # the array that was passed for it
        self._f = None
        self._g = None

    @property
    def has_hessian(self):
        return self.hess_fn is not None

    @property
    def has_hessian_product(self):
        return self.hessp_fn is not None or self.hess_fn is not None

    def user_x(self, x):
        """A fresh copy of x in the user's dtype (a user function may keep or edit it)."""
        return np.array(x, dtype=self.dtype)

    def _at(self, x):
        if x is self._x_in and x.base is None and not x.flags.writeable:
            return  # the very array of the last call, read-only and its own memory: unchanged
        x = np.asarray(x)
        last = self._x
        if last is None or last.shape != x.shape or not (last == x).all():
            self._x, self._f, self._g = np.array(x, dtype=np.float64), None, None
        self._x_in = x

    def _vector(self, value, name):
        g = np.asarray(value, dtype=np.float64)
        if g.ndim != 1:
            g = g.reshape(-1)
        if g.size != self.n:
            raise ValueError(f"{name} returned {g.size} entries for a point with {self.n}")
        return g

    def _call_fun(self, x):
        self.nfev += 1
        out = self.fun(self.user_x(x), *self.args)
        if self.jac is True:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError("with jac=True, fun must return a pair (f, g), got "
                                f"{type(out).__name__}")
            self.njev += 1
            return _scalar(out[0], "fun"), self._vector(out[1], "fun's gradient")
        return _scalar(out, "fun"), None

    def value(self, x):
        """f(x) as a Python float (may be nan or inf; the callers decide what that means)."""
        self._at(x)
        if self._f is None:
            self._f, g = self._call_fun(x)
            if g is not None:
                self._g = g
        return self._f

    def grad(self, x):
        """grad f(x) as a float64 vector of shape (d,)."""
        self._at(x)
        if self._g is None:
            if self.jac is True:
                self._f, self._g = self._call_fun(x)
            elif callable(self.jac):
                self.njev += 1
                self._g = self._vector(self.jac(self.user_x(x), *self.args), "jac")
            else:
                self.njev += 1
                self._g = self._finite_difference_grad(x)
        return self._g

    def value_and_grad(self, x):
        return self.value(x), self.grad(x)

    def _finite_difference_grad(self, x):
        # central differences, step ~ cbrt(machine eps) relative to |x_i| (truncation
        # error O(h^2) balanced against rounding O(eps / h))
        h = np.cbrt(np.finfo(self.dtype).eps) * np.maximum(1.0, np.abs(x))
        g = np.empty(self.n)
        for i in range(self.n):  # one pair of calls per coordinate: the cost of no jac
            e = np.zeros(self.n)
            e[i] = h[i]
            g[i] = (self._call_fun(x + e)[0] - self._call_fun(x - e)[0]) / (2 * h[i])
        return g

    def hessian(self, x):
        """The (d, d) Hessian from ``hess``, as float64."""
        if self.hess_fn is None:
            raise ValueError("this method needs hess= (a function returning the d x d Hessian)")
        self.nhev += 1
        H = np.asarray(self.hess_fn(self.user_x(x), *self.args), dtype=np.float64)
        if H.shape != (self.n, self.n):
            raise ValueError(f"hess returned shape {H.shape}, expected {(self.n, self.n)}")
        return H

    def hessian_product(self, x, p):
        """H(x) p from ``hessp`` (or ``hess(x) @ p``), as float64."""
        if self.hessp_fn is not None:
            self.nhev += 1
            out = self.hessp_fn(self.user_x(x), self.user_x(p), *self.args)
            return self._vector(out, "hessp")
        return self.hessian(x) @ p
