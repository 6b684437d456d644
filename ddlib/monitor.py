"""Watching a network train: per-layer statistics, dead units and gradient norms.

* ``StatsRecorder``: per-layer activation and gradient statistics of a ``Sequential``
  during training (mean, std, norm, fraction of dead units), gathered by wrapping each
  layer's ``forward``/``backward`` on the instance (the classes are not touched);
* ``batch_stats``: those statistics for one batch;
* ``dead_fraction``, ``layer_outputs``, ``backward_norms``, ``distinct_units``: one-shot
  measurements on a model and a data set (Secs. 3.3.3, 3.4.1 and 3.4.3 use them).
"""

from __future__ import annotations

import numpy as np

from .backend import get_backend
from .backend.arrays import to_host as _host
from .errors import check_int

__all__ = ["StatsRecorder", "STAT_NAMES", "batch_stats", "layer_outputs", "dead_fraction",
           "backward_norms", "distinct_units"]


# --------------------------------------------------------------------------- statistics


STAT_NAMES = ("mean", "std", "norm", "dead")


def batch_stats(a, dead_tol=0.0):
    """mean, std, norm and dead fraction of a batch a (n, width).

    ``norm`` is the Frobenius norm divided by sqrt(n) (the root-mean-square per-example
    norm, so it does not grow with the batch); ``dead`` is the fraction of the columns that
    are zero (|a| <= dead_tol) on every row of the batch.
    """
    a = np.asarray(a, dtype=np.float64)
    n = max(a.shape[0], 1)
    dead = float(np.mean(np.all(np.abs(a) <= dead_tol, axis=0))) if a.size else 0.0
    return {"mean": float(a.mean()), "std": float(a.std()),
            "norm": float(np.linalg.norm(a) / np.sqrt(n)), "dead": dead}


class StatsRecorder:
    """Record per-layer statistics of a ``Sequential`` on every training step.

    After each layer's ``forward`` (in training mode) the recorder stores ``batch_stats``
    of its output under ``'act'``; after each ``backward`` it stores those of the gradient
    arriving at the layer's output (dL/d output) under ``'grad'``, and the norm of the
    layer's weight gradient under ``'wgrad'`` when it has a ``W``.  It works by putting
    wrappers on the layer *instances*; ``detach()`` (or leaving a ``with`` block) removes
    them.  ``every`` records one step in that many.

    >>> from ddlib.layers import mlp
    >>> net = mlp([4, 5, 3], rng=0)
    >>> with StatsRecorder(net) as rec:
    ...     _ = net.forward(np.ones((2, 4)))
    >>> rec.series(1, "act", "dead").shape
    (1,)
    """

    def __init__(self, model, every=1, layers=None, dead_tol=0.0):
        if not hasattr(model, "layers"):
            raise TypeError(f"StatsRecorder needs a Sequential (with .layers), got "
                            f"{type(model).__name__}")
        self.model = model
        self.every = check_int("every", every)
        self.dead_tol = dead_tol
        idx = range(len(model.layers)) if layers is None else layers
        self.indices = [int(i) for i in idx]
        for i in self.indices:
            if not 0 <= i < len(model.layers):
                raise ValueError(f"layer index {i} out of range for a model of "
                                 f"{len(model.layers)} layers")
        self.records = {i: {"act": [], "grad": [], "wgrad": []} for i in self.indices}
        self.forward_calls = 0
        self.backward_calls = 0
        self._attached = False
        self.attach()

    def names(self):
        return {i: f"{i}:{type(self.model.layers[i]).__name__}" for i in self.indices}

    def attach(self):
        if self._attached:
            return self
        first, last = min(self.indices), max(self.indices)
        for i in self.indices:
            layer = self.model.layers[i]
            orig_f, orig_b = layer.forward, layer.backward

            def fwd(x, train=True, _i=i, _f=orig_f, _first=i == first):
                out = _f(x, train=train)
                if train:
                    if _first:
                        self.forward_calls += 1
                    if (self.forward_calls - 1) % self.every == 0:
                        self.records[_i]["act"].append(batch_stats(_host(out), self.dead_tol))
                return out

            def bwd(g, need_dx=True, _i=i, _b=orig_b, _layer=layer, _last=i == last):
                if _last:
                    self.backward_calls += 1
                if (self.backward_calls - 1) % self.every == 0:
                    self.records[_i]["grad"].append(batch_stats(_host(g), self.dead_tol))
                dx = _b(g, need_dx=need_dx)
                if (self.backward_calls - 1) % self.every == 0 and "W" in _layer.grads:
                    self.records[_i]["wgrad"].append(
                        float(np.linalg.norm(_host(_layer.grads["W"]))))
                return dx

            layer.forward, layer.backward = fwd, bwd
        self._attached = True
        return self

    def detach(self):
        """Remove the wrappers: the layers run their own class methods again."""
        for i in self.indices:
            layer = self.model.layers[i]
            layer.__dict__.pop("forward", None)
            layer.__dict__.pop("backward", None)
        self._attached = False
        return self

    def __enter__(self):
        return self.attach()

    def __exit__(self, *exc):
        self.detach()

    def series(self, layer, kind="act", stat="std"):
        """One statistic over the recorded steps, e.g. ``series(3, 'grad', 'norm')``."""
        if layer not in self.records:
            raise KeyError(f"layer {layer} is not recorded; recorded: {self.indices}")
        if kind not in ("act", "grad", "wgrad"):
            raise ValueError(f"kind must be 'act', 'grad' or 'wgrad', got {kind!r}")
        rows = self.records[layer][kind]
        if kind == "wgrad":
            return np.array(rows, dtype=float)
        if stat not in STAT_NAMES:
            raise ValueError(f"stat must be one of {STAT_NAMES}, got {stat!r}")
        return np.array([r[stat] for r in rows], dtype=float)

    def table(self, step=-1, kind="act"):
        """Text table of every recorded layer's statistics at one recorded step."""
        lines = [f"{'layer':>14} " + " ".join(f"{s:>10}" for s in STAT_NAMES)]
        for i in self.indices:
            rows = self.records[i][kind]
            if not rows:
                continue
            r = rows[step]
            lines.append(f"{self.names()[i]:>14} " + " ".join(f"{r[s]:10.3g}" for s in STAT_NAMES))
        return "\n".join(lines)


def layer_outputs(model, X, train=False):
    """The output of every layer of a Sequential for the batch X (host arrays)."""
    be = get_backend()
    outs = []
    x = be.asarray(X)
    for layer in model.layers:
        x = layer.forward(x, train=train)
        outs.append(_host(x))
    return outs


def dead_fraction(model, X, kinds=("relu", "leaky_relu"), tol=0.0):
    """Fraction of dead units in each ReLU-type layer over the whole data set X.

    A unit is dead when its output is never positive (h <= tol) on any row of X.  For a
    ReLU that means it outputs zero everywhere and no example sends a gradient through it
    (Sec. 3.4.3); a leaky ReLU unit in that state still passes alpha times the gradient and
    can recover.  Returns {layer index: fraction} for the layers whose activation ``kind``
    is listed in ``kinds``.
    """
    outs = layer_outputs(model, X)
    res = {}
    for i, (layer, h) in enumerate(zip(model.layers, outs)):
        if getattr(layer, "kind", None) in kinds:
            res[i] = float(np.mean(np.all(h <= tol, axis=0)))
    return res


def backward_norms(model, loss, X, y):
    """Norm of dL/dW for every Linear-type layer after one forward/backward pass on (X, y).

    Returns (indices, norms): the layer indices holding a ``W`` and the Frobenius norms of
    their weight gradients, from the input side to the output side.
    """
    be = get_backend()
    model.zero_grad()
    out = model.forward(be.asarray(X), train=True)
    loss.forward(out, y)
    model.backward(loss.backward(), need_dx=False)
    idx = [i for i, layer in enumerate(model.layers) if "W" in layer.grads]
    return idx, np.array([np.linalg.norm(_host(model.layers[i].grads["W"])) for i in idx])


def distinct_units(W, tol=1e-12):
    """Number of distinct hidden units (columns of W), up to ``tol``: 1 means full symmetry."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D (fan_in, units), got shape {W.shape}")
    reps = []
    for j in range(W.shape[1]):
        if not any(np.max(np.abs(W[:, j] - r)) <= tol for r in reps):
            reps.append(W[:, j])
    return len(reps)
