"""``Run``: the bookkeeping every method in ``minimize`` shares.

A method computes directions and steps; ``Run`` records the accepted iterates, applies
the stopping tests (gradient norm, relative decrease of f, iteration budget), refuses a
non-finite f or gradient (the run then ends at the last finite point, and the message
names the iteration), calls the user's callback and builds the ``OptimizeResult``.
"""

from __future__ import annotations

import math

import numpy as np

from .result import OptimizeResult

# status codes, as in scipy.optimize
SUCCESS, MAXITER, NUMERICAL, NONFINITE, CALLBACK = 0, 1, 2, 3, 99


class Run:
    """The accepted iterates of one ``minimize`` call and the reason it ended.

    A method calls ``begin(x0, f0, g0)`` once, then ``advance(x, f, g)`` after each step;
    both return True once the run is over.  ``fail(message)`` ends it from inside a
    method (a line search that found no step, a singular Hessian, ...).
    """

    def __init__(self, problem, method, *, gtol, norm, maxiter, ftol=0.0, callback=None):
        self.problem, self.method = problem, method
        self.gtol, self.norm, self.maxiter, self.ftol = gtol, norm, maxiter, ftol
        self.callback = callback
        self.nit = 0
        self.path, self.fun_path = [], []
        self.x = self.f = self.g = None
        self.done = False
        self.success, self.status, self.message = False, None, ""

    def gnorm(self, g):
        if self.norm == math.inf:       # what np.linalg.norm computes for ord=inf
            return float(np.abs(g).max())
        return float(np.linalg.norm(g, ord=self.norm))

    @staticmethod
    def _nonfinite(f, g, gnorm=None):
        """What is non-finite about (f, g), or None when both are finite.

        ``gnorm``: ``gnorm(g)`` if known; a finite inf-norm means every entry is finite
        (a nan or inf entry makes the max nan or inf), so the entry-wise scan is skipped.
        """
        if not math.isfinite(f):
            return f"f = {f!r}"
        if gnorm is not None and math.isfinite(gnorm):
            return None
        if not np.isfinite(g).all():
            return f"{int(g.size - np.count_nonzero(np.isfinite(g)))} non-finite gradient entries"
        return None

    def _end(self, success, status, message):
        self.done, self.success, self.status, self.message = True, success, status, message
        return True

    def _record(self, x, f, g):
        self.x, self.f, self.g = x, f, g
        self.path.append(np.array(x))
        self.fun_path.append(f)

    def begin(self, x, f, g):
        self._record(x, f, g)
        bad = self._nonfinite(f, g)
        if bad is not None:
            return self._end(False, NONFINITE, f"stopped: the objective is non-finite ({bad}) "
                             "at the starting point x0 (iteration 0).")
        if self.gnorm(g) <= self.gtol:
            return self._end(True, SUCCESS, "Optimization terminated successfully: the "
                             f"gradient norm is <= gtol = {self.gtol:g} at x0.")
        if self.maxiter == 0:
            return self._end(False, MAXITER, "Maximum number of iterations (maxiter = 0) "
                             "reached.")
        return False

    def advance(self, x, f, g):
        """Accept the step to x (f, g there); True when the run is over."""
        gn = self.gnorm(g)
        bad = self._nonfinite(f, g, gn if self.norm == math.inf else None)
        if bad is not None:
            return self._end(False, NONFINITE, f"stopped: the objective became non-finite "
                             f"({bad}) at iteration {self.nit + 1}; the result is the last "
                             f"finite iterate (iteration {self.nit}).")
        f_prev = self.f
        self.nit += 1
        self._record(x, f, g)
        if self.callback is not None:
            try:
                halt = self.callback(OptimizeResult(x=self.problem.user_x(x), fun=f,
                                                    jac=self.problem.user_x(g), nit=self.nit))
            except StopIteration:
                halt = True
            if halt is True:
                return self._end(False, CALLBACK, f"stopped by the callback at iteration "
                                 f"{self.nit}.")
        if gn <= self.gtol:
            return self._end(True, SUCCESS, "Optimization terminated successfully: the "
                             f"gradient norm is <= gtol = {self.gtol:g}.")
        if self.ftol > 0 and f_prev - f <= self.ftol * max(abs(f_prev), abs(f), 1.0):
            return self._end(True, SUCCESS, "Optimization terminated successfully: the "
                             f"relative reduction of f is <= ftol = {self.ftol:g}.")
        if self.nit >= self.maxiter:
            return self._end(False, MAXITER, "Maximum number of iterations (maxiter = "
                             f"{self.maxiter}) reached.")
        return False

    def fail(self, message, status=NUMERICAL):
        """End the run unsuccessfully at the current iterate."""
        return self._end(False, status, f"{message} (at iteration {self.nit + 1}; the "
                         f"result is iteration {self.nit})")

    def result(self, **extras):
        prob, dt = self.problem, self.problem.dtype
        res = OptimizeResult(
            x=prob.user_x(self.x) if self.x is not None else None,
            fun=self.f,
            jac=prob.user_x(self.g) if self.g is not None else None,
            nit=self.nit, nfev=prob.nfev, njev=prob.njev, nhev=prob.nhev,
            status=self.status, success=self.success, message=self.message,
            method=self.method,
            path=np.array(self.path, dtype=dt).reshape(len(self.path), prob.n),
            fun_path=np.array(self.fun_path, dtype=np.float64),
        )
        res.update(extras)
        return res
