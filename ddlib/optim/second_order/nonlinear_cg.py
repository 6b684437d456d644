"""Nonlinear conjugate gradients (Sec. 3.5.6.1): Eq. 3.49 with a beta that needs no H.

The direction is q_{t+1} = -g_{t+1} + beta_t q_t as in Eq. 3.49, the step from a
line search, but beta comes from gradients only, since H changes from step to step:

* Fletcher-Reeves: beta = g_{t+1}^T g_{t+1} / g_t^T g_t
* Polak-Ribiere+:  beta = max(0, g_{t+1}^T (g_{t+1} - g_t) / g_t^T g_t)

On a quadratic with exact line searches both equal Eq. 3.50.  Away from one, conjugacy
decays and the method restarts from steepest descent (beta = 0): whenever the direction
fails to point downhill; whenever two successive gradients are far from orthogonal,
|g_{t+1}^T g_t| >= ``restart_threshold`` ||g_{t+1}||^2 (Powell's test, N&W eq. 5.52);
and, if ``restart_every`` is set, every that many iterations (d is the classical
choice; on small problems such as Rosenbrock it mostly costs iterations).  PR+'s
max(0, .) restarts by itself when beta would turn negative.

Defaults, chosen by measurement on Rosenbrock (2-D and 5-D): Fletcher-Reeves with
Powell's test at 0.1 and a strong-Wolfe c2 = 0.1 (Nocedal & Wright's advice: FR needs
c2 < 1/2 to guarantee descent directions, and is erratic without restarts);
Polak-Ribiere+ without Powell's test and with c2 = 0.4, which is scipy's "CG".
"""

from __future__ import annotations

import numpy as np

from .line_search import initial_step, search

BETAS = ("fletcher-reeves", "polak-ribiere")


def minimize_nonlinear_cg(problem, run, x, f, g, *, beta="polak-ribiere", c1=1e-4, c2=0.4,
                          restart_every=None, restart_threshold=None):
    """The loop for ``minimize(method="fletcher-reeves" | "polak-ribiere")``."""
    p = -g
    f_prev = f + np.linalg.norm(g) / 2
    restarts, since_restart = 0, 0
    while not run.done:
        slope = float(g @ p)
        if not slope < 0:
            p, slope = -g, -float(g @ g)
            restarts += 1
            since_restart = 0
        ls = search("wolfe", problem, x, p, f, g, alpha0=initial_step(f, f_prev, slope),
                    c1=c1, c2=c2)
        if not ls.success:
            run.fail(f"line search failed: {ls.message}")
            break
        x_new, g_new = x + ls.alpha * p, ls.jac
        f_prev = f
        if run.advance(x_new, ls.fun, g_new):
            break
        gg, gg_new = float(g @ g), float(g_new @ g_new)
        if beta == "fletcher-reeves":
            b = gg_new / gg
        else:
            b = max(0.0, float(g_new @ (g_new - g)) / gg)
        since_restart += 1
        if restart_every is not None and since_restart >= restart_every:
            b = 0.0
        if restart_threshold is not None and abs(float(g_new @ g)) >= restart_threshold * gg_new:
            b = 0.0
        if b == 0.0:
            restarts += 1
            since_restart = 0
        p = -g_new + b * p
        x, f, g = x_new, ls.fun, g_new
    return {"n_restarts": restarts}
