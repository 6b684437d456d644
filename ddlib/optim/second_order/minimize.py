"""``minimize``: the second-order methods of Sec. 3.5.6 behind scipy.optimize's interface.

``minimize(fun, x0, args=(), method="bfgs", jac=None, hess=None, hessp=None, tol=None,
callback=None, options=None, **options)`` takes the arguments scipy's ``minimize``
takes, in the same order and with the same meaning (``jac=True``: ``fun`` returns
(f, g); ``hessp(x, p)``: H(x) p), and returns an ``OptimizeResult`` with the fields
scipy users read (``x``, ``fun``, ``jac``, ``nit``, ``nfev``, ``njev``, ``nhev``,
``status``, ``success``, ``message``), plus ``path`` (the iterates, (nit + 1, d), for
plotting), ``fun_path`` and each method's extras.

Methods (``METHODS``; names are case-insensitive):

=====================  =========================================================  ======
method                 what it does                                               extras
=====================  =========================================================  ======
"steepest-descent"     -g with a fixed ``lr`` or a line search (the baseline)
"newton"               Eq. 3.48, unit step or line search; needs hess or hessp    hess
"saddle-free-newton"   -|H|^-1 g (Sec. 3.5.6.3); needs hess (small dense d)       hess
"fletcher-reeves"      nonlinear CG (Sec. 3.5.6.1) with restarts; alias "cg"      n_restarts
"polak-ribiere"        nonlinear CG with PR+ beta = max(0, beta_PR)               n_restarts
"bfgs"                 Eqs. 3.52-3.56, G ~ H^-1 kept, strong-Wolfe steps          hess_inv
"l-bfgs"               last ``m`` pairs, two-loop recursion; alias "lbfgs"        hess_inv
=====================  =========================================================  ======

Options common to all: ``gtol`` (stop when ||g|| <= gtol, default 1e-5), ``norm`` (of
that test, default inf as scipy), ``maxiter`` (default 200 d), ``ftol`` (stop when
(f_k - f_{k+1}) <= ftol max(|f_k|, |f_{k+1}|, 1); default 0, i.e. off, except for
l-bfgs where it is scipy L-BFGS-B's 2.22e-9).  ``tol`` sets gtol (and ftol for
l-bfgs), as in scipy.  Per method, see ``OPTIONS``.  Note that scipy's method "CG" is
Polak-Ribiere+, while "cg" here is Fletcher-Reeves.

A run whose f or gradient turns non-finite stops at the last finite iterate with
``success=False`` and a message naming the iteration.  Precision: see
``ddlib.optim.second_order.objective`` (your functions see x0's dtype; the algebra is
float64; results come back in x0's dtype).

>>> f = lambda x: (x[0] - 1) ** 2 + 10 * (x[1] + 2) ** 2
>>> res = minimize(f, np.zeros(2), jac=lambda x: np.array([2 * (x[0] - 1), 20 * (x[1] + 2)]))
>>> bool(res.success), res.nit, np.round(res.x, 4)
(True, 6, array([ 1., -2.]))
"""

from __future__ import annotations

import numbers

import numpy as np

from ...errors import check_int, check_positive
from ._run import Run
from .bfgs import minimize_bfgs
from .lbfgs import minimize_lbfgs
from .newton import minimize_newton, minimize_saddle_free_newton
from .nonlinear_cg import minimize_nonlinear_cg
from .objective import Problem, start_point
from .steepest_descent import minimize_steepest_descent

ALIASES = {"cg": "fletcher-reeves", "lbfgs": "l-bfgs", "fr": "fletcher-reeves",
           "pr": "polak-ribiere", "polak-ribiere+": "polak-ribiere"}

# every option each method accepts, with its default
COMMON = {"gtol": 1e-5, "norm": np.inf, "maxiter": None, "ftol": 0.0}
OPTIONS = {
    "steepest-descent": {"lr": None, "line_search": "wolfe", "c1": 1e-4, "c2": 0.9},
    "newton": {"line_search": None, "damping": None, "c1": 1e-4, "c2": 0.9, "cg_tol": 1e-5,
               "cg_maxiter": None},
    "saddle-free-newton": {"damping": 1e-6, "line_search": None, "c1": 1e-4, "c2": 0.9},
    "fletcher-reeves": {"c1": 1e-4, "c2": 0.1, "restart_every": None, "restart_threshold": 0.1},
    "polak-ribiere": {"c1": 1e-4, "c2": 0.4, "restart_every": None, "restart_threshold": None},
    "bfgs": {"c1": 1e-4, "c2": 0.9, "hess_inv0": None},
    "l-bfgs": {"m": 10, "line_search": "wolfe", "c1": 1e-4, "c2": 0.9,
               "ftol": 2.220446049250313e-09},
}
METHODS = tuple(OPTIONS)


def _method_name(method):
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, one of {METHODS}, got {method!r}")
    name = method.strip().lower().replace("_", "-")
    name = ALIASES.get(name, name)
    if name not in OPTIONS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)} "
                         f"(aliases: {', '.join(f'{a} = {b}' for a, b in ALIASES.items())})")
    return name


def _optional(check):
    return lambda name, v: None if v is None else check(name, v)


def _norm(name, v):
    if v in (np.inf, -np.inf):
        return v
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or v < 1:
        raise ValueError(f"{name} must be a number >= 1 or inf, got {v!r}")
    return float(v)


def _line_search(name, v):
    if v not in (None, "wolfe", "armijo"):
        raise ValueError(f"{name} must be None, 'wolfe' or 'armijo', got {v!r}")
    return v


_CHECKS = {
    "gtol": lambda n, v: check_positive(n, v, allow_zero=True),
    "ftol": lambda n, v: check_positive(n, v, allow_zero=True),
    "norm": _norm,
    "maxiter": _optional(lambda n, v: check_int(n, v, minimum=0)),
    "lr": _optional(check_positive),
    "line_search": _line_search,
    "damping": _optional(check_positive),
    "c1": check_positive,
    "c2": check_positive,
    "cg_tol": lambda n, v: check_positive(n, v, allow_zero=True),
    "cg_maxiter": _optional(lambda n, v: check_int(n, v, minimum=1)),
    "restart_every": _optional(lambda n, v: check_int(n, v, minimum=1)),
    "restart_threshold": _optional(check_positive),
    "m": lambda n, v: check_int(n, v, minimum=1),
    "hess_inv0": lambda n, v: v,
}


def _options(name, options, keywords, tol, n):
    """Merge the defaults, ``options`` and keyword options; check each value."""
    options = dict(options or {})
    both = set(options) & set(keywords)
    if both:
        raise TypeError(f"option(s) {sorted(both)} given both in options= and as keywords")
    options.update(keywords)
    allowed = {**COMMON, **OPTIONS[name]}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for method {name!r}; it accepts "
                        f"{sorted(allowed)}")
    if tol is not None:
        tol = check_positive("tol", tol, allow_zero=True)
        options.setdefault("gtol", tol)
        if name == "l-bfgs":
            options.setdefault("ftol", tol)
    opts = {**allowed, **options}
    for key, value in opts.items():
        opts[key] = _CHECKS[key](key, value)
    if not 0 < opts["c1"] < opts["c2"] < 1:
        raise ValueError(f"the line-search constants need 0 < c1 < c2 < 1, got c1 = "
                         f"{opts['c1']!r}, c2 = {opts['c2']!r}")
    if name == "saddle-free-newton" and opts["damping"] is None:
        raise ValueError("damping must be a number > 0 for saddle-free-newton (|H| may have "
                         "zero eigenvalues), got None")
    if name in ("l-bfgs",) and opts["line_search"] is None:
        raise ValueError("line_search must be 'wolfe' or 'armijo' for l-bfgs, got None")
    if name == "steepest-descent" and opts["lr"] is None and opts["line_search"] is None:
        raise ValueError("steepest-descent needs a fixed step lr > 0 or a line_search")
    if opts["maxiter"] is None:
        opts["maxiter"] = 200 * n
    if opts.get("hess_inv0") is not None:
        G = np.asarray(opts["hess_inv0"], dtype=np.float64)
        if G.shape != (n, n) or not np.isfinite(G).all() or not np.allclose(G, G.T):
            raise ValueError(f"hess_inv0 must be a finite symmetric matrix of shape {(n, n)}")
        try:
            np.linalg.cholesky(G)
        except np.linalg.LinAlgError:
            raise ValueError("hess_inv0 must be positive definite") from None
        opts["hess_inv0"] = G
    return opts


def _solver(name):
    if name == "bfgs":
        return minimize_bfgs
    if name == "l-bfgs":
        return minimize_lbfgs
    if name == "newton":
        return minimize_newton
    if name == "saddle-free-newton":
        return minimize_saddle_free_newton
    if name == "steepest-descent":
        return minimize_steepest_descent
    beta = name

    def cg(problem, run, x, f, g, **opts):
        return minimize_nonlinear_cg(problem, run, x, f, g, beta=beta, **opts)
    return cg


def minimize(fun, x0, args=(), method="bfgs", jac=None, hess=None, hessp=None, tol=None,
             callback=None, options=None, **kwargs):
    """Minimize ``fun`` from ``x0`` by one of the methods of Sec. 3.5.6 (see the module doc).

    ``fun(x, *args) -> float`` (or (f, g) with ``jac=True``); ``x0``: (d,), finite;
    ``jac(x, *args) -> (d,)`` or None for central finite differences; ``hess(x, *args)
    -> (d, d)``; ``hessp(x, p, *args) -> (d,)``; ``callback(intermediate)`` after each
    iteration, with an ``OptimizeResult`` holding x, fun, jac, nit (return True or raise
    StopIteration to stop).  Options go in ``options=`` (a dict, as in scipy) or as
    keywords, e.g. ``minimize(f, x0, method="l-bfgs", jac=g, m=5)``.
    """
    name = _method_name(method)
    x, dtype = start_point(x0)
    opts = _options(name, options, kwargs, tol, x.size)
    if name == "newton" and hess is None and hessp is None:
        raise ValueError("method 'newton' needs hess= (a function returning the d x d "
                         "Hessian) or hessp= (a function (x, p) -> H(x) p)")
    if name == "saddle-free-newton" and hess is None:
        raise ValueError("method 'saddle-free-newton' needs hess= (a function returning the "
                         "d x d Hessian): it uses H's eigendecomposition")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    problem = Problem(fun, x, args=args, jac=jac, hess=hess, hessp=hessp, dtype=dtype)
    common = {k: opts.pop(k) for k in COMMON}
    run = Run(problem, name, callback=callback, **common)
    f, g = problem.value_and_grad(x)
    run.begin(x, f, g)
    extras = _solver(name)(problem, run, x, f, g, **opts)
    return run.result(**extras)
