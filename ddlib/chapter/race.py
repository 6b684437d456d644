"""The optimizer race (Sec. 3.5): every rule on one surface, and the same rules on a digits MLP.

This module runs the races and returns numbers; ``ddlib.notebook.race`` draws them and
wires the ipywidgets.

* ``race_rules(names, lr, adaptive_lr, beta, rho)`` builds the ``ddlib.optim`` rules;
* ``race(surface, rules, start, steps)`` runs them (``ddlib.chapter.surfaces.run``),
  divergence recorded rather than raised;
* ``mlp_race(names, ...)`` trains an MLP on the digits with each rule (cached by settings).

Two learning rates, because the rules read them differently: for ``sgd``, ``momentum``,
``nesterov`` and ``delta_bar_delta`` the step is the rate times the gradient, so the right
rate depends on the surface's steepness; for ``adagrad``, ``rmsprop``, ``rmsprop_nesterov``
and ``adam`` the gradient is divided by its own running size and the rate is close to the
length of a step.  ``adadelta`` needs no rate (Eq. 3.43).  beta is the momentum (and Adam's
rho_f); rho the decay of the squared-gradient average (RMSProp, AdaDelta, Adam).

Example::

    paths = race("rosenbrock", race_rules(["sgd", "adam"], lr=1e-3, adaptive_lr=0.02), steps=300)
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from .. import optim
from ..errors import DivergenceError, check_int
from . import surfaces

RACE_RULES = ("sgd", "momentum", "nesterov", "delta_bar_delta", "adagrad", "rmsprop",
              "rmsprop_nesterov", "adadelta", "adam")
ADAPTIVE = ("adagrad", "rmsprop", "rmsprop_nesterov", "adam")

# Settings under which each surface tells its story in a few hundred steps.
SURFACE_DEFAULTS = {
    "bowl": dict(lr=0.1, adaptive_lr=0.1, steps=100),
    "ellipse": dict(lr=0.15, adaptive_lr=0.1, steps=100),
    "rosenbrock": dict(lr=1e-3, adaptive_lr=0.02, steps=500),
    "cliff": dict(lr=0.5, adaptive_lr=0.1, steps=200),
    "local_minima": dict(lr=0.5, adaptive_lr=0.1, steps=300),
    "saddle": dict(lr=0.05, adaptive_lr=0.05, steps=200),
    "degenerate": dict(lr=0.05, adaptive_lr=0.05, steps=200),
    "x2_y10": dict(lr=0.05, adaptive_lr=0.05, steps=200),
}

def race_rules(names=RACE_RULES, lr=0.01, adaptive_lr=0.01, beta=0.9, rho=0.9):
    """{name: Transform} for the named rules, all sharing the race's settings.

    ``lr`` drives sgd, momentum, nesterov and delta_bar_delta; ``adaptive_lr`` drives
    adagrad, rmsprop, rmsprop_nesterov and adam; adadelta runs rate-free (lr multiplier 1).
    ``beta`` is the momentum of momentum/nesterov/rmsprop_nesterov and Adam's rho_f; ``rho``
    the squared-gradient decay of rmsprop, rmsprop_nesterov, adadelta and adam.

    Example: ``race_rules(["sgd", "adam"], lr=0.1, adaptive_lr=0.05)``.
    """
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in RACE_RULES]
    if unknown:
        raise ValueError(f"unknown rule(s) {unknown}; expected names from {list(RACE_RULES)}")
    if not names:
        raise ValueError("names must list at least one rule")
    make = {
        "sgd": lambda: optim.sgd(lr),
        "momentum": lambda: optim.momentum(lr, beta),
        "nesterov": lambda: optim.nesterov(lr, beta),
        "delta_bar_delta": lambda: optim.delta_bar_delta(lr),
        "adagrad": lambda: optim.adagrad(adaptive_lr),
        "rmsprop": lambda: optim.rmsprop(adaptive_lr, rho),
        "rmsprop_nesterov": lambda: optim.rmsprop_nesterov(adaptive_lr, beta, rho),
        "adadelta": lambda: optim.adadelta(rho=rho),
        "adam": lambda: optim.adam(adaptive_lr, rho_f=beta, rho=rho),
    }
    return {n: make[n]() for n in names}


def race(surface, rules, start=None, steps=200):
    """{name: surfaces.Trajectory} for each rule of ``rules`` ({name: Transform}).

    Divergence is recorded in each Trajectory (``diverged_at``), so one runaway rule does
    not stop the race.
    """
    s = surfaces.get(surface)
    return {n: surfaces.run(s, r, start=start, steps=steps, on_divergence="record")
            for n, r in rules.items()}


# ---------------------------------------------------------------- the MLP race
class MLPResult(NamedTuple):
    """Per-epoch training loss, test loss and accuracy of one rule; ``status`` 'ok' or why not."""

    train_loss: tuple
    test_loss: tuple
    test_acc: tuple
    status: str


@functools.lru_cache(maxsize=256)
def _mlp_run(name, lr, adaptive_lr, beta, rho, epochs, hidden, batch_size, seed, n_train,
             backend):
    from .. import layers, losses, train
    from ..backend import use_backend

    digits = _digits(seed, n_train)
    rule = race_rules([name], lr, adaptive_lr, beta, rho)[name]
    hist = train.History()
    status = "ok"
    with use_backend(backend):
        net = layers.mlp([digits.n_features, hidden, digits.n_classes], "relu", rng=seed)
        opt = optim.Optimizer(net, rule)
        loss = losses.SoftmaxCrossEntropy()
        try:
            hist = train.fit(net, loss, opt, digits.X_train, digits.y_train, epochs=epochs,
                             batch_size=batch_size, seed=seed, X_val=digits.X_test,
                             y_val=digits.y_test, max_loss=1e3)
        except (DivergenceError, optim.NonFiniteGradient) as err:
            status = f"diverged: {err}".split(". ")[0]
    return MLPResult(tuple(hist.epoch_train_loss), tuple(hist.val_loss), tuple(hist.val_acc),
                     status)


@functools.lru_cache(maxsize=8)
def _digits(seed, n_train):
    from .. import data

    return data.load_digits(seed=seed, n_train=n_train)


def mlp_race(names=("sgd", "momentum", "rmsprop", "adam"), lr=0.1, adaptive_lr=3e-3,
             beta=0.9, rho=0.9, epochs=5, hidden=32, batch_size=32, seed=0, n_train=None,
             backend="numpy"):
    """Train a 64-hidden-10 ReLU MLP on the digits once per rule; {name: MLPResult}.

    Every rule starts from the same weights and sees the same batches (``seed``).  Results
    are cached by their settings, so a widget that returns to earlier settings redraws at
    once.  A rule that diverges keeps the epochs it finished and says so in ``status``.
    """
    if isinstance(names, str):
        names = [names]
    race_rules(names, lr, adaptive_lr, beta, rho)  # validate every setting up front
    epochs = check_int("epochs", epochs)
    hidden = check_int("hidden", hidden)
    batch_size = check_int("batch_size", batch_size)
    return {n: _mlp_run(n, float(lr), float(adaptive_lr), float(beta), float(rho), epochs,
                        hidden, batch_size, seed, n_train, backend) for n in names}
