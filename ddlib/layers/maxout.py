"""Maxout units and a leaky ReLU whose slope can be learned (Secs. 3.4.3.1-3.4.3.2).

* ``Maxout(d_in, d_out, k)``: each of the d_out units computes k linear functions of its
  input and outputs the largest, max_p (x W_p + b_p).  With k = 2 and one piece fixed at
  zero it is a ReLU; with W_2 = alpha W_1 it is a leaky ReLU.  It has k times the
  parameters of a Linear layer and never saturates.
* ``PReLU(alpha, learn=True)``: Eq. 3.39's leaky ReLU, Phi(v) = alpha v for v <= 0 and v
  otherwise, with alpha a parameter that the optimizer updates like any weight (one alpha
  shared by all units, or one per unit).

Both are functional pairs wrapped in thin classes, like ``linear.py``.  The maxout's
linear part runs on the current backend; its max and the PReLU run on the host in NumPy
(teaching layers: on the cuda backend the data is copied over and back).
"""

import numpy as np

from ..backend import get_backend
from ..backend.arrays import to_host
from ..errors import check_int, check_positive
from ..init import as_rng, initialize
from .base import Layer, check_input
from .linear import linear_backward, linear_forward
from .special import max_backward, max_forward

__all__ = [
    "Maxout",
    "PReLU",
    "maxout_backward",
    "maxout_forward",
    "prelu_backward",
    "prelu_forward",
]


def maxout_forward(x, W, b, k, be=None):
    """out[:, j] = max_p (x W + b)[:, j k + p] for p < k (Sec. 3.4.3.2); returns (out, cache).

    x (n, d_in), W (d_in, d_out k), b (d_out k,) -> out (n, d_out).  The k pieces of unit j
    are the consecutive columns j k, ..., j k + k - 1.
    """
    be = be or get_backend()
    z, lin_cache = linear_forward(x, W, b, be=be)
    out, max_cache = max_forward(z, k, be=be)
    return out, (lin_cache, max_cache)


def maxout_backward(g, cache, be=None, dW=None, db=None, need_dx=True):
    """Gradient of maxout: each unit's gradient flows only through its winning piece.

    g (n, d_out) -> (dx (n, d_in) or None, dW (d_in, d_out k), db (d_out k,)).
    """
    be = be or get_backend()
    lin_cache, max_cache = cache
    dz = max_backward(g, max_cache, be=be)
    return linear_backward(dz, lin_cache, be=be, dW=dW, db=db, need_dx=need_dx)


class Maxout(Layer):
    """d_out maxout units with k linear pieces each: out = max_p (x W_p + b_p).

    Every piece W_p (d_in, d_out) is drawn with ``init`` as for a Linear layer; biases start
    at zero.  Parameters: ``W`` (d_in, d_out k), ``b`` (d_out k,).

    >>> import numpy as np
    >>> layer = Maxout(3, 2, k=2, rng=0)
    >>> layer(np.ones((4, 3))).shape
    (4, 2)
    """

    def __init__(self, d_in, d_out, k=2, init="xavier_uniform", rng=None, dtype=np.float64,
                 name=None):
        super().__init__(name)
        self.d_in = check_int("d_in", d_in)
        self.d_out = check_int("d_out", d_out)
        self.k = check_int("k", k)
        rng = as_rng(rng)
        pieces = np.stack([initialize(init, (d_in, d_out), rng, dtype) for _ in range(k)])
        # (k, d_in, d_out) -> (d_in, d_out, k): unit j's pieces become adjacent columns
        self.params["W"] = np.ascontiguousarray(pieces.transpose(1, 2, 0).reshape(d_in, d_out * k))
        self.params["b"] = np.zeros(d_out * k, dtype=dtype)
        self.grads["W"] = np.zeros_like(self.params["W"])
        self.grads["b"] = np.zeros_like(self.params["b"])
        self._cache = None

    def piece(self, p):
        """The weights W_p (d_in, d_out) and biases b_p (d_out,) of piece p (host copies)."""
        if not 0 <= p < self.k:
            raise ValueError(f"{self.name}: piece p={p} out of range for k={self.k}")
        W, b = to_host(self.params["W"]), to_host(self.params["b"])
        return W[:, p::self.k].copy(), b[p::self.k].copy()

    def forward(self, x, train=True):
        check_input(self, x, self.d_in)
        out, self._cache = maxout_forward(x, self.params["W"], self.params["b"], self.k)
        return out

    def _backward(self, g, need_dx=True):
        n = self._cache[1][1][0]
        if tuple(g.shape) != (n, self.d_out):
            raise ValueError(f"{self.name}: upstream gradient has shape {tuple(g.shape)}, "
                             f"expected {(n, self.d_out)}")
        dx, _, _ = maxout_backward(g, self._cache, dW=self.grads["W"], db=self.grads["b"],
                                   need_dx=need_dx)
        return dx

    def __repr__(self):
        return f"{self.name}(d_in={self.d_in}, d_out={self.d_out}, k={self.k})"


def prelu_forward(x, alpha, be=None):
    """Eq. 3.39 with a parameter: y = x where x > 0, alpha x elsewhere; returns (y, cache).

    x (n, d); alpha (1,) shared or (d,) one per unit.
    """
    be = be or get_backend()
    xh = to_host(x)
    a = to_host(alpha).astype(xh.dtype, copy=False)
    y = np.where(xh > 0, xh, a * xh)
    return be.asarray(y), (xh, a)


def prelu_backward(g, cache, be=None):
    """(dx, dalpha): dx = g where x > 0 and alpha g elsewhere; dalpha = sum of g x over x <= 0.

    dalpha has alpha's shape: summed over the batch, and over the units when alpha is shared.
    """
    be = be or get_backend()
    xh, a = cache
    gh = to_host(g)
    neg = xh <= 0
    dx = np.where(neg, a * gh, gh)
    contrib = np.where(neg, gh * xh, 0.0).sum(axis=0)
    dalpha = contrib.sum(keepdims=True) if a.shape == (1,) else contrib
    return be.asarray(dx.astype(gh.dtype, copy=False)), dalpha.astype(a.dtype, copy=False)


class PReLU(Layer):
    """Leaky ReLU (Eq. 3.39) whose slope alpha is learned when ``learn=True``.

    ``width=None`` shares one alpha among all units; ``width=d`` gives each of d units its
    own.  With ``learn=False`` alpha is a fixed hyperparameter (stored as an attribute, not
    a parameter), which is ``LeakyReLU``'s behaviour.

    >>> import numpy as np
    >>> act = PReLU(alpha=0.1)
    >>> act(np.array([[-2.0, 3.0]]))
    array([[-0.2,  3. ]])
    >>> _ = act.backward(np.array([[1.0, 1.0]])); act.grads["alpha"]
    array([-2.])
    """

    def __init__(self, alpha=0.25, learn=True, width=None, dtype=np.float64, name=None):
        super().__init__(name)
        check_positive("alpha", alpha, allow_zero=True)
        self.width = None if width is None else check_int("width", width)
        self.learn = bool(learn)
        value = np.full(1 if width is None else width, alpha, dtype=dtype)
        if self.learn:
            self.params["alpha"] = value
            self.grads["alpha"] = np.zeros_like(value)
        else:
            self.fixed_alpha = value
        self._cache = None

    @property
    def alpha(self):
        return to_host(self.params["alpha"]) if self.learn else self.fixed_alpha

    def forward(self, x, train=True):
        check_input(self, x, self.width)
        y, self._cache = prelu_forward(x, self.params["alpha"] if self.learn else self.fixed_alpha)
        return y

    def _backward(self, g, need_dx=True):
        if tuple(g.shape) != self._cache[0].shape:
            raise ValueError(f"{self.name}: upstream gradient has shape {tuple(g.shape)}, "
                             f"expected {self._cache[0].shape}")
        dx, dalpha = prelu_backward(g, self._cache)
        if self.learn:
            be = get_backend()
            if isinstance(self.grads["alpha"], np.ndarray):
                self.grads["alpha"][...] = dalpha
            else:
                self.grads["alpha"] = be.asarray(dalpha)
        return dx

    def __repr__(self):
        return f"{self.name}(alpha={np.round(self.alpha, 4).tolist()}, learn={self.learn})"
