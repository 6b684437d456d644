"""Newton's method (Eq. 3.48) and its saddle-free variant (Sec. 3.5.6.3).

Newton jumps to the stationary point of the local quadratic model (Eq. 3.47):
W <- W - H^-1 grad L, with no learning rate.  On a quadratic bowl that is the minimum,
in one step however elongated the bowl (Fig. 3.14).  The same formula moves to any
stationary point of the model, so near a saddle it is attracted to the saddle: on
x^2 - y^2 the step from any point lands exactly on (0, 0) (Fig. 3.17b).

The saddle-free Newton method (Dauphin et al., 2014, the chapter's reference [88])
rescales the gradient by |H|^-1 instead, |H| having H's eigenvectors and the absolute
values of its eigenvalues: along a direction of negative curvature it moves downhill,
away from the saddle, by the same distance Newton would move toward it.  It needs the
eigendecomposition, so it is for small dense problems such as the 2-D surfaces.

Options shared by both: ``line_search`` None (the plain unit step of Eq. 3.48),
"armijo" or "wolfe" (alpha0 = 1); ``damping`` lambda > 0 adds lambda I to H (or |H|),
shortening steps where curvature is tiny.  Newton with only ``hessp`` solves H p = -g
by linear conjugate gradients (a truncated Newton step: at a direction of negative
curvature CG stops, and the first CG direction -g is used if nothing better exists).

When a run with ``hess`` succeeds, the Hessian at the final point is evaluated once more
(counted in ``nhev``) and returned as ``hess`` with its smallest eigenvalue
``hess_min_eig``; the message warns when that point is a saddle.
"""

from __future__ import annotations

import numpy as np

from .line_search import search
from .linear_cg import linear_cg


def _newton_direction(problem, x, g, damping, cg_tol, cg_maxiter):
    """-H^-1 g, or a message saying why there is none."""
    if problem.has_hessian:
        H = problem.hessian(x)
        if damping:
            H = H + damping * np.eye(x.size)
        try:
            p = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            return None, "the Hessian is singular (a degenerate point, Sec. 3.5.6.3); " \
                         "pass damping > 0 or use saddle-free-newton"
        if not np.isfinite(p).all():
            return None, "the Newton step H^-1 g is not finite (the Hessian is singular)"
        return p, None
    lam = damping or 0.0
    cg = linear_cg(lambda v: problem.hessian_product(x, v) + lam * v, -g, tol=cg_tol,
                   maxiter=cg_maxiter, keep_iterates=False)
    if cg.negative_curvature and cg.nit == 0:
        return -g.copy(), None
    return cg.x.astype(np.float64), None


def _saddle_free_direction(problem, x, g, damping):
    """-|H|^-1 g from the eigendecomposition H = V diag(lam) V^T."""
    lam, V = np.linalg.eigh(problem.hessian(x))
    return -(V @ ((V.T @ g) / (np.abs(lam) + damping))), None


def _step(problem, run, x, f, g, p, line_search, c1, c2, name):
    """Take the step along p (unit, or line-searched); returns the new (x, f, g) or None."""
    if line_search is None:
        x_new = x + p
        f_new, g_new = problem.value_and_grad(x_new)
        return None if run.advance(x_new, f_new, g_new) else (x_new, f_new, g_new)
    slope = float(g @ p)
    if not slope < 0:
        run.fail(f"the {name} direction is not a descent direction (g . p = {slope:.3g} >= "
                 "0): the Hessian is not positive definite here; a line search cannot "
                 "help (try damping, or saddle-free-newton)")
        return None
    ls = search(line_search, problem, x, p, f, g, alpha0=1.0, c1=c1, c2=c2)
    if not ls.success:
        run.fail(f"line search failed: {ls.message}")
        return None
    x_new = x + ls.alpha * p
    g_new = ls.jac if ls.jac is not None else problem.grad(x_new)
    return None if run.advance(x_new, ls.fun, g_new) else (x_new, ls.fun, g_new)


def _saddle_note(problem, run):
    """Look at the Hessian where the run stopped: a stationary point with negative
    curvature is a saddle, and the message says so."""
    if not problem.has_hessian or run.x is None or not run.success:
        return {}
    H = problem.hessian(run.x)
    lam_min = float(np.linalg.eigvalsh(H)[0])
    if lam_min < 0:
        run.message += (f" Note: the Hessian there has a negative eigenvalue ({lam_min:.4g}), "
                        "so this stationary point is a saddle point, not a minimum "
                        "(Sec. 3.5.6.3).")
    return {"hess": H.astype(problem.dtype), "hess_min_eig": lam_min}


def minimize_newton(problem, run, x, f, g, *, line_search=None, damping=None, c1=1e-4,
                    c2=0.9, cg_tol=1e-5, cg_maxiter=None):
    """The loop for ``minimize(method="newton")``."""
    state = (x, f, g)
    while not run.done:
        x, f, g = state
        p, why = _newton_direction(problem, x, g, damping, cg_tol, cg_maxiter)
        if p is None:
            run.fail(why)
            break
        state = _step(problem, run, x, f, g, p, line_search, c1, c2, "Newton")
    return _saddle_note(problem, run)


def minimize_saddle_free_newton(problem, run, x, f, g, *, damping=1e-6, line_search=None,
                                c1=1e-4, c2=0.9):
    """The loop for ``minimize(method="saddle-free-newton")``."""
    state = (x, f, g)
    while not run.done:
        x, f, g = state
        p, _ = _saddle_free_direction(problem, x, g, damping)
        state = _step(problem, run, x, f, g, p, line_search, c1, c2, "saddle-free Newton")
    return _saddle_note(problem, run)
