"""The rest of Table 3.1: Max (many-to-one), any function with its Jacobian, and softmax.

Each layer is a functional pair ``*_forward(x, ...) -> (out, cache)`` /
``*_backward(g, cache) -> dx`` wrapped in a thin class, like ``linear.py``.

These are teaching layers: their arithmetic runs on the host in NumPy whatever the
current backend is.  On the numpy and cpu backends the arrays already are NumPy arrays;
on the cuda backend the input is copied to the host with ``be.to_numpy`` and the result
copied back with ``be.asarray``, so they accept and return the backend's native arrays
but do not run a GPU kernel (the softmax forward does: it uses ``be.softmax``).

``CrossEntropy`` is the loss that goes with a separate ``Softmax`` layer: cross-entropy
on probabilities (Eq. 3.21).  The pair ``Softmax`` + ``CrossEntropy`` computes the same
loss and gradient as the fused ``ddlib.losses.SoftmaxCrossEntropy`` (o - y, Eq. 3.22),
but by the longer route of Exercise 10's Jacobian.
"""

import numpy as np

from ..backend import get_backend
from ..backend.arrays import to_host
from ..errors import check_int, check_labels
from ..losses import Loss
from .base import Layer, check_input

__all__ = [
    "CrossEntropy",
    "FunctionLayer",
    "Max",
    "Softmax",
    "function_backward",
    "function_forward",
    "max_backward",
    "max_forward",
    "softmax_backward",
    "softmax_forward",
    "softmax_jacobian",
]


def _check_grad(layer_name, g, shape):
    if tuple(g.shape) != tuple(shape):
        raise ValueError(
            f"{layer_name}: upstream gradient has shape {tuple(g.shape)} but the layer's "
            f"output has shape {tuple(shape)}"
        )


# --------------------------------------------------------------------------- Max


def max_forward(x, k, be=None):
    """Max over consecutive groups of ``k`` units (Table 3.1, many-to-one).

    x (n, d) with d divisible by k -> out (n, d // k), out[:, j] = max(x[:, jk:(j+1)k]).
    Returns (out, cache); the cache records which input won each group.

    >>> import numpy as np
    >>> out, _ = max_forward(np.array([[1., 5., 2., 0.]]), 2)
    >>> out
    array([[5., 2.]])
    """
    be = be or get_backend()
    xh = to_host(x)
    n, d = xh.shape
    groups = xh.reshape(n, d // k, k)
    winner = groups.argmax(axis=2)  # ties go to the first maximal input
    out = np.take_along_axis(groups, winner[:, :, None], axis=2)[:, :, 0]
    return be.asarray(np.ascontiguousarray(out)), (winner, (n, d), k)


def max_backward(g, cache, be=None):
    """Route each group's gradient to its winner; every other input gets 0 (Table 3.1).

    g (n, d // k) -> dx (n, d).
    """
    be = be or get_backend()
    winner, (n, d), k = cache
    gh = to_host(g)
    dx = np.zeros((n, d // k, k), dtype=gh.dtype)
    np.put_along_axis(dx, winner[:, :, None], gh[:, :, None], axis=2)
    return be.asarray(dx.reshape(n, d))


class Max(Layer):
    """Many-to-one max over groups of ``k`` consecutive units (max pooling in one dimension).

    Only the largest input of each group receives gradient; ties go to the first.

    >>> import numpy as np
    >>> Max(3)(np.array([[0., 2., 1., -1., -3., -2.]]))
    array([[ 2., -1.]])
    """

    def __init__(self, k, name=None):
        super().__init__(name)
        self.k = check_int("k", k)
        self._cache = None

    def forward(self, x, train=True):
        check_input(self, x)
        if x.shape[1] % self.k:
            raise ValueError(
                f"{self.name}: input width {x.shape[1]} (shape {tuple(x.shape)}) is not a "
                f"multiple of the group size k={self.k}"
            )
        out, self._cache = max_forward(x, self.k)
        return out

    def _backward(self, g, need_dx=True):
        n, d = self._cache[1]
        _check_grad(self.name, g, (n, d // self.k))
        return max_backward(g, self._cache)

    def __repr__(self):
        return f"{self.name}(k={self.k})"


# --------------------------------------------------------------- any function


def function_forward(f, jacobian, x, be=None):
    """out[i] = f(x[i]) row by row (Table 3.1, 'arbitrary function'); returns (out, cache).

    ``f`` maps a 1-D vector (d_in,) to (d_out,); ``jacobian(v)`` returns the (d_out, d_in)
    matrix J[k, r] = d f_k / d v_r of Eq. 3.23.  The cache keeps the input rows.
    """
    be = be or get_backend()
    xh = to_host(x)
    rows = [np.asarray(f(v)) for v in xh]
    out = np.stack(rows).astype(xh.dtype, copy=False) if rows else np.empty((0, 0), xh.dtype)
    return be.asarray(out), (xh, jacobian)


def function_backward(g, cache, be=None):
    """g_i = J^T g_{i+1} for every example (Eq. 3.24): g (n, d_out) -> dx (n, d_in)."""
    be = be or get_backend()
    xh, jacobian = cache
    gh = to_host(g)
    dx = np.empty(xh.shape, dtype=gh.dtype)
    for i, v in enumerate(xh):
        J = np.asarray(jacobian(v))
        if J.shape != (gh.shape[1], xh.shape[1]):
            raise ValueError(
                f"jacobian returned shape {J.shape} for row {i}, expected "
                f"(d_out, d_in) = ({gh.shape[1]}, {xh.shape[1]})"
            )
        dx[i] = J.T @ gh[i]
    return be.asarray(dx)


class FunctionLayer(Layer):
    """A layer from any vector function ``f`` and its Jacobian (Eqs. 3.23-3.24).

    ``f(v)`` maps one example (d_in,) to (d_out,); ``jacobian(v)`` is (d_out, d_in).
    The backward pass multiplies the upstream gradient by J^T, example by example;
    this is slow (one Jacobian per row) but makes any differentiable map a layer.

    >>> import numpy as np
    >>> square = FunctionLayer(lambda v: v ** 2, lambda v: np.diag(2 * v))
    >>> square(np.array([[1., -2.]]))
    array([[1., 4.]])
    >>> square.backward(np.array([[1., 1.]]))
    array([[ 2., -4.]])
    """

    def __init__(self, f, jacobian, d_in=None, name=None):
        super().__init__(name)
        if not callable(f) or not callable(jacobian):
            raise TypeError(f"{self.name}: f and jacobian must be callables")
        self.f = f
        self.jacobian = jacobian
        self.d_in = None if d_in is None else check_int("d_in", d_in)
        self._cache = None
        self._out_shape = None

    def forward(self, x, train=True):
        check_input(self, x, self.d_in)
        try:
            out, self._cache = function_forward(self.f, self.jacobian, x)
        except ValueError as exc:  # rows of unequal length from f
            raise ValueError(f"{self.name}: f returned rows of different shapes ({exc})") from exc
        if len(out.shape) != 2 or out.shape[0] != x.shape[0]:
            raise ValueError(
                f"{self.name}: f must map each row (d_in,) to a 1-D vector; for input "
                f"shape {tuple(x.shape)} it produced shape {tuple(out.shape)}"
            )
        self._out_shape = tuple(out.shape)
        return out

    def _backward(self, g, need_dx=True):
        _check_grad(self.name, g, self._out_shape)
        try:
            return function_backward(g, self._cache)
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from exc


# -------------------------------------------------------------------- softmax


def softmax_jacobian(o):
    """Exercise 10: d o_i / d v_j = o_i (1 - o_i) if i == j, else -o_i o_j.

    o (n, k) probabilities -> J (n, k, k) with J[:, i, j] = o_i (delta_ij - o_j).
    """
    o = np.asarray(o)
    return o[:, :, None] * (np.eye(o.shape[1], dtype=o.dtype)[None] - o[:, None, :])


def softmax_forward(x, be=None):
    """o = softmax(x) row by row (Eq. 3.20); returns (o, cache)."""
    be = be or get_backend()
    o = be.softmax(x)
    return o, o


def softmax_backward(g, cache, be=None):
    """dx = J^T g with the full softmax Jacobian of Exercise 10, one (k, k) matrix per row.

    The same as o * (g - sum(o * g)) but written the long way, so it can be set beside the
    fused o - y of Eq. 3.22.
    """
    be = be or get_backend()
    o = to_host(cache)
    gh = to_host(g)
    J = softmax_jacobian(o)
    return be.asarray(np.einsum("nij,ni->nj", J, gh))


class Softmax(Layer):
    """Softmax as a layer of its own (Eq. 3.20), back-propagated through its Jacobian.

    Pair it with ``CrossEntropy`` to get what ``SoftmaxCrossEntropy`` computes fused.

    >>> import numpy as np
    >>> Softmax()(np.zeros((1, 4)))
    array([[0.25, 0.25, 0.25, 0.25]])
    """

    def __init__(self, name=None):
        super().__init__(name)
        self._cache = None

    def forward(self, x, train=True):
        check_input(self, x)
        out, self._cache = softmax_forward(x)
        return out

    def _backward(self, g, need_dx=True):
        _check_grad(self.name, g, self._cache.shape)
        return softmax_backward(g, self._cache)


class CrossEntropy(Loss):
    """Mean over the batch of -log p[label] for probabilities p (Eq. 3.21).

    Gradient w.r.t. p: -1 / (n p[label]) at the label, 0 elsewhere.  Probabilities are
    floored at the dtype's smallest normal number so a zero never gives log(0).

    >>> import numpy as np
    >>> round(CrossEntropy()(np.array([[0.5, 0.25, 0.25]]), np.array([1])), 4)  # log 4
    1.3863
    """

    name = "cross_entropy"

    def __init__(self):
        self._cache = None

    def forward(self, probs, labels):
        be = get_backend()
        p = to_host(probs)
        if p.ndim != 2:
            raise ValueError(f"{self.name}: probabilities must be (n, classes), got shape {p.shape}")
        n, k = p.shape
        labels = check_labels("labels", to_host(labels), n, k)
        if not np.isfinite(p).all():
            raise ValueError(f"{self.name}: probabilities of shape {p.shape} contain NaN or inf")
        slack = 1e-6 if p.dtype == np.float32 else 1e-12
        if p.size and (p.min() < 0 or p.max() > 1 + slack):
            raise ValueError(
                f"{self.name}: expected probabilities in [0, 1], got values from "
                f"{p.min():.3g} to {p.max():.3g} (pass scores to SoftmaxCrossEntropy instead)"
            )
        picked = np.maximum(p[np.arange(n), labels], np.finfo(p.dtype).tiny)
        self._cache = (picked, labels, p.shape, p.dtype, be)
        return float(-np.mean(np.log(picked)))

    def _backward(self):
        picked, labels, shape, dtype, be = self._cache
        n = shape[0]
        dp = np.zeros(shape, dtype=dtype)
        dp[np.arange(n), labels] = -1.0 / (n * picked)
        return be.asarray(dp)
