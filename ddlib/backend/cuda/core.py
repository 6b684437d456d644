"""numba.cuda kernels for the core family; see ``numpy_ref.core`` for the equations.

Every kernel guards its index against the array bounds, so any shape works with the
fixed block sizes of ``launch``.
"""

import math

import numpy as np
from numba import cuda, float32, float64

from ..numpy_ref.core import ACTIVATIONS
from .launch import TILE, grid_1d, grid_2d

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


def _make_tiled(dtype):
    @cuda.jit
    def tiled(a, b, c):
        """C = A B with TILE x TILE shared-memory tiles; loads along rows are coalesced."""
        sa = cuda.shared.array((TILE, TILE), dtype)
        sb = cuda.shared.array((TILE, TILE), dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        col = cuda.blockIdx.x * TILE + tx
        row = cuda.blockIdx.y * TILE + ty
        n, k = a.shape
        m = b.shape[1]
        acc = dtype(0)
        for t in range((k + TILE - 1) // TILE):
            ka = t * TILE + tx
            kb = t * TILE + ty
            sa[ty, tx] = a[row, ka] if (row < n and ka < k) else dtype(0)
            sb[ty, tx] = b[kb, col] if (kb < k and col < m) else dtype(0)
            cuda.syncthreads()
            for i in range(TILE):
                acc += sa[ty, i] * sb[i, tx]
            cuda.syncthreads()
        if row < n and col < m:
            c[row, col] = acc

    return tiled


_TILED = {np.dtype(np.float32): _make_tiled(float32), np.dtype(np.float64): _make_tiled(float64)}


def _check_dtype(x, who):
    if x.dtype not in _TILED:
        raise TypeError(f"{who}: cuda kernels take float32 or float64 arrays, got {x.dtype}")


def matmul(a, b, out=None):
    _check_dtype(a, "matmul")
    n, m = a.shape[0], b.shape[1]
    if out is None:
        out = cuda.device_array((n, m), dtype=a.dtype)
    blocks, threads = grid_2d(n, m)
    _TILED[a.dtype][blocks, threads](a, b, out)
    return out


@cuda.jit
def _bias_add(x, b, out):
    i, j = cuda.grid(2)
    if i < x.shape[0] and j < x.shape[1]:
        out[i, j] = x[i, j] + b[j]


def _grid_rows_cols(x):
    # x along rows, y along columns: consecutive threads in a warp differ in j -> coalesced
    bx, by = (x.shape[0] + 7) // 8, (x.shape[1] + 31) // 32
    return (max(1, bx), max(1, by)), (8, 32)


def bias_add(x, b, out=None):
    if out is None:
        out = cuda.device_array_like(x)
    blocks, threads = _grid_rows_cols(x)
    _bias_add[blocks, threads](x, b, out)
    return out


def linear(x, W, b, out=None):
    out = matmul(x, W, out=out)
    return bias_add(out, b, out=out)


@cuda.jit(device=True)
def _f(code, v, alpha):
    if code == 0:
        return v
    if code == 1:
        return 1.0 / (1.0 + math.exp(-v))
    if code == 2:
        return math.tanh(v)
    if code == 3:
        return v if v > 0 else 0.0
    if code == 4:
        return v if v > 0 else alpha * v
    return min(max(v, -1.0), 1.0)


@cuda.jit(device=True)
def _df(code, v, y, alpha):
    if code == 0:
        return 1.0
    if code == 1:
        return y * (1.0 - y)
    if code == 2:
        return 1.0 - y * y
    if code == 3:
        return 1.0 if v > 0 else 0.0
    if code == 4:
        return 1.0 if v > 0 else alpha
    return 1.0 if (v > -1.0 and v < 1.0) else 0.0


@cuda.jit
def _fwd(code, x, alpha, y):
    i = cuda.grid(1)
    if i < x.size:
        y[i] = _f(code, x[i], alpha)


@cuda.jit
def _bwd(code, x, y, g, alpha, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = g[i] * _df(code, x[i], y[i], alpha)


_CODES = {k: i for i, k in enumerate(ACTIVATIONS)}


def _code(kind):
    try:
        return _CODES[kind]
    except KeyError:
        raise ValueError(f"kind={kind!r}: expected one of {ACTIVATIONS}") from None


def _flat(x):
    return x.reshape(x.size)


def act_forward(kind, x, alpha=0.01, out=None):
    code = _code(kind)
    if out is None:
        out = cuda.device_array_like(x)
    blocks, threads = grid_1d(x.size)
    _fwd[blocks, threads](code, _flat(x), x.dtype.type(alpha), _flat(out))
    return out


def act_backward(kind, x, y, g, alpha=0.01, out=None):
    code = _code(kind)
    if out is None:
        out = cuda.device_array_like(g)
    blocks, threads = grid_1d(x.size)
    _bwd[blocks, threads](code, _flat(x), _flat(y), _flat(g), g.dtype.type(alpha), _flat(out))
    return out


def act_deriv(kind, x, alpha=0.01):
    ones = cuda.device_array_like(x)
    fill(ones, 1.0)
    y = act_forward(kind, x, alpha)
    return act_backward(kind, x, y, ones, alpha)


@cuda.jit
def _softmax_rows(x, p, labels, want_loss, losses):
    """One thread per row: rows are short (classes), so a serial pass per row is fine."""
    i = cuda.grid(1)
    n, k = x.shape
    if i < n:
        m = x[i, 0]
        for j in range(1, k):
            m = max(m, x[i, j])
        s = 0.0
        for j in range(k):
            e = math.exp(x[i, j] - m)
            p[i, j] = e
            s += e
        for j in range(k):
            p[i, j] = p[i, j] / s
        if want_loss:
            losses[i] = -(x[i, labels[i]] - m - math.log(s))


def softmax(x):
    p = cuda.device_array_like(x)
    dummy = cuda.device_array(1, dtype=np.int64)
    losses = cuda.device_array(1, dtype=np.float64)
    blocks, threads = grid_1d(x.shape[0], 128)
    _softmax_rows[blocks, threads](x, p, dummy, False, losses)
    return p


def softmax_xent(logits, labels):
    """Returns (loss, probs); the loss is reduced on the device and one scalar comes back."""
    n = logits.shape[0]
    p = cuda.device_array_like(logits)
    losses = cuda.device_array(n, dtype=np.float64)
    blocks, threads = grid_1d(n, 128)
    _softmax_rows[blocks, threads](logits, p, labels, True, losses)
    total = cuda.device_array(1, dtype=np.float64)
    _sum_1d[1, 256](losses, total)
    return float(total.copy_to_host()[0]) / n, p


@cuda.jit
def _sum_1d(x, total):
    """Single-block tree reduction of a vector into total[0]."""
    buf = cuda.shared.array(256, float64)
    t = cuda.threadIdx.x
    acc = 0.0
    for i in range(t, x.size, 256):
        acc += x[i]
    buf[t] = acc
    cuda.syncthreads()
    s = 128
    while s > 0:
        if t < s:
            buf[t] += buf[t + s]
        cuda.syncthreads()
        s //= 2
    if t == 0:
        total[0] = buf[0]


@cuda.jit
def _xent_grad(p, labels, inv, out):
    i, j = cuda.grid(2)
    if i < p.shape[0] and j < p.shape[1]:
        v = p[i, j] * inv
        if j == labels[i]:
            v -= inv
        out[i, j] = v


def softmax_xent_backward(probs, labels):
    out = cuda.device_array_like(probs)
    blocks, threads = _grid_rows_cols(probs)
    _xent_grad[blocks, threads](probs, labels, probs.dtype.type(1.0 / probs.shape[0]), out)
    return out


@cuda.jit
def _col_sum(x, out):
    """One thread per column; neighbouring threads read neighbouring addresses."""
    j = cuda.grid(1)
    if j < x.shape[1]:
        acc = 0.0
        for i in range(x.shape[0]):
            acc += x[i, j]
        out[j] = acc


def col_sum(x, out=None):
    if out is None:
        out = cuda.device_array(x.shape[1], dtype=x.dtype)
    blocks, threads = grid_1d(x.shape[1])
    _col_sum[blocks, threads](x, out)
    return out


@cuda.jit
def _fill(x, v):
    i = cuda.grid(1)
    if i < x.size:
        x[i] = v


def fill(x, value):
    """Set every element of a device array to ``value`` in place."""
    blocks, threads = grid_1d(x.size)
    _fill[blocks, threads](_flat(x), x.dtype.type(value))
    return x
