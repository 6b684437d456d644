"""The linear (fully connected) layer: out = x W + b.

``linear_forward``/``linear_backward`` are the functional pair (CS231n style); the
``Linear`` class wraps them and keeps its gradient buffers between steps.
"""

import numpy as np

from ..backend import get_backend
from ..backend.arrays import is_device
from ..errors import check_int
from ..init import as_rng, initialize
from .base import Layer, check_input


def linear_forward(x, W, b, be=None):
    """out = x W + b for x (n, d_in), W (d_in, d_out), b (d_out,) or None; returns (out, cache)."""
    be = be or get_backend()
    out = be.matmul(x, W) if b is None else be.linear(x, W, b)
    return out, (x, W)


def linear_backward(dout, cache, be=None, dW=None, db=None, need_dx=True, with_bias=True):
    """Gradients of a linear layer: dx = dout W^T, dW = x^T dout, db = column sums of dout.

    ``dW``/``db`` may be preallocated buffers that are overwritten.  Returns (dx, dW, db);
    dx is None when ``need_dx`` is False (the first layer's input needs no gradient), and
    db is None when ``with_bias`` is False.
    """
    be = be or get_backend()
    x, W = cache
    dW = be.matmul_tn(x, dout, out=dW)  # x^T dout, with no transposed copy on any backend
    db = be.col_sum(dout, out=db) if with_bias else None
    dx = be.matmul_nt(dout, W) if need_dx else None
    return dx, dW, db


class Linear(Layer):
    """Fully connected layer with weights W (d_in, d_out) and bias b (d_out,).

    With ``bias=False`` the layer has no ``b`` at all (e.g. before batch normalization,
    whose beta takes the bias's place, Sec. 3.6).

    >>> import numpy as np
    >>> layer = Linear(3, 2, rng=0)
    >>> layer(np.ones((4, 3))).shape
    (4, 2)
    """

    def __init__(self, d_in, d_out, init="xavier_uniform", bias=True, rng=None,
                 dtype=np.float64, name=None):
        super().__init__(name)
        self.d_in = check_int("d_in", d_in)
        self.d_out = check_int("d_out", d_out)
        rng = as_rng(rng)
        self.params["W"] = initialize(init, (d_in, d_out), rng, dtype)
        self.grads["W"] = np.zeros_like(self.params["W"])
        if bias:
            self.params["b"] = np.zeros(d_out, dtype=dtype)
            self.grads["b"] = np.zeros_like(self.params["b"])
        self.use_bias = bool(bias)
        self._cache = None

    def forward(self, x, train=True):
        check_input(self, x, self.d_in)
        out, self._cache = linear_forward(x, self.params["W"], self.params.get("b"))
        return out

    def _backward(self, g, need_dx=True):
        dx, _, _ = linear_backward(g, self._cache, dW=self.grads["W"], db=self.grads.get("b"),
                                   need_dx=need_dx, with_bias=self.use_bias)
        return dx

    # Pearlmutter's R-operator (Sec. 3.5.6.1): R{.} is d/dr (.)(w + r v) at r = 0, for a
    # direction v over the parameters.  ``cache`` is what ``forward`` kept, ``v`` this
    # layer's part of the direction ({"W": ..., "b": ...}); ``ddlib.optim.second_order``
    # chains these over a network.

    def r_forward(self, cache, rx, v):
        """R{out} = R{x} W + x V_W + V_b; returns (R{out}, what ``r_backward`` needs).

        ``rx`` is None when the input does not depend on the parameters (first layer)."""
        be = get_backend()
        x, W = cache
        rz = be.linear(x, v["W"], v["b"]) if self.use_bias else be.matmul(x, v["W"])
        if rx is not None:
            be.axpy(rz, 1.0, be.matmul(rx, W))
        return rz, rx

    def r_backward(self, cache, rcache, g, rg, v, hv, need_dx=True, gauss_newton=False):
        """R{dW} = R{x}^T g + x^T R{g}, R{db} = sum R{g}, R{dx} = R{g} W^T + g V_W^T.

        Writes R{dW}, R{db} into ``hv``'s buffers and returns R{dx} (None unless
        ``need_dx``).  ``gauss_newton`` drops the terms that involve g (the curvature of
        the network itself), leaving the backward pass of R{g}: J^T (H_L J v)."""
        be = get_backend()
        x, W = cache
        rx = rcache
        if not gauss_newton and rx is not None and not is_device(x):
            # x^T R{g} + R{x}^T g as one product over stacked rows: [x; R{x}]^T [R{g}; g]
            be.matmul_tn(np.concatenate((x, rx)), np.concatenate((rg, g)), out=hv["W"])
        else:
            be.matmul_tn(x, rg, out=hv["W"])
            if not gauss_newton and rx is not None:
                be.axpy(hv["W"], 1.0, be.matmul_tn(rx, g))
        if self.use_bias:
            be.col_sum(rg, out=hv["b"])
        if not need_dx:
            return None
        rdx = be.matmul_nt(rg, W)
        if not gauss_newton:
            be.axpy(rdx, 1.0, be.matmul_nt(g, v["W"]))
        return rdx

