"""What the Sec. 3.3.1 searches are compared on: a small MLP on the digits, Branin, the race."""

from __future__ import annotations

import math

import numpy as np

from ..errors import check_int, check_positive

__all__ = ["digits_objective", "branin", "branin_space", "BRANIN_MIN", "RACE_METHODS", "race",
           "trials_needed", "paired_differences"]


def digits_objective(hidden=32, epochs=8, batch_size=64, n_train=600, seed=0, cap=5.0):
    """A small, deterministic objective: an MLP on the digits, validation loss after training.

    Returns ``objective(params, resource=None)`` reading ``params['lr']`` (SGD learning
    rate) and ``params['l2']`` (weight of the penalty 0.5 * l2 * ||W||^2 on the weights,
    not the biases: ``optim.add_decayed_weights`` with a mask); ``resource`` overrides the
    number of epochs.  The split, the initial weights and the batch order depend only on
    ``seed``, so equal parameters give equal losses.  Training runs through ``train.fit``;
    a run that diverges (a loss above 1e3 or not finite, at whatever step) or ends above
    ``cap`` scores ``cap``.  Invalid parameters raise, they are not scored.
    """
    from .. import optim
    from ..backend import use_backend
    from ..data import load_digits
    from ..layers import mlp
    from ..losses import SoftmaxCrossEntropy
    from ..train import evaluate, fit

    data = load_digits(test_size=0.3, seed=seed, scale="unit", n_train=n_train)
    X, y, Xv, yv = data.X_train, data.y_train, data.X_test, data.y_test

    def weights_only(params):
        return {k: k.rsplit(".", 1)[-1] == "W" for k in params}

    def objective(params, resource=None):
        lr = check_positive("lr", params["lr"])
        lam = check_positive("l2", params.get("l2", 0.0), allow_zero=True)
        n_epochs = epochs if resource is None else check_int("resource", resource)
        with use_backend("numpy"), np.errstate(all="ignore"):
            net = mlp([X.shape[1], int(params.get("hidden", hidden)), data.n_classes],
                      activation="relu", rng=seed)
            loss = SoftmaxCrossEntropy()
            rule = optim.chain(optim.add_decayed_weights(lam, mask=weights_only),
                               optim.sgd(lr))
            try:
                fit(net, loss, optim.Optimizer(net, rule), X, y, epochs=n_epochs,
                    batch_size=batch_size, seed=seed, max_loss=1e3)
                val, _ = evaluate(net, loss, Xv, yv)
            except FloatingPointError:  # DivergenceError or NonFiniteGradient
                return cap
        return float(min(val, cap)) if math.isfinite(val) else cap

    objective.data = data
    return objective


# --------------------------------------------------------------------------- the race

#: Branin's minimum, reached at (-pi, 12.275), (pi, 2.275) and (9.42478, 2.475)
BRANIN_MIN = 0.397887357729738


def branin(params):
    """The Branin-Hoo function on x1 in [-5, 10], x2 in [0, 15]: a cheap objective whose
    optimum is known (``BRANIN_MIN``, three global minima), the classic first test of
    Bayesian optimization (Spearmint's paper used it)."""
    x1, x2 = float(params["x1"]), float(params["x2"])
    b, c = 5.1 / (4 * math.pi ** 2), 5 / math.pi
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


def branin_space():
    from ..tuning import Real, Space

    return Space([Real("x1", -5.0, 10.0), Real("x2", 0.0, 15.0)])


RACE_METHODS = ("random", "grid", "tpe", "gp", "forest")


def race(objective, space, budget, seeds, methods=RACE_METHODS, n_startup=5):
    """Every searcher of ``methods`` with the same objective, budget and seeds.

    Returns ``{method: array (len(seeds), budget)}`` of the best loss after each trial.
    The model-based searchers (tpe, gp, forest) start from the same ``n_startup`` random
    points as random search with the same seed.  The grid has no seed: its one run is
    repeated on every row (its budget is cut to the largest full grid, the rest of its
    row repeats the final best).
    """
    from .. import tuning

    budget = check_int("budget", budget)
    seeds = [check_int("seed", s, minimum=0) for s in seeds]
    curves = {}
    for m in methods:
        if m not in tuning.SEARCHERS:
            raise ValueError(f"methods: {m!r} is not a searcher; choose from "
                             f"{sorted(tuning.SEARCHERS)}")
        if m == "grid":
            c = tuning.grid_search(objective, space, budget).best_so_far()
            c = np.concatenate([c, np.full(budget - len(c), c[-1])])
            curves[m] = np.tile(c, (len(seeds), 1))
            continue
        opts = {"n_startup": n_startup} if m in tuning.MODEL_BASED else {}
        curves[m] = np.array([tuning.search(m, objective, space, budget, seed=s, **opts)
                              .best_so_far() for s in seeds])
    return curves


def trials_needed(curves, reference="random"):
    """Per seed, the trials each method needs to reach the reference's final best.

    Returns ``{method: int array}``; a method that never gets there within the budget
    counts as ``budget + 1`` (so a median above the budget reads "not within budget").
    """
    target = curves[reference][:, -1]
    out = {}
    for m, c in curves.items():
        hit = c <= target[:, None]
        out[m] = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, c.shape[1] + 1)
    return out


def paired_differences(curves, reference="random", offset=0.0):
    """Per method, its final best against the reference's on the same seed.

    Returns ``{method: (mean, se, better)}``: the mean over seeds of (method's final best
    minus the reference's), its standard error, and the number of seeds on which the method
    ended strictly lower.  ``offset`` is subtracted from both (a known optimum: regrets).
    """
    ref = curves[reference][:, -1] - offset
    out = {}
    for m, c in curves.items():
        d = (c[:, -1] - offset) - ref
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if m != reference and len(d) > 1 else 0.0
        out[m] = (float(d.mean()), se, int(np.sum(d < 0)))
    return out
