"""Polyak averaging (Sec. 3.5.7): a running average of the iterates, kept beside the weights.

Three forms, all updated in O(1) memory as avg <- (1 - c) avg + c W:

* simple (``beta=None``): Eq. 3.57, the plain mean of W_1..W_t (c = 1/t);
* exponential, ``form='explicit'``: sum_i beta^(t-i) W_i / sum_i beta^(t-i)
  (c = 1 / sum_i beta^(t-i), tracked recursively);
* exponential, ``form='recursive'``: avg_t = (1 - beta) W_t + beta avg_(t-1), started at
  avg_1 = W_1 (c = 1 - beta after the first step).  The two exponential forms agree for
  large t.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..backend import get_backend
from ..backend.arrays import assign, copy, is_device, tree_copy_into, tree_to_host
from ..errors import check_unit_interval


def _check_form(beta, form):
    if beta is not None:
        check_unit_interval("beta", beta)
    if form not in ("recursive", "explicit"):
        raise ValueError(f"form must be 'recursive' or 'explicit', got {form!r}")


def _weight(t, beta, form, denom):
    """(c, new denominator) for the t-th point (t = 1, 2, ...)."""
    if beta is None:
        return 1.0 / t, denom
    if form == "explicit":
        denom = beta * denom + 1.0
        return 1.0 / denom, denom
    return (1.0 if t == 1 else 1.0 - beta), denom


def average_path(points, beta=None, form="recursive"):
    """The Polyak average after every step of a trajectory; ``points`` shape (T, ...).

    Example: ``average_path(traj.points, beta=0.9)`` smooths a path bouncing in a valley.
    """
    _check_form(beta, form)
    pts = np.asarray(points, dtype=np.float64)
    out = np.empty_like(pts)
    avg, denom = None, 0.0
    for t in range(1, len(pts) + 1):
        c, denom = _weight(t, beta, form, denom)
        avg = pts[0].copy() if avg is None else (1 - c) * avg + c * pts[t - 1]
        out[t - 1] = avg
    return out


class PolyakAverage:
    """Averaged copies of a model's parameters; ``update()`` after each optimizer step.

    ``target`` is a model (anything with ``named_parameters()``) or an ``Optimizer`` (then the
    iterate W is averaged, which differs from the model's weights for Nesterov rules).
    ``with avg.swapped():`` puts the averages into the model (to evaluate) and restores the
    trained weights afterwards.

    Example::

        avg = PolyakAverage(opt, beta=0.99)
        fit(net, loss, opt, X, y, epochs=5, callback=...)   # or call avg.update() per step
        with avg.swapped():
            test_loss, test_acc = evaluate(net, loss, Xt, yt)
    """

    def __init__(self, target, beta=None, form="recursive"):
        _check_form(beta, form)
        self.beta = beta
        self.form = form
        self.optimizer = target if hasattr(target, "iterate_params") else None
        self.model = self.optimizer.model if self.optimizer is not None else target
        self._named = self.model.named_parameters()
        self.count = 0
        self._denom = 0.0
        self.average = {n: copy(p) for n, p in self._source().items()}

    def _source(self):
        if self.optimizer is not None:
            return self.optimizer.iterate_params()
        return {n: layer.params[k] for n, layer, k in self._named}

    def update(self):
        """Fold the current weights into the average."""
        self.count += 1
        c, self._denom = _weight(self.count, self.beta, self.form, self._denom)
        for n, w in self._source().items():
            avg = self.average[n]
            if is_device(w):
                get_backend("cuda").ema_update(avg, w, c)
            elif self.count == 1:
                avg[...] = w
            else:
                avg *= 1 - c
                avg += c * w
        return self

    @contextlib.contextmanager
    def swapped(self):
        """Context manager: the model holds the averaged weights inside the block."""
        params = {n: layer.params[k] for n, layer, k in self._named}
        saved = {n: copy(p) for n, p in params.items()}
        for n, p in params.items():
            assign(p, self.average[n])
        try:
            yield self.model
        finally:
            for n, p in params.items():
                assign(p, saved[n])

    def state_dict(self):
        return {"count": self.count, "denom": self._denom, "average": tree_to_host(self.average)}

    def load_state_dict(self, sd):
        """Restore a ``state_dict``: keys, every average's name, shape and dtype are
        checked first (a ValueError or TypeError naming the path), then assigned."""
        if not isinstance(sd, dict):
            raise TypeError(f"state_dict must be a dict, got {type(sd).__name__}")
        need = {"count", "denom", "average"}
        if set(sd) != need:
            raise ValueError(f"PolyakAverage state_dict: expected keys {sorted(need)}, "
                             f"got {sorted(sd)}")
        count = sd["count"]
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"state_dict['count'] must be a non-negative integer, got {count!r}")
        denom = float(sd["denom"])
        average = tree_copy_into(self.average, sd["average"], "state_dict['average']",
                                 strict_dtype=True)
        self.count = int(count)
        self._denom = denom
        for n in self.average:
            assign(self.average[n], average[n])

    def __repr__(self):
        kind = "simple" if self.beta is None else f"exponential beta={self.beta:g} {self.form}"
        return f"PolyakAverage({kind}, {self.count} points)"
