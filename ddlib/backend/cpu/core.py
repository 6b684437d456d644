"""numba kernels for the core family; see ``numpy_ref.core`` for the equations."""

import math

import numba as nb
import numpy as np

from ..numpy_ref.core import ACTIVATIONS

__all__ = [
    "ACTIVATIONS",
    "matmul",
    "bias_add",
    "linear",
    "act_forward",
    "act_backward",
    "act_deriv",
    "softmax",
    "softmax_xent",
    "softmax_xent_backward",
    "col_sum",
    "fill",
]

jit = nb.njit(cache=True, fastmath=False)
pjit = nb.njit(cache=True, parallel=True, fastmath=False)


def matmul(a, b, out=None):
    # BLAS is already tuned and threaded; writing into ``out`` avoids a fresh allocation.
    return np.matmul(a, b, out=out)


@pjit
def _bias_add(x, b, out):
    n, m = x.shape
    for i in nb.prange(n):
        for j in range(m):
            out[i, j] = x[i, j] + b[j]


def bias_add(x, b, out=None):
    if out is None:
        out = np.empty_like(x)
    _bias_add(x, b, out)
    return out


def linear(x, W, b, out=None):
    if out is None:
        out = np.empty((x.shape[0], W.shape[1]), dtype=np.result_type(x, W))
    np.matmul(x, W, out=out)
    _bias_add(out, b, out)
    return out


# --- activations: one forward and one backward kernel per kind -------------------------


@jit
def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


@pjit
def _fwd(code, x, alpha, y):
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    for i in nb.prange(xf.size):
        v = xf[i]
        if code == 0:
            r = v
        elif code == 1:
            r = _sig(v)
        elif code == 2:
            r = math.tanh(v)
        elif code == 3:
            r = v if v > 0 else 0.0
        elif code == 4:
            r = v if v > 0 else alpha * v
        else:
            r = min(max(v, -1.0), 1.0)
        yf[i] = r


@pjit
def _deriv(code, x, y, alpha, d):
    """d = f'(x), using y = f(x) for sigmoid and tanh."""
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    df = d.reshape(-1)
    for i in nb.prange(xf.size):
        v = xf[i]
        if code == 0:
            r = 1.0
        elif code == 1:
            s = yf[i]
            r = s * (1.0 - s)
        elif code == 2:
            t = yf[i]
            r = 1.0 - t * t
        elif code == 3:
            r = 1.0 if v > 0 else 0.0
        elif code == 4:
            r = 1.0 if v > 0 else alpha
        else:
            r = 1.0 if (v > -1.0 and v < 1.0) else 0.0
        df[i] = r


@pjit
def _bwd(code, x, y, g, alpha, out):
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    gf = g.reshape(-1)
    of = out.reshape(-1)
    for i in nb.prange(xf.size):
        v = xf[i]
        if code == 0:
            r = 1.0
        elif code == 1:
            s = yf[i]
            r = s * (1.0 - s)
        elif code == 2:
            t = yf[i]
            r = 1.0 - t * t
        elif code == 3:
            r = 1.0 if v > 0 else 0.0
        elif code == 4:
            r = 1.0 if v > 0 else alpha
        else:
            r = 1.0 if (v > -1.0 and v < 1.0) else 0.0
        of[i] = gf[i] * r


_CODES = {k: i for i, k in enumerate(ACTIVATIONS)}


def _code(kind):
    try:
        return _CODES[kind]
    except KeyError:
        raise ValueError(f"kind={kind!r}: expected one of {ACTIVATIONS}") from None


def _c(x):
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def act_forward(kind, x, alpha=0.01, out=None):
    x = _c(x)
    if out is None:
        out = np.empty_like(x)
    _fwd(_code(kind), x, x.dtype.type(alpha), out)
    return out


def act_deriv(kind, x, alpha=0.01):
    x = _c(x)
    code = _code(kind)
    y = act_forward(kind, x, alpha) if code in (1, 2) else x
    d = np.empty_like(x)
    _deriv(code, x, y, x.dtype.type(alpha), d)
    return d


def act_backward(kind, x, y, g, alpha=0.01, out=None):
    x, y, g = _c(x), _c(y), _c(g)
    if out is None:
        out = np.empty_like(g)
    _bwd(_code(kind), x, y, g, g.dtype.type(alpha), out)
    return out


# --- softmax and cross-entropy ----------------------------------------------------------


@pjit
def _softmax_rows(x, p, labels, want_loss):
    n, k = x.shape
    losses = np.zeros(n, dtype=np.float64)
    for i in nb.prange(n):
        m = x[i, 0]
        for j in range(1, k):
            if x[i, j] > m:
                m = x[i, j]
        s = 0.0
        for j in range(k):
            e = math.exp(x[i, j] - m)
            p[i, j] = e
            s += e
        inv = 1.0 / s
        for j in range(k):
            p[i, j] = p[i, j] * inv
        if want_loss:
            losses[i] = -(x[i, labels[i]] - m - math.log(s))
    return losses.sum() / n if want_loss else 0.0


_NO_LABELS = np.zeros(1, dtype=np.int64)


def softmax(x):
    x = _c(x)
    p = np.empty_like(x)
    _softmax_rows(x, p, _NO_LABELS, False)
    return p


def softmax_xent(logits, labels):
    logits = _c(logits)
    p = np.empty_like(logits)
    loss = _softmax_rows(logits, p, np.asarray(labels, dtype=np.int64), True)
    return float(loss), p


@pjit
def _xent_grad(p, labels, out):
    n, k = p.shape
    inv = 1.0 / n
    for i in nb.prange(n):
        for j in range(k):
            out[i, j] = p[i, j] * inv
        out[i, labels[i]] -= inv


def softmax_xent_backward(probs, labels):
    out = np.empty_like(probs)
    _xent_grad(_c(probs), np.asarray(labels, dtype=np.int64), out)
    return out


@pjit
def _col_sum(x, out):
    n, m = x.shape
    block = 64
    nblocks = (m + block - 1) // block
    for bj in nb.prange(nblocks):
        j0 = bj * block
        j1 = min(m, j0 + block)
        for j in range(j0, j1):
            out[j] = 0.0
        for i in range(n):
            for j in range(j0, j1):
                out[j] += x[i, j]


def col_sum(x, out=None):
    x = _c(x)
    if out is None:
        out = np.empty(x.shape[1], dtype=x.dtype)
    _col_sum(x, out)
    return out


def fill(x, value):
    x[...] = value
    return x
