"""Line searches: how far to go along a direction p (the alpha_t of Eqs. 3.54 and 3.49's loop).

Sec. 3.5.6 leaves the step length to "line search".  Two searches live here, both along
phi(alpha) = f(x + alpha p) with phi'(0) = g . p < 0:

* ``line_search_armijo``: backtracking (Nocedal & Wright, Alg. 3.1).  Start at alpha0 and
  shrink until the sufficient-decrease (Armijo) condition holds,
  phi(alpha) <= phi(0) + c1 alpha phi'(0).  Uses f only.
* ``line_search_wolfe``: a step satisfying the strong Wolfe conditions, sufficient decrease
  and |phi'(alpha)| <= c2 |phi'(0)|, found by bracketing and zooming (Nocedal & Wright,
  Alg. 3.5 and 3.6, the trial steps inside the bracket from a safeguarded cubic or
  quadratic interpolation, as scipy's ``line_search`` does).  The curvature condition
  gives y^T s > 0, which keeps the BFGS matrix positive definite.

Defaults follow scipy: c1 = 1e-4, c2 = 0.9 (use c2 = 0.1-0.4 for nonlinear CG).  A trial
step at which f or the gradient is non-finite counts as "too long".  Neither search
raises when it cannot find a step: it returns ``success=False`` with a ``message``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...errors import check_int, check_positive
from .objective import Problem


@dataclass
class LineSearchResult:
    """The outcome of one line search along p from x.

    ``alpha``: the step found (None on failure); ``fun``, ``jac``, ``slope``: f, its
    gradient and g . p at x + alpha p (``jac`` and ``slope`` are None when the search
    did not need the gradient there); ``nfev``/``njev``: evaluations this search made;
    ``trials``: every alpha tried, in order.
    """

    alpha: float | None
    fun: float | None
    jac: np.ndarray | None
    slope: float | None
    nfev: int
    njev: int
    success: bool
    message: str
    trials: list = field(default_factory=list)


# Trials the zoom phase may spend.  Where interpolation is distrusted it halves the
# bracket, and an initial step thousands of times too long (alpha = 1 along a raw
# gradient of norm 1e3) needs a dozen halvings or more; scipy's zoom stops after 10.
ZOOM_TRIALS = 40


class _Line:
    """phi(alpha) = f(x + alpha p) and phi'(alpha) = grad f(x + alpha p) . p."""

    def __init__(self, problem, x, p):
        self.problem, self.x, self.p = problem, x, p
        self.trials = []
        self.nfev0, self.njev0 = problem.nfev, problem.njev
        self._alpha = self._point = None   # the last trial point, reused by slope and done

    def point(self, alpha):
        if alpha != self._alpha or self._point is None:
            pt = self.x + alpha * self.p
            pt.flags.writeable = False   # so Problem may know it unchanged without comparing
            self._alpha, self._point = alpha, pt
        return self._point

    def value(self, alpha):
        self.trials.append(alpha)
        return self.problem.value(self.point(alpha))

    def slope(self, alpha):
        return float(self.problem.grad(self.point(alpha)) @ self.p)

    def done(self, alpha, f, slope, message, success=True):
        g = None
        if success and slope is not None:
            g = self.problem.grad(self.point(alpha))
        return LineSearchResult(
            alpha=alpha if success else None, fun=f if success else None, jac=g,
            slope=slope if success else None,
            nfev=self.problem.nfev - self.nfev0, njev=self.problem.njev - self.njev0,
            success=success, message=message, trials=self.trials)


def _finite(*values):
    return all(math.isfinite(v) for v in values)


def initial_step(f, f_prev, slope, cap=1.0):
    """A first trial step from the last decrease (Nocedal & Wright eq. 3.60), capped at ``cap``.

    Assumes the first-order decrease along p will match the last one: alpha0 =
    2 (f_k - f_{k-1}) / phi'(0), with scipy's 1.01 safety factor; falls back to ``cap``
    when that is not a positive number.

    >>> initial_step(1.0, 1.5, -2.0)   # 1.01 * 2 * (-0.5) / (-2) = 0.505
    0.505
    """
    if f_prev is None or slope == 0:
        return cap
    alpha = 1.01 * 2 * (f - f_prev) / slope
    if not math.isfinite(alpha) or alpha <= 0:
        return cap
    return min(cap, alpha)


# ----------------------------------------------------------------------------------------
# the two searches on phi, given phi(0) and phi'(0)

def _armijo(line, f0, slope0, alpha0, c1, shrink, maxiter):
    alpha = alpha0
    for _ in range(maxiter):
        f = line.value(alpha)
        if _finite(f) and f <= f0 + c1 * alpha * slope0:
            return line.done(alpha, f, None, "sufficient decrease holds")
        alpha *= shrink
    return line.done(None, None, None, f"no step in {maxiter} halvings of alpha0 = "
                     f"{alpha0:g} gave sufficient decrease (c1 = {c1:g})", success=False)


def _cubic_minimizer(a, fa, da, b, fb, c, fc):
    """Minimizer of the cubic through (a, fa) with slope da, (b, fb) and (c, fc), or None."""
    db, dc = b - a, c - a
    det = db * db * dc * dc * (dc - db)
    if det == 0 or not _finite(fa, da, fb, fc):
        return None
    r1, r2 = fb - fa - da * db, fc - fa - da * dc
    quad = (r1 * dc ** 3 - r2 * db ** 3) / det     # coefficient of t^2, t = alpha - a
    cube = (r2 * db * db - r1 * dc * dc) / det     # coefficient of t^3
    disc = quad * quad - 3 * cube * da
    if cube == 0 or disc < 0:
        return None
    t = (-quad + math.sqrt(disc)) / (3 * cube)     # the root of p'(t) = 0 where p'' > 0
    return a + t if math.isfinite(t) else None


def _quadratic_minimizer(a, fa, da, b, fb):
    """Minimizer of the parabola through (a, fa) with slope da and (b, fb), or None."""
    db = b - a
    if db == 0 or not _finite(fa, da, fb):
        return None
    curv = (fb - fa - da * db) / (db * db)
    if curv <= 0:
        return None
    return a - da / (2 * curv)


def _inside(alpha, lo, hi, margin):
    left, right = min(lo, hi), max(lo, hi)
    width = right - left
    return alpha is not None and left + margin * width < alpha < right - margin * width


def _zoom(line, lo, hi, f_lo, f_hi, d_lo, f0, slope0, c1, c2, maxiter):
    """Nocedal & Wright Alg. 3.6: shrink [lo, hi] (lo: the best step so far satisfying
    sufficient decrease; the strong-Wolfe step lies between them) until a step qualifies."""
    a_old, f_old = 0.0, f0  # a third point for the cubic: the endpoint replaced last
    for j in range(maxiter):
        if abs(hi - lo) <= 1e-12 * max(abs(lo), abs(hi)):
            break   # the bracket has shrunk to rounding: no progress is possible
        trial = _cubic_minimizer(lo, f_lo, d_lo, hi, f_hi, a_old, f_old) if j > 0 else None
        if not _inside(trial, lo, hi, 0.2):
            trial = _quadratic_minimizer(lo, f_lo, d_lo, hi, f_hi)
            if not _inside(trial, lo, hi, 0.1):
                trial = lo + 0.5 * (hi - lo)
        f = line.value(trial)
        d = line.slope(trial) if _finite(f) and f <= f0 + c1 * trial * slope0 \
            and f < f_lo else math.nan
        if not _finite(d):
            # too long (no sufficient decrease, not below f_lo, or non-finite): new hi
            a_old, f_old = hi, f_hi
            hi, f_hi = trial, f
            continue
        if abs(d) <= -c2 * slope0:
            return line.done(trial, f, d, "strong Wolfe conditions hold")
        if d * (hi - lo) >= 0:
            a_old, f_old = hi, f_hi
            hi, f_hi = lo, f_lo
        else:
            a_old, f_old = lo, f_lo
        lo, f_lo, d_lo = trial, f, d
    return line.done(None, None, None, f"zoom found no strong-Wolfe step "
                     f"(bracket [{min(lo, hi):.3g}, {max(lo, hi):.3g}]); f may be flat to "
                     "rounding here", success=False)


def _strong_wolfe(line, f0, slope0, alpha1, c1, c2, amax, maxiter):
    """Nocedal & Wright Alg. 3.5: grow the step until a bracket is found, then zoom."""
    a_prev, f_prev, d_prev = 0.0, f0, slope0
    alpha = min(alpha1, amax)
    for i in range(maxiter):
        f = line.value(alpha)
        if not _finite(f) or f > f0 + c1 * alpha * slope0 or (i > 0 and f >= f_prev):
            return _zoom(line, a_prev, alpha, f_prev, f, d_prev, f0, slope0, c1, c2, ZOOM_TRIALS)
        d = line.slope(alpha)
        if not _finite(d):
            return _zoom(line, a_prev, alpha, f_prev, math.inf, d_prev, f0, slope0, c1, c2,
                         ZOOM_TRIALS)
        if abs(d) <= -c2 * slope0:
            return line.done(alpha, f, d, "strong Wolfe conditions hold")
        if d >= 0:
            return _zoom(line, alpha, a_prev, f, f_prev, d, f0, slope0, c1, c2, ZOOM_TRIALS)
        if alpha >= amax:
            break
        a_prev, f_prev, d_prev = alpha, f, d
        alpha = min(2 * alpha, amax)
    return line.done(None, None, None, f"no bracket after {i + 1} trial steps up to alpha = "
                     f"{alpha:.3g} (amax = {amax:g}): f may be unbounded below along p",
                     success=False)


# ----------------------------------------------------------------------------------------
# public entry points

def _check_constants(c1, c2=None):
    c1 = check_positive("c1", c1)
    if c1 >= 1:
        raise ValueError(f"c1 must lie in (0, 1), got {c1!r}")
    if c2 is not None:
        c2 = check_positive("c2", c2)
        if not c1 < c2 < 1:
            raise ValueError(f"c2 must lie in (c1, 1) = ({c1:g}, 1), got {c2!r}")
    return c1, c2


def _setup(fun, jac, x, p, g0, f0, args):
    problem = Problem(fun, x, args=args, jac=jac)
    xf = np.asarray(x, dtype=np.float64).reshape(-1)
    pf = np.asarray(p, dtype=np.float64).reshape(-1)
    if pf.shape != xf.shape:
        raise ValueError(f"p has {pf.size} entries, x has {xf.size}")
    for name, v in (("x", xf), ("p", pf)):
        if not np.isfinite(v).all():
            raise ValueError(f"{name} contains non-finite values")
    line = _Line(problem, xf, pf)   # counts from here: f(x) and g(x) too, when not given
    f0 = problem.value(xf) if f0 is None else float(f0)
    g0 = problem.grad(xf) if g0 is None else np.asarray(g0, dtype=np.float64).reshape(-1)
    if not _finite(f0) or not np.isfinite(g0).all():
        raise ValueError(f"f or its gradient is non-finite at x (f0 = {f0!r})")
    slope0 = float(g0 @ pf)
    if not slope0 < 0:
        raise ValueError(f"p is not a descent direction: g0 . p = {slope0:.6g} must be < 0")
    return line, f0, slope0


def line_search_armijo(fun, x, p, g0, f0=None, *, alpha0=1.0, c1=1e-4, shrink=0.5,
                       maxiter=50, args=()):
    """Backtracking line search (Nocedal & Wright Alg. 3.1): the first alpha0 shrink^i with
    sufficient decrease f(x + alpha p) <= f(x) + c1 alpha g0 . p.

    ``g0``: the gradient at x (only its slope along p is used); ``f0``: f(x) if known.
    ``x``, ``p``, ``g0`` have shape (d,).  Returns a ``LineSearchResult`` (its ``nfev``
    includes the evaluation of f(x) when ``f0`` is not given).

    >>> f = lambda x: float(x @ x)
    >>> x = np.array([1.0, 1.0])
    >>> r = line_search_armijo(f, x, -2 * x, 2 * x)   # alpha = 1 jumps to -x: no decrease
    >>> r.alpha, r.fun, r.nfev                          # f(x), then alpha = 1 and 0.5
    (0.5, 0.0, 3)
    """
    c1, _ = _check_constants(c1)
    alpha0 = check_positive("alpha0", alpha0)
    shrink = check_positive("shrink", shrink)
    if shrink >= 1:
        raise ValueError(f"shrink must lie in (0, 1), got {shrink!r}")
    maxiter = check_int("maxiter", maxiter, minimum=1)
    if g0 is None:
        raise ValueError("g0 (the gradient at x) is required for the slope g0 . p")
    line, f0, slope0 = _setup(fun, None, x, p, g0, f0, args)
    return _armijo(line, f0, slope0, alpha0, c1, shrink, maxiter)


def line_search_wolfe(fun, jac, x, p, g0=None, f0=None, *, alpha0=1.0, c1=1e-4, c2=0.9,
                      amax=1e50, maxiter=10, args=()):
    """A step satisfying the strong Wolfe conditions (Nocedal & Wright Alg. 3.5/3.6).

    Sufficient decrease f(x + alpha p) <= f(x) + c1 alpha g0 . p and curvature
    |grad f(x + alpha p) . p| <= c2 |g0 . p|, with 0 < c1 < c2 < 1.  ``jac`` is the
    gradient function (or True when ``fun`` returns (f, g)); ``g0``/``f0`` avoid
    re-evaluating at x.  ``maxiter`` bounds the bracketing phase; the zoom phase may
    take up to ``ZOOM_TRIALS`` (40) trials, stopping early if the bracket shrinks to rounding.
    Returns a ``LineSearchResult`` whose ``jac`` is the gradient at the new point (its
    ``nfev``/``njev`` include the evaluations at x when ``f0``/``g0`` are not given).

    >>> f = lambda x: float(x @ x)
    >>> r = line_search_wolfe(f, lambda x: 2 * x, np.array([1.0]), np.array([-0.1]), c2=0.5)
    >>> r.trials, r.alpha               # doubles the step toward the minimum at alpha = 10
    ([1.0, 2.0, 4.0, 8.0], 8.0)
    """
    c1, c2 = _check_constants(c1, c2)
    alpha0 = check_positive("alpha0", alpha0)
    amax = check_positive("amax", amax)
    maxiter = check_int("maxiter", maxiter, minimum=1)
    if jac is None:
        raise ValueError("jac is required: the curvature condition needs the gradient")
    line, f0, slope0 = _setup(fun, jac, x, p, g0, f0, args)
    return _strong_wolfe(line, f0, slope0, alpha0, c1, c2, amax, maxiter)


def search(kind, problem, x, p, f0, g0, *, alpha0, c1, c2=0.9, maxiter=None, amax=1e50):
    """Run the line search ``kind`` ("wolfe" or "armijo") for a ``minimize`` method."""
    slope0 = float(g0 @ p)
    line = _Line(problem, x, p)
    if kind == "armijo":
        return _armijo(line, f0, slope0, alpha0, c1, 0.5, maxiter or 50)
    return _strong_wolfe(line, f0, slope0, alpha0, c1, c2, amax, maxiter or 10)
