"""The measurements of Sec. 3.6: what batch normalization does to training.

* ``activation_inputs``: the input of every activation layer on a batch;
* ``train_tracked``: training that records test accuracy and the percentiles of one unit's
  input as it trains (after Ioffe and Szegedy's Fig. 1);
* ``batch_noise``: the output noise that batch statistics put on one example;
* ``lr_sweep`` and ``largest_stable_lr``: which learning rates train stably.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..backend import get_backend
from ..errors import DivergenceError, check_int
from ..init import as_rng
from ..layers.activations import Activation
from ..layers.batchnorm import BatchNorm


def _pipeline(model):
    """The layers a batch flows through in order (nested Sequentials flattened)."""
    from ..layers import Sequential

    if isinstance(model, Sequential):
        return [step for layer in model.layers for step in _pipeline(layer)]
    return [model]


def activation_inputs(model, X, train=False, return_output=False):
    """The input of every activation layer of ``model`` on the batch ``X`` (host arrays).

    With BN before the activation that input is the BN output; without BN it is the
    linear layer's output.  Runs in inference mode unless ``train`` is True.  With
    ``return_output`` the model's output (host array) comes back too: (inputs, output).
    """
    be = get_backend()
    h = be.asarray(X)
    seen = []
    for layer in _pipeline(model):
        if isinstance(layer, Activation):
            seen.append(be.to_numpy(h).copy())
        h = layer.forward(h, train=train)
    return (seen, be.to_numpy(h)) if return_output else seen


# --- the Sec. 3.6 measurements -------------------------------------------------------------


@dataclass
class TrackedRun:
    """Test accuracy and the percentiles of one unit's input, recorded while training."""

    steps: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    percentiles: list = field(default_factory=list)  # one (len(q),) row per recorded step
    loss: list = field(default_factory=list)  # training loss of every step
    q: tuple = (15, 50, 85)

    def steps_to(self, accuracy):
        """First recorded step at which the test accuracy reached ``accuracy`` (or None)."""
        for s, a in zip(self.steps, self.test_acc):
            if a >= accuracy:
                return s
        return None


def train_tracked(model, loss, optimizer, X, y, X_test, y_test, steps, batch_size=60,
                  eval_every=10, probe=(-1, 0), q=(15, 50, 85), seed=0, max_loss=1e6):
    """Train for ``steps`` mini-batch steps, recording test accuracy and one unit's input.

    Every ``eval_every`` steps (and at step 0) the model is evaluated in inference mode on
    (X_test, y_test) (skipped when X_test is None); ``probe=(k, unit)`` picks the k-th activation layer and the unit
    whose input distribution over the test set is summarized by the percentiles ``q``
    (Ioffe and Szegedy's Fig. 1(b, c)).  A non-finite or exploding loss raises
    ``DivergenceError``.  Returns a ``TrackedRun``.
    """
    from ..train import fit

    steps = check_int("steps", steps)
    eval_every = check_int("eval_every", eval_every)
    run = TrackedRun(q=tuple(q))
    layer_k, unit = probe

    def record(step):
        if X_test is None:
            return
        h, scores = activation_inputs(model, X_test, return_output=True)
        run.steps.append(step)
        run.test_acc.append(float(np.mean(scores.argmax(axis=1) == y_test)))
        if h:
            run.percentiles.append(np.percentile(h[layer_k][:, unit], q))

    def on_step(step, value, _model):
        if (step + 1) % eval_every == 0:
            record(step + 1)

    record(0)
    hist = fit(model, loss, optimizer, X, y, epochs=None, max_steps=steps,
               batch_size=batch_size, seed=seed, drop_last=True, max_loss=max_loss,
               on_step=on_step)
    run.loss = hist.step_loss
    run.percentiles = np.array(run.percentiles)
    return run


def batch_noise(model, X, index, n_batches=20, batch_size=32, seed=0):
    """Training-mode outputs for example ``index`` inside ``n_batches`` random batches.

    The other ``batch_size - 1`` members of each batch are drawn at random from ``X``;
    because BN normalizes with the batch's statistics, the same example gets a different
    output in each batch (the noise that makes BN act as a regularizer).  The running
    statistics are left as they were.  Returns a host array (n_batches, n_outputs).
    """
    n_batches = check_int("n_batches", n_batches)
    batch_size = check_int("batch_size", batch_size, minimum=2)
    if not 0 <= index < len(X):
        raise ValueError(f"index must lie in [0, {len(X)}), got {index}")
    rng = as_rng(seed)
    be = get_backend()
    bns = [layer for layer in model.modules() if isinstance(layer, BatchNorm)]
    saved = [(bn.buffers.copy(), bn.batches_seen) for bn in bns]
    for bn in bns:  # updates would otherwise land in the running averages
        bn.buffers = {k: be.asarray(be.to_numpy(v).copy()) for k, v in bn.buffers.items()}
    others = np.delete(np.arange(len(X)), index)
    outs = []
    try:
        for _ in range(n_batches):
            idx = np.concatenate([[index], rng.choice(others, batch_size - 1, replace=False)])
            outs.append(be.to_numpy(model.forward(be.asarray(X[idx]), train=True))[0])
    finally:
        for bn, (buffers, seen) in zip(bns, saved):
            bn.buffers, bn.batches_seen = buffers, seen
    return np.array(outs)


def lr_sweep(make_model, make_optimizer, lrs, X, y, steps, batch_size=60, seed=0,
             max_loss=1e3, learned=0.5):
    """Train a fresh model for ``steps`` at each rate; report which rates train stably.

    ``make_model()`` builds a network, ``make_optimizer(model, lr)`` its optimizer.  A run
    is *stable* when no batch loss is non-finite or above ``max_loss`` and the mean loss
    of its last tenth of steps is below ``learned`` times the loss of its first step (it
    learned, instead of blowing up, oscillating or stalling on saturated units).  Returns
    a list of dicts (lr, stable, final_loss).
    """
    from ..losses import SoftmaxCrossEntropy
    from ..train import fit

    out = []
    for lr in lrs:
        model = make_model()
        opt = make_optimizer(model, lr)
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                hist = fit(model, SoftmaxCrossEntropy(), opt, X, y, epochs=None,
                           max_steps=steps, batch_size=batch_size, seed=seed,
                           drop_last=True, max_loss=max_loss)
            tail = float(np.mean(hist.step_loss[-max(1, steps // 10):]))
            stable = math.isfinite(tail) and tail < learned * hist.step_loss[0]
        except (DivergenceError, FloatingPointError):
            tail, stable = math.inf, False
        out.append(dict(lr=lr, stable=stable, final_loss=tail))
    return out


def largest_stable_lr(sweep):
    """The largest rate of an ``lr_sweep`` result that trained stably (None if none did)."""
    stable = [row["lr"] for row in sweep if row["stable"]]
    return max(stable) if stable else None
