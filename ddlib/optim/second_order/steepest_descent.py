"""Steepest descent, the first-order baseline the second-order methods are measured against.

W <- W - alpha g with either a fixed ``lr`` (the first-order rules of Sec. 3.5 without
their refinements) or alpha from a line search along -g.  With exact line searches each
new gradient is orthogonal to the last step, which is the zigzag of Fig. 3.9 that
conjugate directions avoid (Sec. 3.5.6.1).
"""

from __future__ import annotations

import numpy as np

from .line_search import initial_step, search


def minimize_steepest_descent(problem, run, x, f, g, *, lr=None, line_search="wolfe", c1=1e-4,
                              c2=0.9):
    """The loop for ``minimize(method="steepest-descent")``."""
    f_prev = f + np.linalg.norm(g) / 2   # first trial step about 1 long, as in BFGS
    while not run.done:
        p = -g
        if lr is not None:
            x_new = x + lr * p
            f_new, g_new = problem.value_and_grad(x_new)
        else:
            alpha0 = initial_step(f, f_prev, -float(g @ g))
            ls = search(line_search, problem, x, p, f, g, alpha0=alpha0, c1=c1, c2=c2)
            if not ls.success:
                run.fail(f"line search failed: {ls.message}")
                break
            x_new, f_new = x + ls.alpha * p, ls.fun
            g_new = ls.jac if ls.jac is not None else problem.grad(x_new)
        f_prev = f
        if run.advance(x_new, f_new, g_new):
            break
        x, f, g = x_new, f_new, g_new
    return {}
