"""Vanishing and exploding gradients (Sec. 3.4): the chain of Fig. 3.8 and the curves of Fig. 3.10.

* ``chain_gradients``: the one-node-per-layer chain of Fig. 3.8 and the backward
  recursion of Eq. 3.38, for one chain or many random chains at once;
* ``sigmoid_bound``: the 0.25^r ceiling on a sigmoid chain's derivative;
* ``activation_derivative``: Phi'(v) for the activations of Fig. 3.10.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend.numpy_ref.core import ACTIVATIONS, act_deriv, act_forward

__all__ = ["ChainResult", "chain_gradients", "sigmoid_bound", "activation_derivative"]


# --------------------------------------------------------------------------- Fig. 3.8


@dataclass
class ChainResult:
    """Forward values and backward derivatives of a one-node-per-layer chain.

    ``pre`` (.., m) are the pre-activations a_t = w_t h_{t-1} + b_t, ``h`` (.., m) the
    post-activations (h_m is the output o); ``dh`` (.., m) holds do/dh_t and ``dw``
    (.., m) do/dw_t, both with do/do = 1 (so ``dh[..., -1]`` is 1).
    """

    pre: np.ndarray
    h: np.ndarray
    dh: np.ndarray
    dw: np.ndarray

    @property
    def depth(self):
        return self.h.shape[-1]

    def by_distance(self):
        """|do/dh_t| indexed by r = m - t, the number of layers between h_t and the output."""
        return np.abs(self.dh[..., ::-1])


def chain_gradients(weights, x=1.0, activation="sigmoid", biases=None):
    """Forward and backward pass through the chain of Fig. 3.8 (Eq. 3.38).

    h_0 = x, h_t = Phi(w_t h_{t-1} + b_t) for t = 1..m, o = h_m, and backward
    do/dh_{t-1} = Phi'(a_t) w_t do/dh_t.  ``weights`` is (m,) for one chain or (trials, m)
    for many chains evaluated together; ``biases`` has the same shape (zero by default).

    >>> r = chain_gradients(np.ones(3), x=0.0)
    >>> bool(np.all(r.by_distance()[1:] <= 0.25 ** np.arange(1, 3)))
    True
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim not in (1, 2) or w.shape[-1] < 1:
        raise ValueError(f"weights must have shape (m,) or (trials, m) with m >= 1, got {w.shape}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r}: expected one of {ACTIVATIONS}")
    b = np.zeros_like(w) if biases is None else np.broadcast_to(
        np.asarray(biases, dtype=np.float64), w.shape)
    m = w.shape[-1]
    pre = np.empty_like(w)
    h = np.empty_like(w)
    prev = np.broadcast_to(np.asarray(x, dtype=np.float64), w.shape[:-1])
    for t in range(m):
        pre[..., t] = w[..., t] * prev + b[..., t]
        h[..., t] = act_forward(activation, pre[..., t:t + 1])[..., 0]
        prev = h[..., t]
    deriv = act_deriv(activation, pre)
    dh = np.empty_like(w)
    dw = np.empty_like(w)
    dh[..., m - 1] = 1.0
    for t in range(m - 1, -1, -1):
        da = deriv[..., t] * dh[..., t]  # do/da_t
        below = h[..., t - 1] if t > 0 else np.broadcast_to(np.asarray(x, float), w.shape[:-1])
        dw[..., t] = da * below
        if t > 0:
            dh[..., t - 1] = da * w[..., t]  # Eq. 3.38
    return ChainResult(pre, h, dh, dw)


def sigmoid_bound(r, weight_product=1.0):
    """The chapter's ceiling on |do/dh| after r sigmoid layers: 0.25^r times prod |w|."""
    return 0.25 ** np.asarray(r, dtype=float) * weight_product


# --------------------------------------------------------------------------- Fig. 3.10


def activation_derivative(kind, v, alpha=0.01):
    """Phi'(v) for an activation of ``ddlib.backend`` (Fig. 3.10: sigmoid, tanh, ReLU, hard tanh)."""
    v = np.asarray(v, dtype=np.float64)
    return act_deriv(kind, v, alpha)
