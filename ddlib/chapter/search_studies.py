"""The objective the Sec. 3.3.1 searches are compared on: a small MLP on the digits."""

from __future__ import annotations

import math

import numpy as np

from ..errors import check_int, check_positive

__all__ = ["digits_objective"]


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
