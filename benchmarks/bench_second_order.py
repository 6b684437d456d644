"""L-BFGS (m = 10, full batch) on digits logistic regression against scipy's L-BFGS-B.

Issue 15's target: ddlib's ``minimize(method="l-bfgs", m=10)`` reaches scipy's
``L-BFGS-B`` tolerance in <= 1.0 x scipy's wall time, on the same objective in the same
run.

The objective: multinomial logistic regression (softmax cross-entropy) on the digits
training split (1,348 x 64, pixels in [0, 1], float64, full batch), weights (64, 10) and
bias (10,) flattened into one vector of 650 parameters, plus an L2 penalty
(LAM / 2) ||x||^2 on all of them so the minimum is unique (a softmax is unchanged by
adding one constant to every bias, so an unpenalized bias has no unique minimizer).
One function ``fg(x) -> (f, g)`` computes value and gradient with ddlib's cpu kernels
(``linear``, ``softmax_xent``, ``softmax_xent_backward``, ``matmul_tn``, ``col_sum``);
both optimizers call that same function.

Protocol: scipy runs first with its defaults (``maxcor=10``; it stops on its relative
f-decrease test ``ftol`` = 2.2e-9 or its projected-gradient test ``gtol`` = 1e-5) and its
final f sets the target, f <= f_scipy + SLACK |f_scipy| (SLACK = 1e-9, relative).  An
untimed ddlib run with a callback (its own stopping tests off) finds the first iteration
k that reaches the target; the timed ddlib run is the same run (deterministic, so the
same iterates) with ``maxiter=k`` and no callback, so no callback cost is timed.  A
second ddlib row runs with its defaults, which are scipy's tests (gtol 1e-5 in the inf
norm, ftol 2.2e-9): "to scipy's tolerance" read literally.  The solvers and one ``fg``
call are timed in ROUNDS interleaved rounds, the best of each kept (outside load only
adds time); the ratio is ddlib's best over scipy's best.  Yardsticks: one ``fg`` call,
and nfev x that (the floor a solver's evaluations impose; both need the same nfev here),
from which each solver's time outside ``fg`` (its own overhead) follows.

BLAS runs on one thread during the measurement (``threadpool_limits``), for both solvers
alike: the matrices are tiny (1,348 x 64 times 64 x 10), and on a busy 2-core machine
OpenBLAS's threads made one ``fg`` take 2-20 ms instead of 0.45 ms and scipy's own
BLAS calls inside ``setulb`` several ms each, which would measure the thread pools'
contention rather than either optimizer.
"""

import numpy as np
import scipy.optimize as so
from threadpoolctl import threadpool_limits

import ddlib
from ddlib.data import load_digits
from ddlib.optim.second_order import minimize

from .timing import interleaved

LAM = 1e-4
SLACK = 1e-9
ROUNDS = 9
N_IN, N_OUT = 64, 10


def make_objective():
    """(fg, x0, n_examples): the value-and-gradient function on flat float64 vectors."""
    data = load_digits(scale="unit", dtype=np.float64)
    X = np.ascontiguousarray(data.X_train)
    y = np.ascontiguousarray(data.y_train, dtype=np.int64)
    be = ddlib.get_backend("cpu")
    nw = N_IN * N_OUT
    g = np.empty(nw + N_OUT)
    gW, gb = g[:nw].reshape(N_IN, N_OUT), g[nw:]
    lam = LAM

    def fg(x):
        W = x[:nw].reshape(N_IN, N_OUT)
        b = x[nw:]
        logits = be.linear(X, W, b)
        loss, probs = be.softmax_xent(logits, y)
        d = be.softmax_xent_backward(probs, y)
        be.matmul_tn(X, d, out=gW)
        be.col_sum(d, out=gb)
        out = g + lam * x          # a fresh array: the optimizers may keep it
        return loss + 0.5 * lam * float(x @ x), out

    x0 = np.zeros(nw + N_OUT)
    return fg, x0, X.shape[0]


def run_scipy(fg, x0):
    return so.minimize(fg, x0, jac=True, method="L-BFGS-B", options={"maxcor": 10})


def run_ddlib(fg, x0, **options):
    return minimize(fg, x0, jac=True, method="l-bfgs", options={"m": 10, **options})


def iterations_to(fg, x0, target):
    """The first iteration at which ddlib's f <= target (its stopping tests off), or its
    last iteration if it stops first (a failed line search)."""
    res = minimize(fg, x0, jac=True, method="l-bfgs", callback=lambda r: r.fun <= target,
                   options={"m": 10, "ftol": 0.0, "gtol": 0.0})
    return res.nit


def run():
    with threadpool_limits(limits=1):
        return _run()


def _run():
    fg, x0, n = make_objective()
    fg(x0)  # compile the kernels
    ref = run_scipy(fg, x0)
    x_end = ref.x
    target = ref.fun + SLACK * abs(ref.fun)
    k = iterations_to(fg, x0, target)
    to_target = {"m": 10, "ftol": 0.0, "gtol": 0.0, "maxiter": k}
    run_ddlib(fg, x0)               # compile the two-loop kernel
    out = {}

    def keep(name, fn):
        return lambda: out.__setitem__(name, fn())

    best = interleaved({
        "scipy": keep("scipy", lambda: run_scipy(fg, x0)),
        "ddlib": keep("ddlib", lambda: run_ddlib(fg, x0, **to_target)),
        "ddlib_own": keep("ddlib_own", lambda: run_ddlib(fg, x0)),
        "fg": lambda: fg(x_end),
    }, rounds=ROUNDS)
    ref, res, own = out["scipy"], out["ddlib"], out["ddlib_own"]
    t_fg = best["fg"]
    t_s, t_d, t_o = best["scipy"], best["ddlib"], best["ddlib_own"]
    reached = bool(res.fun <= target)
    workload = "l-bfgs m=10 digits logreg d=650"

    def outside(t, r):      # time outside fg: total, fraction, per iteration
        rest = max(0.0, t - r.nfev * t_fg)
        return f"outside fg {rest / t:.0%} ({rest / max(r.nit, 1) * 1e6:.0f} us/iter)"

    ratio = t_d / t_s
    return [
        dict(workload=workload, variant="one fg call (value+grad)", seconds=t_fg,
             note=f"ddlib cpu kernels, float64, full batch n = {n}, BLAS 1 thread"),
        dict(workload=workload, variant="scipy L-BFGS-B maxcor=10", seconds=t_s,
             note=f"nit {ref.nit} nfev {ref.nfev} f {ref.fun:.12g}; {outside(t_s, ref)}"),
        dict(workload=workload, variant="ddlib l-bfgs m=10 to scipy's f", seconds=t_d,
             ratio=ratio, reference="scipy L-BFGS-B maxcor=10", target="<= 1.0",
             ok=bool(reached and ratio <= 1.0),
             note=f"nit {res.nit} nfev {res.nfev} f {res.fun:.12g} "
                  f"({'<=' if reached else 'MISSED'} scipy f + {SLACK:g}|f|); "
                  f"{outside(t_d, res)}"),
        dict(workload=workload, variant="ddlib l-bfgs m=10 own stop", seconds=t_o,
             ratio=t_o / t_s, reference="scipy L-BFGS-B maxcor=10",
             note=f"same tests as scipy (gtol 1e-5 inf-norm, ftol 2.2e-9): nit {own.nit} "
                  f"nfev {own.nfev} f {own.fun:.12g}; {outside(t_o, own)}"),
        dict(workload=workload, variant="nfev x fg: scipy | ddlib", seconds=ref.nfev * t_fg,
             note=f"the floor their evaluations set: {ref.nfev * t_fg * 1e3:.2f} ms | "
                  f"{res.nfev * t_fg * 1e3:.2f} ms"),
    ]
