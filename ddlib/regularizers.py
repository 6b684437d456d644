"""Losses on hidden nodes (Sec. 3.2.7): a penalty attached to any layer's output.

A ``HiddenLoss`` is a pass-through layer placed after the layer whose output should be
penalized.  In the forward pass it records the penalty's value; in the backward pass it
adds the penalty's gradient to the gradient arriving from above, which is Eq. 3.26's
"add the node's own contribution to the flow from the nodes it reaches" (Eq. 3.25).
Because the tap sits *after* an activation layer, the activation's own backward then
multiplies the sum by Phi', exactly the factor Eq. 3.26 writes out for pre-activation
deltas.  Several taps may sit in one network; their gradients simply add up.

``WithHiddenLosses(loss, model)`` wraps a data loss so that its value is the data term
plus every tap's penalty: the total objective the gradients belong to, which is what
``ddlib.train.fit`` and ``ddlib.gradcheck.check_model`` should see.

Penalties are averaged over the batch like ddlib's data losses: for a batch h (n, m),
``l1`` is lam * sum|h| / n (gradient lam * sign(h) / n) and ``l2`` is
0.5 * lam * sum h^2 / n (gradient lam * h / n).  They are computed on the host; on the
cuda backend the hidden batch is copied over with ``be.to_numpy`` and the summed gradient
copied back with ``be.asarray`` (a teaching layer, not a speed path).
"""

import numpy as np

from .backend import get_backend
from .errors import check_positive
from .layers.base import Layer, check_input
from .losses import Loss

__all__ = [
    "PENALTIES",
    "HiddenLoss",
    "WithHiddenLosses",
    "hidden_losses",
    "hidden_penalty",
    "l1_penalty",
    "l2_penalty",
]


def l1_penalty(h, lam):
    """(lam * sum|h| / n, lam * sign(h) / n) for a batch h (n, m): the sparsity penalty."""
    n = h.shape[0]
    value = lam * float(np.abs(h).sum()) / n
    return value, (h.dtype.type(lam / n) * np.sign(h)).astype(h.dtype, copy=False)


def l2_penalty(h, lam):
    """(0.5 * lam * sum h^2 / n, lam * h / n) for a batch h (n, m)."""
    n = h.shape[0]
    value = 0.5 * lam * float((h * h).sum()) / n
    return value, (h.dtype.type(lam / n) * h).astype(h.dtype, copy=False)


PENALTIES = {"l1": l1_penalty, "l2": l2_penalty}


class HiddenLoss(Layer):
    """Pass-through layer that attaches ``penalty`` to the output of the layer before it.

    ``penalty`` is 'l1', 'l2', or a callable ``penalty(h, lam) -> (value, grad)`` on a
    host array h (n, m).  Forward returns its input unchanged and stores the penalty in
    ``self.value`` (0.0 in inference mode, ``train=False``, so validation losses report
    the data term alone).  Backward returns g + d penalty / d h (Eqs. 3.25-3.26).

    >>> import numpy as np
    >>> tap = HiddenLoss("l1", lam=0.5)
    >>> h = tap(np.array([[1., -2.], [0., 3.]]))
    >>> tap.value                       # 0.5 * (1 + 2 + 0 + 3) / 2
    1.5
    >>> tap.backward(np.zeros((2, 2)))
    array([[ 0.25, -0.25],
           [ 0.  ,  0.25]])
    """

    def __init__(self, penalty="l1", lam=1e-3, name=None):
        super().__init__(name)
        if isinstance(penalty, str):
            if penalty not in PENALTIES:
                raise ValueError(f"penalty={penalty!r}: expected one of {sorted(PENALTIES)} "
                                 "or a callable (h, lam) -> (value, grad)")
            self.penalty_name = penalty
            penalty = PENALTIES[penalty]
        elif callable(penalty):
            self.penalty_name = getattr(penalty, "__name__", "custom")
        else:
            raise TypeError(f"penalty must be a name or a callable, got {type(penalty).__name__}")
        self.penalty = penalty
        self.lam = check_positive("lam", lam, allow_zero=True)
        self.value = 0.0
        self._grad = None
        self._cache = None

    def forward(self, x, train=True):
        check_input(self, x)
        be = get_backend()
        h = be.to_numpy(x) if be.name == "cuda" else np.asarray(x)
        self._cache = tuple(h.shape)
        if train:
            value, grad = self.penalty(h, self.lam)
            if tuple(np.shape(grad)) != self._cache:
                raise ValueError(f"{self.name}: penalty gradient has shape {np.shape(grad)}, "
                                 f"expected {self._cache}")
            self.value, self._grad = float(value), grad
        else:
            self.value, self._grad = 0.0, None
        return x

    def _backward(self, g, need_dx=True):
        if tuple(g.shape) != self._cache:
            raise ValueError(f"{self.name}: upstream gradient has shape {tuple(g.shape)} but "
                             f"the hidden layer's output has shape {self._cache}")
        if self._grad is None:
            raise RuntimeError(f"{self.name}: backward after a forward with train=False")
        be = get_backend()
        if be.name == "cuda":
            return be.asarray(be.to_numpy(g) + self._grad)
        return g + self._grad

    def __repr__(self):
        return f"{self.name}({self.penalty_name}, lam={self.lam:g})"


def hidden_losses(model):
    """Every ``HiddenLoss`` inside ``model`` (searching nested containers), in order."""
    return [layer for layer in model.modules() if isinstance(layer, HiddenLoss)]


def hidden_penalty(model):
    """Sum of the penalties the model's taps recorded in its last forward pass."""
    return float(sum(tap.value for tap in hidden_losses(model)))


class WithHiddenLosses(Loss):
    """Data loss plus the hidden-node penalties of ``model``: the total objective L.

    ``forward(scores, targets)`` returns data + penalties (call it after
    ``model.forward``); ``backward()`` returns the data loss's gradient only, because the
    taps add their own terms during ``model.backward``.  ``data`` and ``penalty`` keep the
    two parts of the last value.
    """

    def __init__(self, loss, model):
        if not hasattr(loss, "forward") or not hasattr(loss, "backward"):
            raise TypeError(f"loss must have forward/backward, got {type(loss).__name__}")
        self.loss = loss
        self.model = model
        self.name = f"{getattr(loss, 'name', 'loss')}+hidden"
        self.data = self.penalty = 0.0

    def forward(self, scores, targets):
        self.data = float(self.loss.forward(scores, targets))
        self.penalty = hidden_penalty(self.model)
        return self.data + self.penalty

    def backward(self):
        return self.loss.backward()
