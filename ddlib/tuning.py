"""Hyperparameter search (Sec. 3.3.1): grid, random, coarse-to-fine, successive halving,
and the three model-based families the chapter names: TPE (Hyperopt), Gaussian-process
expected improvement (Spearmint's method) and random-forest surrogates (SMAC's method).

Every searcher has the same shape::

    trials = random_search(objective, space, budget=30, seed=0)

* ``space`` is a ``Space`` of typed dimensions: ``Real`` and ``Integer`` (either may be
  searched on a log scale, as the chapter advises for learning rates and regularization
  weights) and ``Choice``;
* ``objective(params)`` takes a dict ``{name: value}`` and returns a validation loss
  (lower is better).  Successive halving also passes ``resource=`` (epochs, say), so its
  objective must accept that keyword;
* ``budget`` is the number of objective calls (for successive halving: the number of
  *full-resource runs* the total resource spent may add up to);
* the result is a ``Trials`` table: one row (a dict) per call, in call order, with the
  parameters, the loss, the resource it ran with and the best loss so far.

Bayesian optimization comes in three forms: Hyperopt's Tree-structured Parzen Estimator
(``tpe_search``), and scikit-optimize's Gaussian process (``gp_search``, Spearmint-style)
and random forest (``forest_search``, SMAC-style), whose models are scikit-learn's
``GaussianProcessRegressor`` and ``RandomForestRegressor``.  All
three start from the same ``n_startup`` random points that ``random_search`` with the same
seed tries first, so a race between them compares the models, not their luck at the start;
the fitted GP or forest is kept as ``trials.surrogate``, and ``tpe_densities`` rebuilds
TPE's two densities.  Grid, random, coarse-to-fine and successive halving are written
here.  The objectives the Sec. 3.3.1 notebook and the benchmark race on (an MLP on
scikit-learn's digits; Branin, whose optimum is known) are in
``ddlib.chapter.search_studies``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import check_int, check_positive
from .init import as_rng

__all__ = [
    "Real",
    "Integer",
    "Choice",
    "Space",
    "Trials",
    "grid_search",
    "random_search",
    "coarse_to_fine",
    "successive_halving",
    "tpe_search",
    "tpe_densities",
    "gp_search",
    "forest_search",
    "Surrogate",
    "SEARCHERS",
    "MODEL_BASED",
    "search",
]


# --------------------------------------------------------------------------- dimensions


def _check_bounds(name, low, high, log):
    for what, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"dimension {name!r}: {what} must be a finite number, got {v!r}")
    if low >= high:
        raise ValueError(f"dimension {name!r}: low={low!r} must be below high={high!r}")
    if log and low <= 0:
        raise ValueError(
            f"dimension {name!r}: a log-scaled dimension needs positive bounds, got low={low!r}"
        )


@dataclass(frozen=True)
class Real:
    """A real hyperparameter in [low, high]; ``log=True`` samples log(value) uniformly.

    >>> Real("lr", 1e-3, 1e-1, log=True).from_unit(0.5)   # the geometric midpoint
    0.01
    """

    name: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self):
        _check_bounds(self.name, self.low, self.high, self.log)

    def _lo_hi(self):
        return (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)

    def from_unit(self, u):
        """Map u in [0, 1] to a value (uniformly in log space for log dimensions)."""
        lo, hi = self._lo_hi()
        v = lo + float(u) * (hi - lo)
        # 12 significant digits: the geometric midpoint of 1e-3 and 1e-1 prints as 0.01
        return float(f"{math.exp(v):.12g}") if self.log else float(v)

    def to_unit(self, value):
        lo, hi = self._lo_hi()
        v = math.log(value) if self.log else float(value)
        return (v - lo) / (hi - lo)

    def grid(self, n):
        return [self.from_unit(u) for u in np.linspace(0.0, 1.0, n)] if n > 1 else [
            self.from_unit(0.5)]

    def narrowed(self, center_unit, width):
        """The same dimension on a box of unit width ``width`` around ``center_unit``."""
        lo, hi = _window(center_unit, width)
        return type(self)(self.name, self.from_unit(lo), self.from_unit(hi), self.log)

    def hyperopt(self):
        from hyperopt import hp

        if self.log:
            return hp.loguniform(self.name, math.log(self.low), math.log(self.high))
        return hp.uniform(self.name, self.low, self.high)

    def skopt(self):
        from skopt.space import Real as SkReal

        return SkReal(self.low, self.high, prior="log-uniform" if self.log else "uniform",
                      name=self.name)

    def to_skopt(self, value):
        return float(value)

    def from_skopt(self, value):
        return min(self.high, max(self.low, float(value)))

    def cast(self, value):
        return float(value)


@dataclass(frozen=True)
class Integer:
    """An integer hyperparameter in [low, high] (both included), optionally log-scaled."""

    name: str
    low: int
    high: int
    log: bool = False

    def __post_init__(self):
        for what, v in (("low", self.low), ("high", self.high)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"dimension {self.name!r}: {what} must be an integer, got {v!r}")
        _check_bounds(self.name, self.low, self.high, self.log)

    def _real(self):
        # the box in which a uniform draw rounds to every integer with equal width
        return Real(self.name, self.low - 0.5 + 1e-9 if not self.log else self.low,
                    self.high + 0.5 - 1e-9 if not self.log else self.high, self.log)

    def from_unit(self, u):
        return int(min(self.high, max(self.low, round(self._real().from_unit(u)))))

    def to_unit(self, value):
        return self._real().to_unit(value)

    def grid(self, n):
        vals = sorted({self.from_unit(u) for u in np.linspace(0.0, 1.0, n)}) if n > 1 else [
            self.from_unit(0.5)]
        return vals

    def narrowed(self, center_unit, width):
        lo, hi = _window(center_unit, width)
        a, b = self.from_unit(lo), self.from_unit(hi)
        if a == b:  # a box narrower than one integer keeps its centre and a neighbour
            b = min(self.high, a + 1) if a < self.high else a
            a = b - 1
        return Integer(self.name, a, b, self.log)

    def hyperopt(self):
        from hyperopt import hp

        if self.log:
            return hp.qloguniform(self.name, math.log(self.low), math.log(self.high), 1)
        return hp.quniform(self.name, self.low, self.high, 1)

    def skopt(self):
        from skopt.space import Integer as SkInteger

        return SkInteger(self.low, self.high, prior="log-uniform" if self.log else "uniform",
                         name=self.name)

    def to_skopt(self, value):
        return int(value)

    def from_skopt(self, value):
        return self.cast(value)

    def cast(self, value):
        return int(min(self.high, max(self.low, round(float(value)))))


@dataclass(frozen=True)
class Choice:
    """A categorical hyperparameter: one of ``options`` (no order, no scale)."""

    name: str
    options: tuple

    def __post_init__(self):
        if len(self.options) < 1:
            raise ValueError(f"dimension {self.name!r}: options must not be empty")
        object.__setattr__(self, "options", tuple(self.options))

    def from_unit(self, u):
        return self.options[min(int(float(u) * len(self.options)), len(self.options) - 1)]

    def to_unit(self, value):
        return (self.options.index(value) + 0.5) / len(self.options)

    def grid(self, n):
        return list(self.options)

    def narrowed(self, center_unit, width):
        return Choice(self.name, (self.from_unit(center_unit),))

    def hyperopt(self):
        from hyperopt import hp

        return hp.choice(self.name, list(self.options))

    def skopt(self):
        # the options' positions, so that any option (None, a tuple, a class) is allowed;
        # scikit-optimize one-hot encodes them for the GP, the forest splits on them
        from skopt.space import Categorical

        return Categorical(list(range(len(self.options))), name=self.name)

    def to_skopt(self, value):
        return self.options.index(value)

    def from_skopt(self, value):
        return self.options[int(value)]

    def cast(self, value):
        return value


def _window(center, width):
    """[lo, hi] of length ``width`` around ``center``, slid back inside [0, 1]."""
    lo = min(max(center - width / 2, 0.0), 1.0 - width)
    return lo, lo + width


class Space:
    """An ordered set of named dimensions.

    >>> s = Space([Real("lr", 1e-4, 1.0, log=True), Integer("hidden", 8, 64)])
    >>> sorted(s.sample(np.random.default_rng(0)))
    ['hidden', 'lr']
    """

    def __init__(self, dims):
        dims = list(dims.values()) if isinstance(dims, dict) else list(dims)
        if not dims:
            raise ValueError("a search space needs at least one dimension")
        for d in dims:
            if not isinstance(d, (Real, Integer, Choice)):
                raise TypeError(f"space dimensions must be Real, Integer or Choice, got {d!r}")
        names = [d.name for d in dims]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"dimension names must be unique, repeated: {dup}")
        self.dims = dims

    @property
    def names(self):
        return [d.name for d in self.dims]

    def __len__(self):
        return len(self.dims)

    def __iter__(self):
        return iter(self.dims)

    def __getitem__(self, name):
        for d in self.dims:
            if d.name == name:
                return d
        raise KeyError(name)

    def __repr__(self):
        return f"Space({self.dims})"

    def from_unit(self, u):
        return {d.name: d.from_unit(ui) for d, ui in zip(self.dims, u)}

    def to_unit(self, params):
        return np.array([d.to_unit(params[d.name]) for d in self.dims])

    def sample(self, rng):
        """One point drawn uniformly (log-uniformly on log dimensions)."""
        return self.from_unit(as_rng(rng).uniform(size=len(self.dims)))

    def grid(self, points_per_dim):
        """Every combination of ``points_per_dim`` values per dimension (all options of a Choice)."""
        axes = [d.grid(points_per_dim) for d in self.dims]
        mesh = np.meshgrid(*[np.arange(len(a)) for a in axes], indexing="ij")
        idx = np.stack([m.ravel() for m in mesh], axis=1)
        return [{d.name: axes[j][i[j]] for j, d in enumerate(self.dims)} for i in idx]

    def narrowed(self, center, shrink):
        """A box ``shrink`` times as wide (in unit/log coordinates) centred on ``center``."""
        u = self.to_unit(center)
        return Space([d.narrowed(ui, shrink) for d, ui in zip(self.dims, u)])

    def hyperopt(self):
        return {d.name: d.hyperopt() for d in self.dims}

    def skopt(self):
        """The same space as a ``skopt.space.Space`` (log dimensions get a log-uniform prior)."""
        from skopt.space import Space as SkSpace

        return SkSpace([d.skopt() for d in self.dims])

    def to_skopt(self, params):
        return [d.to_skopt(params[d.name]) for d in self.dims]

    def from_skopt(self, x):
        return {d.name: d.from_skopt(v) for d, v in zip(self.dims, x)}

    def cast(self, params):
        return {d.name: d.cast(params[d.name]) for d in self.dims}


def _as_space(space):
    return space if isinstance(space, Space) else Space(space)


# --------------------------------------------------------------------------- the table


class Trials:
    """The trials of one search, in call order: a list of dicts with a small printer.

    Each row holds ``trial`` (0-based), ``method``, every hyperparameter, ``loss``,
    ``resource`` (None unless the searcher varies it), ``stage`` (round or rung) and
    ``best`` (the best full-resource loss so far).  ``surrogate`` is the fitted model of a
    ``gp_search`` or ``forest_search`` run (None for every other searcher).
    """

    def __init__(self, method, names, rows=None):
        self.method = method
        self.names = list(names)
        self.rows = list(rows or [])
        #: the fitted model of a GP or forest search (a ``Surrogate``), None for the others
        self.surrogate = None

    def add(self, params, loss, resource=None, stage=0, final=True):
        loss = float(loss)
        prev = self.rows[-1]["best"] if self.rows else math.inf
        best = min(prev, loss) if final else prev
        row = {"trial": len(self.rows), "method": self.method, **params, "loss": loss,
               "resource": resource, "stage": stage, "final": bool(final), "best": best}
        self.rows.append(row)
        return row

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def column(self, name):
        """One column as a NumPy array (object dtype for choices)."""
        vals = [r[name] for r in self.rows]
        try:
            return np.array(vals, dtype=float)
        except (TypeError, ValueError):
            return np.array(vals, dtype=object)

    @property
    def losses(self):
        return self.column("loss")

    def best_so_far(self):
        """Best (full-resource) loss after each trial."""
        return self.column("best")

    @property
    def best(self):
        """The row with the lowest loss among the full-resource trials."""
        rows = [r for r in self.rows if r["final"]] or self.rows
        return min(rows, key=lambda r: r["loss"])

    def trials_to_reach(self, target):
        """1-based number of trials after which the best loss is <= ``target`` (None if never)."""
        hit = np.flatnonzero(self.best_so_far() <= target)
        return int(hit[0]) + 1 if hit.size else None

    def table(self, max_rows=None, digits=4):
        """The rows as aligned text."""
        cols = ["trial", *self.names, "loss", "best"] + (
            ["resource"] if any(r["resource"] is not None for r in self.rows) else [])

        def fmt(v):
            if isinstance(v, float):
                return f"{v:.{digits}g}"
            return str(v)

        rows = self.rows if max_rows is None else self.rows[:max_rows]
        cells = [[fmt(r[c]) for c in cols] for r in rows]
        widths = [max([len(c)] + [len(row[j]) for row in cells]) for j, c in enumerate(cols)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
        if max_rows is not None and len(self.rows) > max_rows:
            lines.append(f"... ({len(self.rows) - max_rows} more)")
        return "\n".join(lines)

    def __repr__(self):
        return f"Trials({self.method!r}, {len(self.rows)} rows, best loss {self.best['loss']:.4g})" \
            if self.rows else f"Trials({self.method!r}, empty)"


def _loss(objective, params, **kw):
    value = objective(params, **kw)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"the objective must return a number (a validation loss), got {value!r}") \
            from None
    if math.isnan(value):
        raise ValueError(f"the objective returned NaN for {params}; return a large finite loss "
                         "for runs that diverge")
    return value


# --------------------------------------------------------------------------- searchers


def grid_search(objective, space, budget, points_per_dim=None):
    """Try every point of a grid (Sec. 3.3.1); log dimensions get a geometric grid.

    ``points_per_dim`` defaults to the largest n with n^d <= budget; the grid is cut at
    ``budget`` points if it is larger.

    >>> t = grid_search(lambda p: (p["x"] - 1) ** 2, [Real("x", -2.0, 2.0)], budget=5)
    >>> t.best["x"]
    1.0
    """
    space = _as_space(space)
    budget = check_int("budget", budget)
    n_ordered = sum(1 for d in space if not isinstance(d, Choice))
    n_choices = int(np.prod([len(d.options) for d in space if isinstance(d, Choice)]))
    if points_per_dim is None:
        per = max(budget // n_choices, 1)
        points_per_dim = max(int(math.floor(per ** (1.0 / max(n_ordered, 1)) + 1e-9)), 1)
    points_per_dim = check_int("points_per_dim", points_per_dim)
    trials = Trials("grid", space.names)
    for params in space.grid(points_per_dim)[:budget]:
        trials.add(params, _loss(objective, params))
    return trials


def random_search(objective, space, budget, seed=None):
    """Sample ``budget`` points uniformly (log-uniformly on log dimensions) [Bergstra & Bengio].

    >>> t = random_search(lambda p: (p["x"] - 1) ** 2, [Real("x", -2.0, 2.0)], 20, seed=0)
    >>> len(t), abs(t.best["x"] - 1.0) < 0.2
    (20, True)
    """
    space = _as_space(space)
    budget = check_int("budget", budget)
    rng = as_rng(seed)
    trials = Trials("random", space.names)
    for _ in range(budget):
        params = space.sample(rng)
        trials.add(params, _loss(objective, params))
    return trials


def coarse_to_fine(objective, space, budget, rounds=3, shrink=0.5, seed=None):
    """Random search in a box that shrinks geometrically around the best point (Sec. 3.3.1).

    The budget is split evenly over ``rounds``; after each round the box becomes ``shrink``
    times as wide (in unit, i.e. log, coordinates) and is centred on the best point so far,
    slid back inside the original range if needed.  The row's ``stage`` is the round.
    """
    space = _as_space(space)
    budget = check_int("budget", budget)
    rounds = check_int("rounds", rounds)
    check_positive("shrink", shrink)
    if shrink >= 1:
        raise ValueError(f"shrink must be below 1 (the box must get smaller), got {shrink!r}")
    rng = as_rng(seed)
    trials = Trials("coarse_to_fine", space.names)
    per_round = [budget // rounds + (1 if r < budget % rounds else 0) for r in range(rounds)]
    width = 1.0
    box = space
    for r, n in enumerate(per_round):
        for _ in range(n):
            params = space.cast(box.sample(rng))
            trials.add(params, _loss(objective, params), stage=r)
        if trials.rows:
            best = {k: trials.best[k] for k in space.names}
            width *= shrink
            box = space.narrowed(best, width)
    return trials


def successive_halving(objective, space, budget, min_resource=1, max_resource=9, eta=3,
                       seed=None):
    """Start many configurations on a small resource and keep the best 1/eta at each rung.

    The chapter's early termination of poor runs (Sec. 3.3.1): runs that look bad after a
    few epochs are stopped, and the survivors get eta times more epochs, up to
    ``max_resource``.  ``objective(params, resource=r)`` must train for ``r`` units (from
    scratch) and return the validation loss.  ``budget`` counts full-resource runs: the
    total resource spent stays within ``budget * max_resource``.  Rows carry ``resource``
    and ``stage`` (the rung); ``best`` is updated only by runs at ``max_resource``.
    """
    space = _as_space(space)
    budget = check_int("budget", budget)
    min_resource = check_int("min_resource", min_resource)
    max_resource = check_int("max_resource", max_resource)
    eta = check_int("eta", eta, minimum=2)
    if min_resource > max_resource:
        raise ValueError(f"min_resource={min_resource} exceeds max_resource={max_resource}")
    rng = as_rng(seed)
    resources = []
    r = min_resource
    while r < max_resource:
        resources.append(r)
        r *= eta
    resources.append(max_resource)
    # n configs at rung 0, n / eta^i at rung i: pick the largest n that fits the budget
    total = budget * max_resource

    def cost(n):
        c, k = 0, n
        for res in resources:
            c += k * res
            k = max(k // eta, 1)
        return c

    n = 1
    while cost(n + 1) <= total:
        n += 1
    trials = Trials("successive_halving", space.names)
    alive = [space.sample(rng) for _ in range(n)]
    for rung, res in enumerate(resources):
        final = rung == len(resources) - 1
        scored = []
        for params in alive:
            loss = _loss(objective, params, resource=res)
            trials.add(params, loss, resource=res, stage=rung, final=final)
            scored.append((loss, len(scored), params))
        scored.sort(key=lambda t: (t[0], t[1]))
        alive = [p for _, _, p in scored[:max(len(scored) // eta, 1)]]
    return trials


def _startup(objective, space, trials, rng, n_startup):
    """The first ``n_startup`` trials of every model-based searcher: uniform draws from ``rng``.

    They are the very points ``random_search`` with the same seed tries first, so that with
    equal seeds every model-based method starts from the same evidence and differs only in
    what its model makes of it.
    """
    for _ in range(n_startup):
        params = space.sample(rng)
        trials.add(params, _loss(objective, params))
    return trials


def _n_startup(n_startup, budget):
    if n_startup is None:
        return min(10, budget)
    n_startup = check_int("n_startup", n_startup)
    if n_startup > budget:
        raise ValueError(f"n_startup={n_startup} exceeds budget={budget}: the random start "
                         "is part of the budget")
    return n_startup


def tpe_search(objective, space, budget, seed=None, n_startup=None):
    """Bayesian optimization with Hyperopt's Tree-structured Parzen Estimator.

    The first ``n_startup`` trials (default ``min(10, budget)``) are the random points
    ``random_search(..., seed=seed)`` starts with; after them Hyperopt fits, per dimension,
    one Parzen density l(x) to the best quarter-root of the trials and one g(x) to the
    rest, and tries the candidate with the largest l(x) / g(x) (``tpe_densities`` draws
    them).  Hyperopt's own randomness comes from a generator seeded from ``seed``.
    """
    import functools

    from hyperopt import STATUS_OK, fmin, tpe
    from hyperopt import Trials as HTrials
    from hyperopt.fmin import generate_trials_to_calculate

    space = _as_space(space)
    budget = check_int("budget", budget)
    n_startup = _n_startup(n_startup, budget)
    rng = as_rng(seed)
    trials = Trials("tpe", space.names)
    if budget == n_startup:
        return _startup(objective, space, trials, rng, n_startup)
    start = [space.sample(rng) for _ in range(n_startup)]
    # Hyperopt evaluates the random start first (it wants positions for choices), then
    # max_evals points of its own
    history = generate_trials_to_calculate(
        [{d.name: d.options.index(p[d.name]) if isinstance(d, Choice) else p[d.name]
          for d in space} for p in start]) if start else HTrials()

    def fn(params):
        params = space.cast(params)
        loss = _loss(objective, params)
        trials.add(params, loss)
        return {"loss": loss, "status": STATUS_OK}

    algo = functools.partial(tpe.suggest, n_startup_jobs=n_startup)
    fmin(fn, space.hyperopt(), algo=algo, max_evals=budget - n_startup, trials=history,
         rstate=np.random.default_rng(int(rng.integers(2**63))), show_progressbar=False)
    return trials


def tpe_densities(trials, space, name, values, gamma=0.25):
    """TPE's two densities along dimension ``name``, as Hyperopt builds them from ``trials``.

    Returns ``(l, g)`` evaluated at ``values``: the Parzen density of the dimension over
    the ``ceil(gamma * sqrt(n))`` best trials and over the others, with Hyperopt's own
    prior component, bandwidths and linear forgetting (``hyperopt.tpe``'s
    ``ap_split_trials`` and ``adaptive_parzen_normal``).  Log dimensions are modelled in
    log(value), so there the densities are per unit of log(value).  TPE treats the
    dimensions independently: its score of a point is the product over dimensions of
    l / g, and it samples candidates from l.
    """
    from hyperopt.tpe import GMM1_lpdf, adaptive_parzen_normal, ap_split_trials

    space = _as_space(space)
    dim = space[name]
    if isinstance(dim, Choice):
        raise ValueError(f"dimension {name!r} is a Choice; tpe_densities draws ordered dimensions")
    rows = [r for r in trials if r["final"]]
    if len(rows) < 2:
        raise ValueError(f"tpe_densities needs at least 2 finished trials, got {len(rows)}")
    check_positive("gamma", gamma)
    log = dim.log

    def t(v):
        v = np.asarray(v, dtype=float)
        return np.log(v) if log else v

    lo, hi = (math.log(dim.low), math.log(dim.high)) if log else (dim.low, dim.high)
    idx = np.arange(len(rows))
    below, above = ap_split_trials(idx, t([r[name] for r in rows]), idx,
                                   [r["loss"] for r in rows], gamma)
    x = t(values).ravel()
    out = []
    for obs in (below, above):
        w, mu, sigma = adaptive_parzen_normal(np.asarray(obs, dtype=float), 1.0,
                                              0.5 * (lo + hi), hi - lo)
        out.append(np.exp(GMM1_lpdf(x, w, mu, sigma, low=lo, high=hi)).reshape(np.shape(values)))
    return out[0], out[1]


class Surrogate:
    """What a model-based search believes once its last trial is in.

    ``predict(points)`` gives the surrogate's mean loss and its standard deviation at a
    list of parameter dicts (or one dict of equal-length arrays, e.g. a grid);
    ``expected_improvement(points)`` the acquisition the searcher maximized.  ``model`` is
    the fitted scikit-optimize regressor, ``space`` the ``skopt.space.Space`` it reads.
    """

    def __init__(self, kind, model, space, sk_space, best, xi):
        self.kind, self.model, self.space, self.sk_space = kind, model, space, sk_space
        self.best, self.xi = float(best), float(xi)

    def _rows(self, points):
        if isinstance(points, dict):
            cols = {k: np.ravel(v) for k, v in points.items()}
            n = len(next(iter(cols.values())))
            points = [{k: c[i] for k, c in cols.items()} for i in range(n)]
        return self.sk_space.transform([self.space.to_skopt(p) for p in points])

    def predict(self, points):
        with warnings.catch_warnings():
            # at a point it has seen the GP's variance can round below 0; it is set to 0
            warnings.filterwarnings("ignore", message="Predicted variances smaller than 0")
            mean, std = self.model.predict(self._rows(points), return_std=True)
        return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)

    def expected_improvement(self, points):
        from skopt.acquisition import gaussian_ei

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Predicted variances smaller than 0")
            ei = gaussian_ei(self._rows(points), self.model, y_opt=self.best, xi=self.xi)
        return np.asarray(ei, dtype=float)

    def __repr__(self):
        return f"Surrogate({self.kind!r}, {type(self.model).__name__})"


def _model_search(method, estimator, acq_optimizer, objective, space, budget, seed,
                  n_startup, xi, n_candidates):
    from skopt import Optimizer

    space = _as_space(space)
    budget = check_int("budget", budget)
    n_startup = _n_startup(n_startup, budget)
    n_candidates = check_int("n_candidates", n_candidates)
    check_positive("xi", xi, allow_zero=True)
    rng = as_rng(seed)
    trials = Trials(method, space.names)
    _startup(objective, space, trials, rng, n_startup)
    sk_space = space.skopt()
    opt = Optimizer(sk_space.dimensions, base_estimator=estimator(sk_space, rng),
                    n_initial_points=n_startup, acq_func="EI", acq_optimizer=acq_optimizer,
                    acq_func_kwargs={"xi": xi},
                    acq_optimizer_kwargs={"n_points": n_candidates, "n_restarts_optimizer": 2},
                    random_state=int(rng.integers(2**31)))
    with warnings.catch_warnings():
        # a model may propose a point it has seen; the trial is spent, as with any searcher
        warnings.filterwarnings("ignore", message="The objective has been evaluated")
        warnings.filterwarnings("ignore", message="Predicted variances smaller than 0")
        if n_startup:
            opt.tell([space.to_skopt(r) for r in trials.rows], [r["loss"] for r in trials.rows])
        for _ in range(budget - n_startup):
            x = opt.ask()
            params = space.from_skopt(x)
            loss = _loss(objective, params)
            trials.add(params, loss)
            opt.tell(space.to_skopt(params), loss)
    if opt.models:
        trials.surrogate = Surrogate(method, opt.models[-1], space, opt.space,
                                     trials.best["loss"], xi)
    return trials


def gp_search(objective, space, budget, seed=None, n_startup=None, xi=0.01,
              n_candidates=2000, polish=True, kernel_restarts=0):
    """Gaussian-process Bayesian optimization with expected improvement: Spearmint's method.

    After the same ``n_startup`` random trials as ``random_search`` with the same seed, a
    Gaussian process with a Matern-5/2 kernel, one length scale per dimension (automatic
    relevance determination) and a learned noise term is fitted to every loss so far
    (log dimensions in log coordinates, choices one-hot); the next point maximizes the
    expected improvement over the best loss by ``xi``, found among ``n_candidates`` random
    candidates, the best of which are refined by L-BFGS (``polish=False``: the best
    candidate as it is, like ``forest_search``).  Spearmint averages over the kernel's hyperparameters
    by MCMC; here they are fitted by maximum likelihood (``kernel_restarts`` extra random
    restarts of that fit), as scikit-optimize's ``gp_minimize`` does.

    The engine is scikit-optimize (``skopt.Optimizer`` with its default GP), chosen
    because one small package provides both this surrogate and the random forest of
    ``forest_search`` on the same space types, in pure Python over scikit-learn and scipy;
    Optuna's GP sampler, the other candidate, needs PyTorch (gigabytes of wheels for one
    sampler).  Its upstream is in maintenance only (the repository was archived in 2024;
    0.10.2 is the release used): it works with this project's scikit-learn and NumPy, and
    the tests of this module would fail on a break.  The fitted model is kept as
    ``trials.surrogate`` (a ``Surrogate``).
    """
    kernel_restarts = check_int("kernel_restarts", kernel_restarts, minimum=0)

    def estimator(sk_space, rng):
        from skopt.utils import cook_estimator

        return cook_estimator("GP", space=sk_space, random_state=int(rng.integers(2**31)),
                              n_restarts_optimizer=kernel_restarts)

    return _model_search("gp", estimator, "lbfgs" if polish else "sampling", objective, space, budget, seed, n_startup,
                         xi, n_candidates)


def forest_search(objective, space, budget, seed=None, n_startup=None, n_trees=10, xi=0.01,
                  n_candidates=2000, min_samples_leaf=1):
    """Random-forest Bayesian optimization with expected improvement: SMAC's method.

    After the same ``n_startup`` random trials as ``random_search`` with the same seed, a
    random forest of ``n_trees`` bootstrapped regression trees (SMAC's defaults: 10
    trees, leaves of one sample) is fitted to every loss so far; its mean is the trees'
    average and its uncertainty their spread.  The next point maximizes the expected
    improvement among ``n_candidates`` random candidates (a forest's prediction is piecewise
    constant, so there is no gradient to follow).  A forest copes with choices and integers
    as they are, which is why SMAC chose it for configuration spaces.  SMAC itself adds a
    local search around the best points and interleaved random points; this is the core
    idea in scikit-optimize's ``forest_minimize`` form (SMAC's package builds C++ from
    source, which we avoid).  The fitted model is kept as ``trials.surrogate``.
    """
    n_trees = check_int("n_trees", n_trees)
    min_samples_leaf = check_int("min_samples_leaf", min_samples_leaf)

    def estimator(sk_space, rng):
        from skopt.learning import RandomForestRegressor

        return RandomForestRegressor(n_estimators=n_trees, min_samples_leaf=min_samples_leaf,
                                     random_state=int(rng.integers(2**31)))

    return _model_search("forest", estimator, "sampling", objective, space, budget, seed,
                         n_startup, xi, n_candidates)


#: the searchers that fit a model and start from random search's first points (n_startup)
MODEL_BASED = ("tpe", "gp", "forest")

SEARCHERS = {
    "grid": grid_search,
    "random": random_search,
    "coarse_to_fine": coarse_to_fine,
    "successive_halving": successive_halving,
    "tpe": tpe_search,
    "gp": gp_search,
    "forest": forest_search,
}


def search(method, objective, space, budget, seed=None, **options):
    """Run the searcher called ``method`` (a key of ``SEARCHERS``) with the shared interface."""
    if method not in SEARCHERS:
        raise ValueError(f"method={method!r} is not a searcher; choose one of {sorted(SEARCHERS)}")
    if method == "grid":
        return grid_search(objective, space, budget, **options)
    return SEARCHERS[method](objective, space, budget, seed=seed, **options)
