"""Mini-batch training (Sec. 3.2.8): a seeded sampler, one step, and a loop with history."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .backend import get_backend, use_backend
from .errors import DivergenceError, check_int
from .init import as_rng


class MinibatchSampler:
    """Yields index arrays covering ``n`` examples in batches; reshuffled every epoch.

    >>> s = MinibatchSampler(5, batch_size=2, seed=0)
    >>> [len(b) for b in s]
    [2, 2, 1]
    """

    def __init__(self, n, batch_size, shuffle=True, seed=None, drop_last=False):
        self.n = check_int("n", n)
        self.batch_size = check_int("batch_size", batch_size)
        self.shuffle = shuffle
        self.rng = as_rng(seed)
        self.drop_last = drop_last

    def __iter__(self):
        order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        stop = self.n - (self.n % self.batch_size if self.drop_last else 0)
        for i in range(0, stop, self.batch_size):
            yield order[i:i + self.batch_size]

    def __len__(self):
        full, rest = divmod(self.n, self.batch_size)
        return full + (0 if self.drop_last or rest == 0 else 1)


def train_step(model, loss, optimizer, xb, yb):
    """Forward, backward and one optimizer step on a batch; returns the batch loss."""
    out = model.forward(xb, train=True)
    value = loss.forward(out, yb)
    model.backward(loss.backward(), need_dx=False)
    optimizer.step()
    return value


def predict(model, X, batch_size=1024):
    """Model outputs for X in inference mode, returned as a host array."""
    be = get_backend()
    outs = []
    for i in range(0, X.shape[0], batch_size):
        outs.append(be.to_numpy(model.forward(be.asarray(X[i:i + batch_size]), train=False)))
    return np.vstack(outs)


def evaluate(model, loss, X, y, batch_size=1024):
    """(mean loss, accuracy) over (X, y); accuracy is None unless y holds class labels."""
    scores = predict(model, X, batch_size)
    with use_backend("numpy"):
        value = loss.forward(scores, y)
    y = np.asarray(y)
    acc = float(np.mean(scores.argmax(axis=1) == y)) if y.ndim == 1 else None
    return value, acc


@dataclass
class History:
    """What a training run recorded: loss per step, and per-epoch summaries."""

    step_loss: list = field(default_factory=list)
    epoch_train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    examples_seen: list = field(default_factory=list)


def fit(model, loss, optimizer, X, y, epochs=1, batch_size=32, seed=None, X_val=None,
        y_val=None, progress=False, max_loss=1e6, callback=None):
    """Train with mini-batch SGD; returns a History.

    Stops with ``DivergenceError`` (naming the step and the loss) when a batch loss is
    non-finite or above ``max_loss``.  ``callback(epoch, history)`` runs after each epoch.
    """
    epochs = check_int("epochs", epochs)
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")
    be = get_backend()
    sampler = MinibatchSampler(len(X), batch_size, seed=seed)
    hist = History()
    seen = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * len(sampler), desc="training", leave=False)
    try:
        for epoch in range(epochs):
            total = 0.0
            for idx in sampler:
                xb = be.asarray(X[idx])
                yb = y[idx]
                value = train_step(model, loss, optimizer, xb, yb)
                if not math.isfinite(value) or value > max_loss:
                    raise DivergenceError(len(hist.step_loss), value)
                hist.step_loss.append(value)
                total += value * len(idx)
                seen += len(idx)
                if bar is not None:
                    bar.update(1)
            hist.epoch_train_loss.append(total / len(X))
            hist.examples_seen.append(seen)
            if X_val is not None:
                vl, va = evaluate(model, loss, X_val, y_val)
                hist.val_loss.append(vl)
                hist.val_acc.append(va)
            if callback is not None:
                callback(epoch, hist)
    finally:
        if bar is not None:
            bar.close()
    return hist
