"""numba kernels for the core family; see ``numpy_ref.core`` for the equations."""

import math

import numba as nb
import numpy as np

from .. import checks as ck
from .. import elementwise as _ELEMENTS
from ..numpy_ref.core import ACTIVATIONS, activation_code
from .elementwise import activation_loops as _activation_loops
from .elementwise import chunks as _chunks  # noqa: F401  (sparse, curvature)

__all__ = [
    "ACTIVATIONS",
    "matmul",
    "matmul_tn",
    "matmul_nt",
    "bias_add",
    "linear",
    "act_forward",
    "act_backward",
    "act_deriv",
    "linear_act",
    "act_backward_colsum",
    "softmax",
    "softmax_xent",
    "softmax_xent_backward",
    "col_sum",
    "fill",
    "mse",
]

jit = nb.njit(cache=True)
pjit = nb.njit(cache=True, parallel=True)

#: Below this many elements a kernel runs on the calling thread: waking the worker
#: threads costs more than the work (a 128 x 512 activation is done in microseconds).
PARALLEL_MIN = 1 << 18


def matmul(a, b, out=None):
    ck.need_matmul("matmul", a, b, out)
    # BLAS is already tuned and threaded; writing into ``out`` avoids a fresh allocation.
    return np.matmul(a, b, out=out)


def matmul_tn(a, b, out=None):
    ck.need_matmul("matmul_tn", a, b, out, trans_a=True)
    # a transposed view costs nothing: BLAS reads it through its transpose flag
    return np.matmul(a.T, b, out=out)


def matmul_nt(a, b, out=None):
    ck.need_matmul("matmul_nt", a, b, out, trans_b=True)
    return np.matmul(a, b.T, out=out)


@jit
def _bias_add(x, b, out):
    n, m = x.shape
    for i in range(n):
        for j in range(m):
            out[i, j] = x[i, j] + b[j]


def bias_add(x, b, out=None):
    ck.need_2d("bias_add", "x", x)
    ck.need_shape("bias_add", "b", b, (x.shape[1],), " (one entry per column of x)")
    ck.need_same_shape("bias_add", "x", x, out=out)
    if out is None:
        out = np.empty_like(x)
    _bias_add(x, b, out)
    return out


def linear(x, W, b, out=None):
    ck.need_matmul("linear", x, W, out, names=("x", "W"))
    ck.need_shape("linear", "b", b, (W.shape[1],), " (one entry per column of W)")
    if out is None:
        out = np.empty((x.shape[0], W.shape[1]), dtype=np.result_type(x, W))
    np.matmul(x, W, out=out)
    _bias_add(out, b, out)
    return out


# --- activations: one forward and one backward kernel per kind -------------------------


# The loops come from the element functions of ``backend.elementwise`` (compiled by
# ``cpu.elementwise``): one loop per activation with the branch on the code outside it,
# so each loop vectorizes.
_fwd, _bwd, _ = _activation_loops()
assert tuple(_ELEMENTS.ACTIVATIONS) == ACTIVATIONS


@pjit
def _fwd_par(code, xf, alpha, yf, nchunks):
    n = xf.size
    for c in nb.prange(nchunks):
        lo, hi = c * n // nchunks, (c + 1) * n // nchunks
        _fwd(code, xf[lo:hi], alpha, yf[lo:hi])


@pjit
def _bwd_par(code, xf, yf, gf, alpha, of, nchunks):
    n = xf.size
    for c in nb.prange(nchunks):
        lo, hi = c * n // nchunks, (c + 1) * n // nchunks
        _bwd(code, xf[lo:hi], yf[lo:hi], gf[lo:hi], alpha, of[lo:hi])


_code = activation_code


def _c(x):
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def act_forward(kind, x, alpha=0.01, out=None):
    x = _c(x)
    if out is None:
        out = np.empty_like(x)
    else:
        ck.need_same_shape("act_forward", "x", x, out=out)
        ck.need_contiguous("act_forward", out=out)
    code, a, xf, of = _code(kind), x.dtype.type(alpha), x.reshape(-1), out.reshape(-1)
    if x.size >= PARALLEL_MIN:
        _fwd_par(code, xf, a, of, _chunks(x.size))
    else:
        _fwd(code, xf, a, of)
    return out


def act_deriv(kind, x, alpha=0.01):
    x = _c(x)
    y = act_forward(kind, x, alpha)
    return act_backward(kind, x, y, np.ones_like(x), alpha)


def act_backward(kind, x, y, g, alpha=0.01, out=None):
    ck.need_same_shape("act_backward", "the forward input x", x, y=y, g=g, out=out)
    ck.need_contiguous("act_backward", out=out)
    x, y, g = _c(x), _c(y), _c(g)
    if out is None:
        out = np.empty_like(g)
    code, a = _code(kind), g.dtype.type(alpha)
    args = (x.reshape(-1), y.reshape(-1), g.reshape(-1), a, out.reshape(-1))
    if x.size >= PARALLEL_MIN:
        _bwd_par(code, *args, _chunks(x.size))
    else:
        _bwd(code, *args)
    return out


# --- a linear layer fused with the activation after it ---------------------------------
# Row by row: the bias add and the activation touch a row while it sits in L1, and the
# arithmetic is that of ``linear`` then ``act_forward`` (and of ``act_backward`` then
# ``col_sum``), so fused and separate layers give the same bits.


@jit
def _bias_act(code, z, b, alpha, y):
    n, m = z.shape
    for i in range(n):
        zi = z[i]
        for j in range(m):
            zi[j] = zi[j] + b[j]
        _fwd(code, zi, alpha, y[i])


@pjit
def _bias_act_par(code, z, b, alpha, y):
    n, m = z.shape
    for i in nb.prange(n):
        zi = z[i]
        for j in range(m):
            zi[j] = zi[j] + b[j]
        _fwd(code, zi, alpha, y[i])


def linear_act(kind, x, W, b, alpha=0.01):
    code = _code(kind)
    ck.need_matmul("linear_act", x, W, names=("x", "W"))
    ck.need_shape("linear_act", "b", b, (W.shape[1],), " (one entry per column of W)")
    z = np.empty((x.shape[0], W.shape[1]), dtype=np.result_type(x, W))
    np.matmul(x, W, out=z)
    y = np.empty_like(z)
    a = z.dtype.type(alpha)
    if z.size >= PARALLEL_MIN:
        _bias_act_par(code, z, b, a, y)
    else:
        _bias_act(code, z, b, a, y)
    return z, y


@jit
def _bwd_colsum(code, x, y, g, alpha, out, db):
    n, m = x.shape
    acc = np.zeros(m, dtype=np.float64)
    for i in range(n):
        oi = out[i]
        _bwd(code, x[i], y[i], g[i], alpha, oi)
        for j in range(m):
            acc[j] += oi[j]
    for j in range(m):
        db[j] = acc[j]


def act_backward_colsum(kind, x, y, g, alpha=0.01, db=None):
    ck.need_2d("act_backward_colsum", "x", x)
    ck.need_same_shape("act_backward_colsum", "the forward input x", x, y=y, g=g)
    ck.need_shape("act_backward_colsum", "db", db, (x.shape[1],), " (one entry per column)")
    x, y, g = _c(x), _c(y), _c(g)
    if db is None:
        db = np.empty(g.shape[1], dtype=g.dtype)
    if x.size >= PARALLEL_MIN:  # the parallel activation kernel, then the column sums
        out = act_backward(kind, x, y, g, alpha)
        _col_sum(out, db)
        return out, db
    out = np.empty_like(g)
    _bwd_colsum(_code(kind), x, y, g, g.dtype.type(alpha), out, db)
    return out, db


# --- softmax and cross-entropy ----------------------------------------------------------


@jit
def _softmax_rows(x, p, labels, want_loss):
    n, k = x.shape
    losses = np.zeros(n, dtype=np.float64)
    for i in range(n):
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
    ck.need_2d("softmax", "x", x)
    x = _c(x)
    p = np.empty_like(x)
    _softmax_rows(x, p, _NO_LABELS, False)
    return p


def softmax_xent(logits, labels):
    ck.need_2d("softmax_xent", "logits", logits)
    labels = np.asarray(labels)
    ck.need_labels("softmax_xent", labels, logits.shape[0], logits.shape[1])
    logits = _c(logits)
    p = np.empty_like(logits)
    loss = _softmax_rows(logits, p, np.ascontiguousarray(labels, dtype=np.int64), True)
    return float(loss), p


@jit
def _xent_grad(p, labels, out):
    n, k = p.shape
    inv = 1.0 / n
    for i in range(n):
        for j in range(k):
            out[i, j] = p[i, j] * inv
        out[i, labels[i]] -= inv


def softmax_xent_backward(probs, labels):
    ck.need_2d("softmax_xent_backward", "probs", probs)
    labels = np.asarray(labels)
    ck.need_labels("softmax_xent_backward", labels, probs.shape[0], probs.shape[1])
    out = np.empty_like(probs)
    _xent_grad(_c(probs), np.ascontiguousarray(labels, dtype=np.int64), out)
    return out


@jit
def _col_sum(x, out):
    # row-major sweep: contiguous reads, the (m,) accumulator stays in cache
    n, m = x.shape
    acc = np.zeros(m, dtype=np.float64)
    for i in range(n):
        for j in range(m):
            acc[j] += x[i, j]
    for j in range(m):
        out[j] = acc[j]


def col_sum(x, out=None):
    ck.need_2d("col_sum", "x", x)
    ck.need_shape("col_sum", "out", out, (x.shape[1],), " (one entry per column of x)")
    x = _c(x)
    if out is None:
        out = np.empty(x.shape[1], dtype=x.dtype)
    _col_sum(x, out)
    return out


def fill(x, value):
    x[...] = value
    return x


@jit
def _mse(s, t, g):
    n, m = s.shape
    inv = 1.0 / n
    total = 0.0
    for i in range(n):
        for j in range(m):
            d = s[i, j] - t[i, j]
            total += d * d
            g[i, j] = d * inv
    return 0.5 * total * inv


def mse(scores, targets):
    ck.need_2d("mse", "scores", scores)
    ck.need_same_shape("mse", "scores", scores, targets=targets)
    scores, targets = _c(scores), _c(targets)
    g = np.empty_like(scores)
    return float(_mse(scores, targets, g)), g
