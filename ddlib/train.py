"""Mini-batch training (Sec. 3.2.8): a seeded sampler, one step, and a loop with history."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .backend import get_backend, use_backend
from .backend.arrays import is_device
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

    def order(self):
        """The next epoch's order of the ``n`` indices (a fresh shuffle each call)."""
        return self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)

    def bounds(self):
        """(start, stop) of each batch within an epoch's order."""
        stop = self.n - (self.n % self.batch_size if self.drop_last else 0)
        return [(i, min(i + self.batch_size, self.n)) for i in range(0, stop, self.batch_size)]

    def __iter__(self):
        order = self.order()
        for start, stop in self.bounds():
            yield order[start:stop]

    def __len__(self):
        full, rest = divmod(self.n, self.batch_size)
        return full + (0 if self.drop_last or rest == 0 else 1)


def check_optimizer(model, optimizer, who="fit"):
    """``optimizer`` must be an ``optim.Optimizer`` that updates ``model``'s parameters.

    It is accepted when it was built for ``model`` (``optimizer.model is model``) or for
    a part of it (every parameter it updates belongs to ``model``: fine-tuning some
    layers).  A rule (a ``Transform``) or an Optimizer built for another model raises.
    """
    from .optim.base import Optimizer, Transform

    if not isinstance(optimizer, Optimizer):
        hint = (" (a rule: wrap it as optim.Optimizer(model, rule))"
                if isinstance(optimizer, Transform) else "")
        raise TypeError(f"{who}: optimizer must be a ddlib.optim.Optimizer, got "
                        f"{type(optimizer).__name__}{hint}")
    if optimizer.model is model:
        return
    named = getattr(model, "named_parameters", None)
    mine = {(id(layer), k) for _, layer, k in named()} if callable(named) else set()
    theirs = {(id(layer), k) for _, layer, k in optimizer._named}
    if not theirs or not theirs <= mine:
        raise ValueError(f"{who}: the optimizer was built for another model "
                         f"({type(optimizer.model).__name__}); build it as "
                         f"Optimizer(model, rule) for the model being trained")


def check_max_loss(max_loss, who="fit"):
    """A number > 0 (``inf`` switches the check off); NaN, bools and the rest raise."""
    if isinstance(max_loss, bool) or not isinstance(max_loss, (int, float, np.integer,
                                                               np.floating)):
        raise TypeError(f"{who}: max_loss must be a number > 0, got {max_loss!r}")
    if math.isnan(max_loss) or max_loss <= 0:
        raise ValueError(f"{who}: max_loss must be a number > 0 (inf switches the check "
                         f"off), got {max_loss!r}")
    return float(max_loss)


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
    """What a training run recorded: loss per step, and per-epoch summaries.

    An epoch that a step budget cut short is summarized over the examples it did see.
    """

    step_loss: list = field(default_factory=list)
    epoch_train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    examples_seen: list = field(default_factory=list)

    @property
    def steps(self) -> int:
        """How many steps the run took."""
        return len(self.step_loss)


def _gather(be, X, idx):
    """The rows ``X[idx]`` on the current backend (a device batch is cut on the device)."""
    if is_device(X):
        return be.take_rows(X, idx)
    return be.asarray(X[idx])


def fit(model, loss, optimizer, X, y, epochs=1, batch_size=32, seed=None, X_val=None,
        y_val=None, progress=False, max_loss=1e6, callback=None, *, max_steps=None,
        drop_last=False, shuffle=True, on_step=None, step_fn=None):
    """Train with mini-batch SGD (Sec. 3.2.8); returns a ``History``.

    The one training loop of ddlib: the chapter studies and ``DeviceTrainer`` call it too,
    so a run that blows up is reported the same way wherever it happens.

    epochs:     passes over the data; ``None`` runs until ``max_steps``
    max_steps:  stop after this many steps (the last epoch may then be partial)
    max_loss:   a number > 0 (``inf`` switches the divergence check on the loss off)
    optimizer:  an ``optim.Optimizer`` built for ``model`` (or a part of it); ``None``
                only with ``step_fn``
    drop_last:  skip the last batch of an epoch when it is smaller than ``batch_size``
    shuffle:    reshuffle the order every epoch (seeded by ``seed``, an int or a Generator)
    on_step:    ``on_step(step, loss, model)`` after every step; steps count from 0, as
                ``Optimizer.steps`` does
    callback:   ``callback(epoch, history)`` after every epoch
    step_fn:    ``step_fn(xb, yb) -> loss`` replaces the default step (forward, loss,
                backward, ``optimizer.step()``); it may return ``None`` when the loss stays
                on the device (the caller then checks the run itself)

    Before any update is applied, a batch loss that is non-finite or above ``max_loss``
    stops the run with ``DivergenceError`` naming the step and the loss; the parameters
    are then those the last good step left (the diverged step never touches them).
    ``X`` and ``y`` may be device arrays: each epoch's order then goes to the GPU once and
    the batches are gathered there.
    """
    if epochs is None and max_steps is None:
        raise ValueError("fit: give epochs, max_steps or both (epochs=None needs max_steps)")
    if epochs is not None:
        epochs = check_int("epochs", epochs)
    if max_steps is not None:
        max_steps = check_int("max_steps", max_steps)
    if on_step is not None and not callable(on_step):
        raise TypeError(f"on_step must be callable (step, loss, model), got {on_step!r}")
    max_loss = check_max_loss(max_loss)
    if step_fn is None or optimizer is not None:
        check_optimizer(model, optimizer)
    if not is_device(X):
        X, y = np.asarray(X), np.asarray(y)
    n = X.shape[0]
    if n != y.shape[0]:
        raise ValueError(f"X has {n} rows but y has {y.shape[0]} labels")
    sampler = MinibatchSampler(n, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    if len(sampler) == 0:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} examples and "
                         "drop_last=True leaves no batch")
    be = get_backend()
    on_gpu = is_device(X)
    if step_fn is None:
        def step_fn(xb, yb):
            out = model.forward(xb, train=True)
            value = loss.forward(out, yb)
            if not math.isfinite(value) or value > max_loss:
                raise DivergenceError(hist.steps, value)
            model.backward(loss.backward(), need_dx=False)
            optimizer.step()
            return value

    hist = History()
    seen = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = len(sampler) * epochs if epochs is not None else max_steps
        bar = tqdm(total=min(total, max_steps or total), desc="training", leave=False)
    epoch = 0
    try:
        while (epochs is None or epoch < epochs) and (max_steps is None or hist.steps < max_steps):
            total, count = 0.0, 0
            order = sampler.order()
            if on_gpu:
                order = be.asarray(order)
            for start, stop in sampler.bounds():
                idx = order[start:stop]
                value = step_fn(_gather(be, X, idx), _gather(be, y, idx) if on_gpu else y[idx])
                if value is not None:
                    if not math.isfinite(value) or value > max_loss:
                        raise DivergenceError(hist.steps, value)
                    total += value * (stop - start)
                hist.step_loss.append(value)
                count += stop - start
                if on_step is not None:
                    on_step(hist.steps - 1, value, model)
                if bar is not None:
                    bar.update(1)
                if max_steps is not None and hist.steps >= max_steps:
                    break
            seen += count
            if value is not None:
                hist.epoch_train_loss.append(total / count)
            hist.examples_seen.append(seen)
            if X_val is not None:
                vl, va = evaluate(model, loss, X_val, y_val)
                hist.val_loss.append(vl)
                hist.val_acc.append(va)
            if callback is not None:
                callback(epoch, hist)
            epoch += 1
    finally:
        if bar is not None:
            bar.close()
    return hist
