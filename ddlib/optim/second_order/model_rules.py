"""Second-order methods on a model: ``Optimizer`` rules whose ``step(closure)``
re-evaluates the loss, as ``torch.optim.LBFGS`` does.

Each rule is a ``Transform`` with ``extra_args`` (see ``ddlib.optim.base``): besides the
gradient it receives the loss (``value``), a way to evaluate the model elsewhere
(``value_and_grad``) and, for Hessian-free, curvature products (``curvature``).  The
algebra runs on flat float64 vectors (``Flattener``); the state is a NamedTuple of
arrays and numbers, so ``state_dict``/``load_state_dict`` work as for the first-order
rules.

* ``LBFGS(model, lr=1, m=10, max_iter=20, line_search="strong_wolfe")``: torch's
  interface; each ``step`` runs up to ``max_iter`` iterations of L-BFGS (Sec. 3.5.6.2),
  keeping the last ``m`` pairs across steps.
* ``HessianFree(model, damping=1.0, max_cg=250)``: Martens (2010), Sec. 3.5.6.1: the
  Gauss-Newton matrix plus damping, truncated CG warm-started from the previous step's
  solution, backtracking over the CG iterates, Levenberg-Marquardt damping from the
  reduction ratio, and a final backtracking line search.
* ``SecondOrder(model, method, max_iter=20, **options)``: any ``minimize`` method
  ("bfgs", "polak-ribiere", "fletcher-reeves", "newton", ...) run for ``max_iter``
  iterations per step; BFGS carries its inverse-Hessian estimate from step to step.

Usage::

    from ddlib.optim.second_order import HessianFree, closure
    opt = HessianFree(net)
    batch = closure(net, SoftmaxCrossEntropy(), X, y)
    for _ in range(20):
        loss = opt.step(batch)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...backend import get_backend
from ...errors import DivergenceError, check_int, check_positive
from ..base import Optimizer, Transform
from .curvature import Curvature, _batch_like, _untouched
from .flat import Flattener
from .lbfgs import two_loop_recursion
from .line_search import line_search_wolfe
from .linear_cg import linear_cg


class ModelClosure:
    """A closure over one batch: ``closure()`` zeroes the gradients, runs forward and
    backward and returns the loss; ``closure.curvature(exact)`` gives a ``Curvature`` at
    the model's current weights (on the same batch, or its first ``curvature_rows`` rows:
    Martens computes curvature on a smaller batch than the gradient)."""

    def __init__(self, model, loss, X, y, curvature_rows=None):
        self.model, self.loss = model, loss
        self.X = _batch_like(X, model.params, get_backend())
        self.y = y
        n = self.X.shape[0]
        if curvature_rows is not None:
            curvature_rows = check_int("curvature_rows", curvature_rows, minimum=1)
            if curvature_rows > n:
                raise ValueError(f"curvature_rows={curvature_rows} exceeds the batch's {n} rows")
        self.curvature_rows = curvature_rows
        self.n_calls = 0          # loss-and-gradient evaluations (forward + backward)
        self.n_values = 0         # loss-only evaluations (forward)
        self.n_products = 0       # curvature products, each on ``curvature_rows`` rows

    def __call__(self):
        self.n_calls += 1
        self.model.zero_grad()
        out = self.model.forward(self.X, train=True)
        value = self.loss.forward(out, self.y)
        self.model.backward(self.loss.backward(), need_dx=False)
        return float(value)

    def value(self):
        """The loss alone (one forward pass; batch-norm statistics left as they were)."""
        self.n_values += 1
        leaves = [m for m in self.model.modules() if not m.children()]
        with _untouched(self.model, leaves):
            out = self.model.forward(self.X, train=True)
            return float(self.loss.forward(out, self.y))

    @property
    def passes(self):
        """Passes over the batch so far: every evaluation touches all its rows once, a
        curvature product ``curvature_rows / n`` of them."""
        n = self.X.shape[0]
        rows = n if self.curvature_rows is None else self.curvature_rows
        return self.n_calls + self.n_values + self.n_products * rows / n

    def curvature(self, exact=False):
        X, y = self.X, self.y
        if self.curvature_rows is not None:
            X, y = X[:self.curvature_rows], y[:self.curvature_rows]
        c = Curvature(self.model, self.loss, X, y, exact=exact)
        closure = self

        class Counted:
            size, flattener = c.size, c.flattener

            def gvp(self, v):
                closure.n_products += 1
                return c.gvp(v)

            def hvp(self, v):
                closure.n_products += 1
                return c.hvp(v)

        return Counted()


def closure(model, loss, X, y, curvature_rows=None):
    """The ``ModelClosure`` for a batch: what ``Optimizer.step(closure)`` needs for the
    second-order rules (``HessianFree`` needs its ``curvature``)."""
    return ModelClosure(model, loss, X, y, curvature_rows)


def _flat_fg(flattener, value_and_grad, counter):
    def fg(x):
        counter[0] += 1
        f, g = value_and_grad(flattener.unflatten(x))
        return f, flattener.flatten(g)
    return fg


def _check_value(value, step, who):
    if value is None:
        raise TypeError(f"{who} needs the loss: call Optimizer.step(closure)")
    if not np.isfinite(value):
        raise DivergenceError(step, value, where=who)


# --- L-BFGS --------------------------------------------------------------------------


class LBFGSState(NamedTuple):
    count: int
    s: np.ndarray          # (m, d): stored steps, oldest first; rows past n_pairs unused
    y: np.ndarray          # (m, d): gradient changes
    n_pairs: int
    n_evals: int


def lbfgs_rule(lr=1.0, m=10, max_iter=20, line_search="strong_wolfe", tolerance_grad=1e-7,
               tolerance_change=1e-9, c1=1e-4, c2=0.9):
    """L-BFGS as a rule (torch.optim.LBFGS's options; ``m`` is its ``history_size``).

    line_search: "strong_wolfe" (scipy's c1, c2) or None (a fixed step ``lr``; the first
    iteration of a run scales it by 1 / ||g||_1, as torch does).  Pairs with
    non-positive curvature are skipped.
    """
    lr = check_positive("lr", lr)
    m = check_int("m", m, minimum=1)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    if line_search not in ("strong_wolfe", None):
        raise ValueError(f"line_search must be 'strong_wolfe' or None, got {line_search!r}")
    tolerance_grad = check_positive("tolerance_grad", tolerance_grad, allow_zero=True)
    tolerance_change = check_positive("tolerance_change", tolerance_change, allow_zero=True)

    def init(params):
        d = Flattener(params).size
        return LBFGSState(0, np.zeros((m, d)), np.zeros((m, d)), 0, 0)

    def update(grads, state, params, *, value, value_and_grad):
        _check_value(value, state.count, "L-BFGS")
        fl = Flattener(params)
        x0 = fl.flatten(params)
        x, g, f = x0.copy(), fl.flatten(grads), float(value)
        S, Y, n = state.s.copy(), state.y.copy(), state.n_pairs
        evals = [0]
        fg = _flat_fg(fl, value_and_grad, evals)
        for it in range(max_iter):
            if np.abs(g).max() <= tolerance_grad:
                break
            d = -two_loop_recursion(g, list(S[m - n:]), list(Y[m - n:])) if n else -g
            slope = float(g @ d)
            if slope > -tolerance_change:
                break
            t = min(1.0, 1.0 / np.abs(g).sum()) * lr if (n == 0 and it == 0) else lr
            if line_search == "strong_wolfe":
                res = line_search_wolfe(fg, True, x, d, g0=g, f0=f, alpha0=t, c1=c1, c2=c2)
                if not res.success or res.jac is None:
                    break
                t, f_new, g_new = res.alpha, float(res.fun), np.asarray(res.jac, np.float64)
            else:
                f_new, g_new = fg(x + t * d)
            if not np.isfinite(f_new):
                raise DivergenceError(state.count, f_new, where="L-BFGS")
            s, yv = t * d, g_new - g
            if float(s @ yv) > np.finfo(np.float64).eps * np.linalg.norm(s) * np.linalg.norm(yv):
                S = np.roll(S, -1, axis=0)
                Y = np.roll(Y, -1, axis=0)
                S[-1], Y[-1] = s, yv
                n = min(n + 1, m)
            x = x + s
            change = abs(f_new - f)
            f, g = f_new, g_new
            if change < tolerance_change or np.abs(s).max() <= tolerance_change:
                break
        updates = fl.unflatten(x - x0)
        return updates, LBFGSState(state.count + 1, S, Y, n, state.n_evals + evals[0])

    name = f"lbfgs(m={m}, max_iter={max_iter})"
    return Transform(init, update, None, name, extra_args=("value", "value_and_grad"))


# --- Hessian-free --------------------------------------------------------------------


class HessianFreeState(NamedTuple):
    count: int
    damping: float             # lambda of G + lambda I, adapted each step
    previous: np.ndarray       # (d,): the last CG solution, the next run's warm start
    cg_iters: int              # CG iterations (curvature products) of the last step
    rho: float                 # reduction ratio of the last step
    alpha: float               # line-search step of the last step (0: no move)
    total_cg_iters: int
    total_evals: int           # loss evaluations beyond the closure's first


def hessian_free_rule(damping=1.0, max_cg=250, progress_tol=5e-4, decay=0.95,
                      curvature="gauss-newton", boost=1.5, c=1e-2, shrink=0.8,
                      max_backtracks=60, min_damping=1e-8):
    """Hessian-free optimization (Martens 2010) as a rule; see the module docstring.

    damping:      the initial lambda (> 0); multiplied by ``boost`` when the reduction
                  ratio rho < 1/4 and divided by it when rho > 3/4
    max_cg:       CG iterations per step at most; ``progress_tol`` Martens' truncation
    decay:        the warm start is ``decay`` times the previous solution (0: cold start)
    curvature:    "gauss-newton" (G, positive semidefinite: the default) or "hessian"
                  (exact H by the R-operator: CG then stops at negative curvature)
    c, shrink:    the final Armijo backtracking line search (sufficient decrease c)
    """
    damping = check_positive("damping", damping)
    max_cg = check_int("max_cg", max_cg, minimum=1)
    progress_tol = check_positive("progress_tol", progress_tol)
    decay = check_positive("decay", decay, allow_zero=True)
    if decay >= 1:
        raise ValueError(f"decay must lie in [0, 1), got {decay!r}")
    if curvature not in ("gauss-newton", "hessian"):
        raise ValueError(f"curvature must be 'gauss-newton' or 'hessian', got {curvature!r}")
    exact = curvature == "hessian"
    boost = check_positive("boost", boost)
    if boost <= 1:
        raise ValueError(f"boost must be > 1, got {boost!r}")
    c = check_positive("c", c)
    shrink = check_positive("shrink", shrink)
    if shrink >= 1:
        raise ValueError(f"shrink must lie in (0, 1), got {shrink!r}")
    max_backtracks = check_int("max_backtracks", max_backtracks, minimum=0)
    min_damping = check_positive("min_damping", min_damping)

    def init(params):
        d = Flattener(params).size
        return HessianFreeState(0, float(damping), np.zeros(d), 0, float("nan"), 0.0, 0, 0)

    def update(grads, state, params, *, value, value_at, curvature):
        _check_value(value, state.count, "Hessian-free")
        fl = Flattener(params)
        x0 = fl.flatten(params)
        g = fl.flatten(grads)
        f0 = float(value)
        lam = float(state.damping)
        curv = curvature(exact=exact)         # products at this step's weights
        product = curv.hvp if exact else curv.gvp

        def A(v):
            return np.asarray(product(v), dtype=np.float64) + lam * v

        cg = linear_cg(A, -g, x0=decay * state.previous, tol=0.0, maxiter=max_cg,
                       progress_tol=progress_tol, keep_iterates="geometric")
        evals = [0]

        def f_at(x):
            evals[0] += 1
            return value_at(fl.unflatten(x))

        # backtrack over the kept CG iterates: from the last, go back while f decreases
        cands = list(zip(cg.iterate_steps, cg.iterates))[1:] or [(0, cg.x)]
        j = len(cands) - 1
        f_best = f_at(x0 + cands[j][1])
        while j > 0:
            f_prev = f_at(x0 + cands[j - 1][1])
            if not f_prev < f_best:
                break
            j, f_best = j - 1, f_prev
        step_at, p = cands[j]
        p = np.asarray(p, dtype=np.float64)
        # reduction ratio: actual change over the change the damped quadratic predicted
        predicted = float(cg.quadratic[step_at])
        rho = (f_best - f0) / predicted if predicted < 0 else -np.inf
        if rho < 0.25:
            lam *= boost
        elif rho > 0.75:
            lam = max(lam / boost, min_damping)
        # final backtracking line search on the chosen direction
        slope = float(g @ p)
        alpha, f_new = 1.0, f_best
        for _ in range(max_backtracks + 1):
            if np.isfinite(f_new) and f_new <= f0 + c * alpha * slope:
                break
            alpha *= shrink
            f_new = f_at(x0 + alpha * p)
        else:
            alpha = 0.0
        if slope >= 0:
            alpha = 0.0
        updates = fl.unflatten(alpha * p)
        return updates, HessianFreeState(
            state.count + 1, lam, np.asarray(cg.x, dtype=np.float64), int(cg.nit), float(rho),
            float(alpha), state.total_cg_iters + int(cg.nit), state.total_evals + evals[0])

    name = f"hessian_free(damping={damping:g}, max_cg={max_cg})"
    return Transform(init, update, None, name,
                     extra_args=("value", "value_at", "curvature"))


# --- any minimize method -------------------------------------------------------------


class MinimizeState(NamedTuple):
    count: int
    hess_inv: np.ndarray     # BFGS's estimate carried between steps ((0, 0) otherwise)
    n_evals: int


def minimize_rule(method, max_iter=20, **options):
    """``minimize(method=...)`` for ``max_iter`` iterations per step, from the model's
    weights.  "bfgs" keeps its inverse-Hessian estimate G from step to step; "newton"
    gets exact Hessian-vector products from the closure (a truncated Newton-CG step) and
    a strong-Wolfe line search unless ``line_search`` says otherwise."""
    from .minimize import _method_name, minimize

    name = _method_name(method)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    if "maxiter" in options:
        raise ValueError("pass max_iter (iterations per step), not maxiter")
    needs_curvature = name in ("newton",)
    if name == "newton":
        # a network's Hessian is indefinite away from a minimum: the unit step of Eq. 3.48
        # can land anywhere (Sec. 3.5.6.3), so on a model Newton searches along its step
        options.setdefault("line_search", "wolfe")
    if name == "saddle-free-newton":
        raise ValueError("saddle-free-newton needs the dense Hessian: use it on functions "
                         "(minimize), not on a model")

    def init(params):
        d = Flattener(params).size
        return MinimizeState(0, np.zeros((d, d)) if name == "bfgs" else np.zeros((0, 0)), 0)

    def update(grads, state, params, *, value, value_and_grad, curvature=None):
        _check_value(value, state.count, name)
        fl = Flattener(params)
        x0 = fl.flatten(params)
        evals = [0]
        fg = _flat_fg(fl, value_and_grad, evals)
        opts = dict(options, maxiter=max_iter)
        if name == "bfgs" and state.count > 0:
            opts["hess_inv0"] = state.hess_inv
        kwargs = {}
        if needs_curvature:
            curv = curvature(exact=True)
            kwargs["hessp"] = lambda x, p: curv.hvp(p)
        res = minimize(fg, x0, jac=True, method=name, options=opts, **kwargs)
        hess_inv = np.asarray(res.hess_inv, dtype=np.float64) if name == "bfgs" else state.hess_inv
        return fl.unflatten(np.asarray(res.x, np.float64) - x0), MinimizeState(
            state.count + 1, hess_inv, state.n_evals + evals[0])

    extra = ("value", "value_and_grad") + (("curvature",) if needs_curvature else ())
    return Transform(init, update, None, f"{name}(max_iter={max_iter})", extra_args=extra)


# --- torch-style constructors --------------------------------------------------------


class LBFGS(Optimizer):
    """``Optimizer(model, lbfgs_rule(...))`` with torch.optim.LBFGS's argument names
    (``history_size`` is accepted as an alias of ``m``)."""

    def __init__(self, model, lr=1.0, m=10, max_iter=20, line_search="strong_wolfe",
                 tolerance_grad=1e-7, tolerance_change=1e-9, history_size=None):
        if history_size is not None:
            m = history_size
        super().__init__(model, lbfgs_rule(lr, m, max_iter, line_search, tolerance_grad,
                                           tolerance_change))


class HessianFree(Optimizer):
    """``Optimizer(model, hessian_free_rule(...))``; ``step`` needs a ``closure(...)``."""

    def __init__(self, model, **options):
        super().__init__(model, hessian_free_rule(**options))


class SecondOrder(Optimizer):
    """``Optimizer(model, minimize_rule(method, max_iter, **options))``."""

    def __init__(self, model, method="bfgs", max_iter=20, **options):
        super().__init__(model, minimize_rule(method, max_iter, **options))
