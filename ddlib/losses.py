"""Losses at the output: softmax with cross-entropy fused (Eqs. 3.20-3.22) and squared error.

A loss object has ``forward(scores, targets) -> float`` (the mean over the batch) and
``backward() -> dscores``, the gradient of that mean with respect to the scores.

Inputs are checked before any kernel runs (``_check_scores``): an empty batch (no rows)
and, for host arrays, NaN or inf in the scores or targets are a ValueError naming the loss
and the argument.  Host scores of an integer, boolean or float16 dtype are converted to
float64 (never truncated; float32 and float64 are kept as they are); complex scores are a
TypeError, and so are device scores that are not float32/float64.  Device arrays are not
scanned for non-finite values (that would cost a pass and a copy back).
"""

import numpy as np

from .backend import get_backend
from .backend.arrays import is_device
from .errors import FLOAT_DTYPES, check_finite, check_labels


def _check_scores(who, scores):
    """The scores as a float array with at least one row (see the module docstring)."""
    if not is_device(scores):
        scores = np.asarray(scores)
        kind = scores.dtype.kind
        if kind == "c":
            raise TypeError(f"{who}: scores must be real, got dtype {scores.dtype}")
        if kind not in "iubf":
            raise TypeError(f"{who}: scores must be a float array, got dtype {scores.dtype}")
        if np.dtype(scores.dtype) not in FLOAT_DTYPES:
            scores = scores.astype(np.float64)
    elif np.dtype(scores.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{who}: scores must be a float32 or float64 array, got dtype "
                        f"{scores.dtype}")
    if len(scores.shape) < 1 or scores.shape[0] == 0:
        raise ValueError(f"{who}: scores must hold at least one example (row), got shape "
                         f"{tuple(scores.shape)}: the mean over an empty batch is undefined")
    check_finite(f"{who}: scores", scores)
    return scores


class Loss:
    """Base class: ``forward`` keeps what the gradient needs in ``_cache``; ``backward``
    checks that a forward pass came first and hands over to the subclass's ``_backward``."""

    name = "loss"
    _cache = None

    def __call__(self, scores, targets):
        return self.forward(scores, targets)

    def backward(self):
        """The gradient of the last ``forward``'s mean loss with respect to the scores."""
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        return self._backward()

    def hvp_scores(self, r):
        """The Hessian of the last ``forward``'s mean loss with respect to the scores,
        times ``r`` (an array shaped like the scores): the loss's part of an exact
        Hessian-vector or Gauss-Newton product (``ddlib.optim.second_order.hvp``)."""
        if self._cache is None:
            raise RuntimeError(f"{self.name}: hvp_scores called before forward")
        return self._hvp_scores(r)

    def _hvp_scores(self, r):
        raise NotImplementedError(f"{type(self).__name__} has no Hessian product")


class SoftmaxCrossEntropy(Loss):
    """Mean of -log softmax(scores)[label] over the batch; gradient (p - y)/n (Eq. 3.22).

    >>> import numpy as np
    >>> loss = SoftmaxCrossEntropy()
    >>> round(loss(np.zeros((2, 4)), np.array([0, 3])), 4)   # log 4
    1.3863
    """

    name = "softmax_cross_entropy"

    def __init__(self):
        self._cache = None

    def forward(self, scores, labels):
        be = get_backend()
        scores = _check_scores(self.name, scores)
        if len(scores.shape) != 2:
            raise ValueError(f"{self.name}: scores must be (n, classes), got shape {scores.shape}")
        n, k = scores.shape
        if not is_device(labels):
            labels = check_labels("labels", labels, n, k)
        labels_be = be.asarray(labels) if be.name == "cuda" else labels
        loss, probs = be.softmax_xent(scores, labels_be)
        self._cache = (probs, labels_be)
        return loss

    def _backward(self):
        probs, labels = self._cache
        return get_backend().softmax_xent_backward(probs, labels)

    def _hvp_scores(self, r):
        # (diag(p) - p p^T) r / n per row: positive semidefinite
        return get_backend().softmax_xent_hvp(self._cache[0], r)

    @property
    def probs(self):
        """Softmax probabilities from the last forward call."""
        return None if self._cache is None else self._cache[0]


class MSE(Loss):
    """Mean over the batch of 0.5 * ||scores - targets||^2 per example; gradient (s - t)/n."""

    name = "mse"

    def __init__(self):
        self._cache = None

    def forward(self, scores, targets):
        be = get_backend()
        scores = _check_scores(self.name, scores)
        if not is_device(targets):
            t = np.asarray(targets)
            if t.dtype.kind not in "iubf":
                raise TypeError(f"{self.name}: targets must be real numbers, got dtype {t.dtype}")
            if t.shape != tuple(scores.shape):
                raise ValueError(f"{self.name}: targets have shape {t.shape}, scores {tuple(scores.shape)}")
            check_finite(f"{self.name}: targets", t)
            # scores are float32 or float64 here, so the cast never truncates to integers
            targets = be.asarray(t.astype(scores.dtype, copy=False))
        value, self._cache = be.mse(scores, targets)
        return value

    def _backward(self):
        return self._cache

    def _hvp_scores(self, r):
        # the mean of 0.5 ||s - t||^2 has Hessian I / n with respect to the scores
        from .backend.arrays import copy

        out = copy(r)
        get_backend().scale_inplace(out, 1.0 / r.shape[0])
        return out
