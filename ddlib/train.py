"""Mini-batch training (Sec. 3.2.8): a seeded sampler, one step, and a loop with history.

Divergence loses nothing: ``fit`` checks each batch loss before the update and the
optimizer checks the gradients and the updated parameters (``Optimizer.step``); either
way the run stops with one ``DivergenceError`` (for a step the optimizer refused, a
``DivergedStep`` that also names the parameter) and the model and optimizer are those of
the last good step.

Exact resume: ``fit(..., checkpoint=path, checkpoint_every=k)`` writes a checkpoint
(``ddlib.checkpoint``) after every k-th step, and ``fit(..., resume_from=path)``, called
with the same arguments in a new process, continues bit for bit: model (with BatchNorm's
counters), optimizer (its step count drives the schedules), the loop's position in the
epoch, the epoch's order, the shuffle's random stream (an int seed as well as a
Generator) and the history; objects given in ``extra_state`` (a ``PolyakAverage``, a
``ReduceOnPlateau``) are saved and restored with them.  Calling ``fit`` twice with the
same int seed draws the same orders again; resuming continues the stream.

>>> import numpy as np, tempfile, os
>>> from ddlib import layers, losses, optim
>>> X = np.random.default_rng(0).normal(size=(40, 3)); y = (X[:, 0] > 0).astype(np.int64)
>>> def run(**kw):
...     net = layers.mlp([3, 4, 2], rng=1)
...     opt = optim.Optimizer(net, optim.adam(1e-2))
...     fit(net, losses.SoftmaxCrossEntropy(), opt, X, y, epochs=3, batch_size=8, seed=5, **kw)
...     return net.state_dict()["0.W"]
>>> path = os.path.join(tempfile.mkdtemp(), "run.npz")
>>> full = run()
>>> _ = run(checkpoint=path, checkpoint_every=7, max_steps=7)  # "interrupted" after step 7
>>> bool(np.array_equal(run(resume_from=path), full))
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .backend import get_backend, use_backend
from .backend.arrays import is_device
from .errors import DivergenceError, check_int
from .init import as_rng
from .optim.base import NonFiniteGradient, NonFiniteParameter, all_finite


class DivergedStep(DivergenceError, NonFiniteGradient):
    """The optimizer refused step ``step`` of a run (a NaN/inf gradient, or an update that
    made a parameter non-finite): names the step, the batch loss and the parameter.

    Both a ``DivergenceError`` and a ``NonFiniteGradient``; ``cause`` is the optimizer's
    error.  The model and the optimizer are those of the last good step.
    """

    def __init__(self, step, loss, param, cause=None):
        self.step, self.loss, self.param, self.cause = step, loss, param, cause
        self.first = step
        what = ("made it non-finite (overflow)" if isinstance(cause, NonFiniteParameter)
                else "had a non-finite gradient")
        FloatingPointError.__init__(
            self,
            f"training diverged at step {step}: loss = {loss!r}, and the update of "
            f"parameter {param!r} {what}; the model and optimizer are those of the last "
            "good step. Try a smaller learning rate, gradient clipping, or standardized "
            "inputs.")


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
        drop_last=False, shuffle=True, on_step=None, step_fn=None, checkpoint=None,
        checkpoint_every=None, resume_from=None, extra_state=None):
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

    checkpoint, checkpoint_every: write ``ddlib.checkpoint`` files to the path
                ``checkpoint`` after every ``checkpoint_every``-th step (both or neither)
    resume_from: a checkpoint path written that way: model, optimizer, ``extra_state``,
                the loop's position, the shuffle's stream and the history are loaded and
                the run continues bit for bit (call with the same arguments as the run
                that wrote it; the returned History covers the whole run)
    extra_state: ``{name: obj}`` of objects with ``state_dict``/``load_state_dict``
                (``PolyakAverage``, ``ReduceOnPlateau``) saved and restored with the run

    Before any update is applied, a batch loss that is non-finite or above ``max_loss``
    stops the run with ``DivergenceError`` naming the step and the loss; the parameters
    are then those the last good step left (the diverged step never touches them).  A
    step the optimizer refuses (NaN/inf gradient, or an update that overflows a
    parameter) stops it with ``DivergedStep`` naming the step, the loss and the
    parameter; the optimizer has then restored the model and its own state.  NumPy's
    overflow warnings inside the default step are silenced: the error reports it.
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
    if (checkpoint is None) != (checkpoint_every is None):
        raise ValueError("fit: give checkpoint (a path) and checkpoint_every (steps) together, "
                         f"got checkpoint={checkpoint!r}, checkpoint_every={checkpoint_every!r}")
    if checkpoint_every is not None:
        checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    extra_state = {} if extra_state is None else extra_state
    if not isinstance(extra_state, dict) or not all(
            callable(getattr(o, "state_dict", None)) and callable(getattr(o, "load_state_dict",
                                                                          None))
            for o in extra_state.values()):
        raise TypeError("fit: extra_state must be a dict of objects with state_dict() and "
                        f"load_state_dict(), got {extra_state!r}")
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
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                out = model.forward(xb, train=True)
                if not is_device(out) and not all_finite(out):
                    raise DivergenceError(hist.steps, float("nan"),
                                          "training (the forward pass gave non-finite scores)")
                value = loss.forward(out, yb)
                if not math.isfinite(value) or value > max_loss:
                    raise DivergenceError(hist.steps, value)
                model.backward(loss.backward(), need_dx=False)
            try:
                optimizer.step()
            except NonFiniteGradient as err:
                raise DivergedStep(hist.steps, value, err.param, err) from err
            return value

    hist = History()
    # the loop's position: the epoch, its order, the next batch and the epoch's sums
    pos = {"epoch": 0, "order": None, "batch": 0, "total": 0.0, "count": 0, "seen": 0,
           "last": None}
    if resume_from is not None:
        from . import checkpoint as _ckpt

        state = _ckpt.load(resume_from, model=model, optimizer=optimizer, extra=extra_state)
        _restore_fit_state(state.get("fit"), hist, sampler, pos, n, resume_from)

    def save():
        from . import checkpoint as _ckpt

        _ckpt.save(checkpoint, model=model, optimizer=optimizer, extra=extra_state,
                   fit=_fit_state(hist, sampler, pos))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = len(sampler) * epochs if epochs is not None else max_steps
        bar = tqdm(total=min(total, max_steps or total), desc="training", leave=False,
                   initial=hist.steps)
    bounds = sampler.bounds()
    value = None
    try:
        while ((epochs is None or pos["epoch"] < epochs)
               and (max_steps is None or hist.steps < max_steps or pos["order"] is not None)):
            if pos["order"] is None:
                pos.update(order=sampler.order(), batch=0, total=0.0, count=0, last=None)
            order = be.asarray(pos["order"]) if on_gpu else pos["order"]
            while pos["batch"] < len(bounds):
                if max_steps is not None and hist.steps >= max_steps:
                    break
                start, stop = bounds[pos["batch"]]
                idx = order[start:stop]
                value = step_fn(_gather(be, X, idx), _gather(be, y, idx) if on_gpu else y[idx])
                if value is not None:
                    if not math.isfinite(value) or value > max_loss:
                        raise DivergenceError(hist.steps, value)
                    pos["total"] += value * (stop - start)
                hist.step_loss.append(value)
                pos["count"] += stop - start
                pos["batch"] += 1
                pos["last"] = value
                if on_step is not None:
                    on_step(hist.steps - 1, value, model)
                if bar is not None:
                    bar.update(1)
                if checkpoint_every is not None and hist.steps % checkpoint_every == 0:
                    save()
            if pos["batch"] < len(bounds) and pos["count"] == 0:
                break  # the step budget ran out at an epoch boundary
            pos["seen"] += pos["count"]
            if pos["last"] is not None:
                hist.epoch_train_loss.append(pos["total"] / pos["count"])
            hist.examples_seen.append(pos["seen"])
            if X_val is not None:
                vl, va = evaluate(model, loss, X_val, y_val)
                hist.val_loss.append(vl)
                hist.val_acc.append(va)
            if callback is not None:
                callback(pos["epoch"], hist)
            pos["epoch"] += 1
            pos["order"] = None
            if pos["batch"] < len(bounds):
                break  # cut short by max_steps
    finally:
        if bar is not None:
            bar.close()
    return hist


def _fit_state(hist, sampler, pos):
    """What ``fit`` needs to continue: history, position, the epoch's order, the stream."""
    return {
        "history": {k: list(getattr(hist, k)) for k in (
            "step_loss", "epoch_train_loss", "val_loss", "val_acc", "examples_seen")},
        "epoch": pos["epoch"], "batch": pos["batch"], "total": pos["total"],
        "count": pos["count"], "seen": pos["seen"], "last": pos["last"],
        "order": None if pos["order"] is None else np.asarray(pos["order"], np.int64),
        "rng": sampler.rng.bit_generator.state,
        "n": sampler.n, "batch_size": sampler.batch_size,
    }


def _restore_fit_state(state, hist, sampler, pos, n, path):
    from .checkpoint import CheckpointError

    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the checkpoint holds no fit state (it was not "
                              "written by fit(checkpoint=...)); load it with "
                              "ddlib.checkpoint.load instead")
    if state.get("n") != n or state.get("batch_size") != sampler.batch_size:
        raise CheckpointError(f"{path}: the checkpoint was written for {state.get('n')} "
                              f"examples in batches of {state.get('batch_size')}, this fit "
                              f"has {n} in batches of {sampler.batch_size}")
    order = state["order"]
    if order is not None and (np.shape(order) != (n,)):
        raise CheckpointError(f"{path}: the saved epoch order has shape {np.shape(order)}, "
                              f"expected ({n},)")
    rng_state = state["rng"]
    if rng_state.get("bit_generator") != sampler.rng.bit_generator.state["bit_generator"]:
        raise CheckpointError(f"{path}: the shuffle was saved from a "
                              f"{rng_state.get('bit_generator')} generator, this fit uses "
                              f"{sampler.rng.bit_generator.state['bit_generator']}")
    sampler.rng.bit_generator.state = rng_state
    for k, v in state["history"].items():
        setattr(hist, k, list(v))
    pos.update(epoch=int(state["epoch"]), batch=int(state["batch"]),
               total=float(state["total"]), count=int(state["count"]),
               seen=int(state["seen"]), last=state["last"],
               order=None if order is None else np.asarray(order, np.int64))
