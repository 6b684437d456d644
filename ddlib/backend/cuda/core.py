"""numba.cuda kernels for the core family; see ``numpy_ref.core`` for the equations.

Every kernel guards its index against the array bounds, so any shape works with the
fixed block sizes of ``launch``.  The three matrix multiplications live in ``matmul``;
``matmul`` here runs the one ``matmul.choose_method`` picks.  Every wrapper insists on
device arrays: passing a NumPy array raises a TypeError that says how to move it, because
numba would otherwise copy it to the GPU and back behind the caller's back.
"""

import math

import numpy as np
from numba import cuda, float64

from .. import checks as ck
from .. import elementwise as _ELEMENTS
from ..arrays import is_device
from ..numpy_ref.core import ACTIVATIONS, activation_code
from . import matmul as _mm
from .elementwise import activation_functions as _activation_functions
from .launch import TPB_1D, grid_1d, grid_rows_cols

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


_FLOATS = ck.FLOATS


_is_device = is_device  # the one definition, in backend.arrays


def _need_device(who, **arrays):
    """Raise a clear TypeError when a host array is mixed into a device kernel call.

    numba would otherwise copy a NumPy argument to the GPU and back on every launch,
    a hidden round trip that turns a fast kernel into a slow transfer.
    """
    for name, x in arrays.items():
        if x is not None and not _is_device(x):
            shape = f" of shape {tuple(x.shape)}" if hasattr(x, "shape") else ""
            raise TypeError(
                f"{who}: {name} is a host {type(x).__name__}{shape}, but the cuda backend's "
                f"kernels compute on device arrays; move it explicitly with "
                f"ddlib.device.to_device({name}) (or get_backend('cuda').asarray) first")


def _need_float(who, x, *others):
    if x.dtype not in _FLOATS:
        raise TypeError(f"{who}: cuda kernels take float32 or float64 arrays, got {x.dtype}")
    for o in others:
        if o is not None and o.dtype != x.dtype:
            raise TypeError(f"{who}: arrays mix {x.dtype} and {o.dtype}; cast one so they match")


def matmul(a, b, out=None):
    """C = A B (device arrays (n, k) x (k, m) -> (n, m)); the kernel is chosen by
    ``matmul.choose_method`` (register-blocked for large outputs, tiled otherwise)."""
    _need_device("matmul", a=a, b=b, out=out)
    ck.need_matmul("matmul", a, b, out)
    return _mm.matmul(a, b, out=out)


def matmul_tn(a, b, out=None):
    """C = A^T B with a stored as (k, n): the tiled/blocked kernels read it in place
    (numba's ``DeviceNDArray.T`` would copy it through a transpose kernel first)."""
    _need_device("matmul_tn", a=a, b=b, out=out)
    ck.need_matmul("matmul_tn", a, b, out, trans_a=True)
    return _mm.matmul(a, b, out=out, trans_a=True)


def matmul_nt(a, b, out=None):
    """C = A B^T with b stored as (m, k), read in place."""
    _need_device("matmul_nt", a=a, b=b, out=out)
    ck.need_matmul("matmul_nt", a, b, out, trans_b=True)
    return _mm.matmul(a, b, out=out, trans_b=True)


@cuda.jit
def _bias_add(x, b, out):
    j, i = cuda.grid(2)  # x along columns: a warp reads one row (coalesced)
    if i < x.shape[0] and j < x.shape[1]:
        out[i, j] = x[i, j] + b[j]


def _grid_rows_cols(x):
    return grid_rows_cols(x.shape[0], x.shape[1])


def bias_add(x, b, out=None):
    """x + b with b (m,) added to every row of x (n, m)."""
    _need_device("bias_add", x=x, b=b, out=out)
    _need_float("bias_add", x, b, out)
    ck.need_2d("bias_add", "x", x)
    ck.need_shape("bias_add", "b", b, (x.shape[1],), " (one entry per column of x)")
    ck.need_same_shape("bias_add", "x", x, out=out)
    if out is None:
        out = cuda.device_array_like(x)
    blocks, threads = _grid_rows_cols(x)
    _bias_add[blocks, threads](x, b, out)
    return out


def linear(x, W, b, out=None):
    """x W + b: (n, d_in) x (d_in, d_out) + (d_out,)."""
    _need_device("linear", x=x, W=W, b=b, out=out)
    ck.need_matmul("linear", x, W, out, names=("x", "W"))
    ck.need_shape("linear", "b", b, (W.shape[1],), " (one entry per column of W)")
    out = matmul(x, W, out=out)
    return bias_add(out, b, out=out)


# f(v) and g f'(v) for every activation, from the element functions of
# ``backend.elementwise`` (compiled by ``cuda.elementwise``)
_f, _act_b = _activation_functions()
assert tuple(_ELEMENTS.ACTIVATIONS) == ACTIVATIONS


@cuda.jit
def _fwd(code, x, alpha, y):
    i = cuda.grid(1)
    if i < x.size:
        y[i] = _f(code, x[i], alpha)


@cuda.jit
def _bwd(code, x, y, g, alpha, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i] = _act_b(code, g[i], x[i], y[i], alpha)


_code = activation_code


def _flat(x):
    return x.reshape(x.size)


def act_forward(kind, x, alpha=0.01, out=None):
    """y = f(x) elementwise for the activation named ``kind``."""
    code = _code(kind)
    _need_device("act_forward", x=x, out=out)
    _need_float("act_forward", x, out)
    ck.need_same_shape("act_forward", "x", x, out=out)
    ck.need_contiguous("act_forward", x=x, out=out)
    if out is None:
        out = cuda.device_array_like(x)
    blocks, threads = grid_1d(x.size)
    _fwd[blocks, threads](code, _flat(x), x.dtype.type(alpha), _flat(out))
    return out


def act_backward(kind, x, y, g, alpha=0.01, out=None):
    """g * f'(x); ``y = f(x)`` is passed so sigmoid and tanh reuse it."""
    code = _code(kind)
    _need_device("act_backward", x=x, y=y, g=g, out=out)
    _need_float("act_backward", g, x, y, out)
    ck.need_same_shape("act_backward", "the forward input x", x, y=y, g=g, out=out)
    ck.need_contiguous("act_backward", x=x, y=y, g=g, out=out)
    if out is None:
        out = cuda.device_array_like(g)
    blocks, threads = grid_1d(x.size)
    _bwd[blocks, threads](code, _flat(x), _flat(y), _flat(g), g.dtype.type(alpha), _flat(out))
    return out


def act_deriv(kind, x, alpha=0.01):
    """f'(x) elementwise."""
    _need_device("act_deriv", x=x)
    ones = cuda.device_array_like(x)
    fill(ones, 1.0)
    y = act_forward(kind, x, alpha)
    return act_backward(kind, x, y, ones, alpha)



# --- column sums (bias gradients) ------------------------------------------------------
_CS_X, _CS_Y = 32, 8  # col_sum block: 32 columns (one warp wide) x 8 row groups


@cuda.jit(device=True)
def _finish_col_sum(acc, j, ncols, out):
    """A block's thread rows each hold a partial sum ``acc`` of column j: add the _CS_Y of
    them in shared memory, always in the same order, and write out[j]."""
    buf = cuda.shared.array((_CS_Y, _CS_X), float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    buf[ty, tx] = acc
    cuda.syncthreads()
    if ty == 0 and j < ncols:
        total = 0.0
        for r in range(_CS_Y):
            total += buf[r, tx]
        out[j] = total


# --- a linear layer fused with the activation after it ---------------------------------


@cuda.jit
def _bias_act(code, z, b, alpha, y):
    j, i = cuda.grid(2)  # x along columns: a warp reads one row (coalesced)
    if i < z.shape[0] and j < z.shape[1]:
        v = z[i, j] + b[j]
        z[i, j] = v
        y[i, j] = _f(code, v, alpha)


def linear_act(kind, x, W, b, alpha=0.01):
    """(z, y) with z = x W + b and y = f(z): the bias add and activation in one launch."""
    code = _code(kind)
    _need_device("linear_act", x=x, W=W, b=b)
    _need_float("linear_act", x, W, b)
    ck.need_matmul("linear_act", x, W, names=("x", "W"))
    ck.need_shape("linear_act", "b", b, (W.shape[1],), " (one entry per column of W)")
    z = matmul(x, W)
    y = cuda.device_array_like(z)
    blocks, threads = _grid_rows_cols(z)
    _bias_act[blocks, threads](code, z, b, z.dtype.type(alpha), y)
    return z, y


@cuda.jit
def _bwd_colsum(code, x, y, g, alpha, out, db):
    """out = g * f'(x) and its column sums, laid out as ``_col_sum`` (same order of sums)."""
    j = cuda.blockIdx.x * _CS_X + cuda.threadIdx.x
    acc = 0.0
    if j < x.shape[1]:
        for i in range(cuda.threadIdx.y, x.shape[0], _CS_Y):
            out[i, j] = _act_b(code, g[i, j], x[i, j], y[i, j], alpha)
            acc += out[i, j]  # the stored (rounded) value, as col_sum would read it
    _finish_col_sum(acc, j, x.shape[1], db)


def act_backward_colsum(kind, x, y, g, alpha=0.01, db=None):
    """(dz, db): dz = g * f'(x) and the bias gradient db = column sums of dz, one launch."""
    code = _code(kind)
    _need_device("act_backward_colsum", x=x, y=y, g=g, db=db)
    _need_float("act_backward_colsum", g, x, y, db)
    ck.need_2d("act_backward_colsum", "x", x)
    ck.need_same_shape("act_backward_colsum", "the forward input x", x, y=y, g=g)
    ck.need_shape("act_backward_colsum", "db", db, (x.shape[1],), " (one entry per column)")
    out = cuda.device_array_like(g)
    if db is None:
        db = cuda.device_array(g.shape[1], dtype=g.dtype)
    blocks = max(1, (g.shape[1] + _CS_X - 1) // _CS_X)
    _bwd_colsum[blocks, (_CS_X, _CS_Y)](code, x, y, g, g.dtype.type(alpha), out, db)
    return out, db

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
            c = labels[i]
            # a label outside [0, k) would read past the row: it makes the loss NaN
            # instead (checking the labels on the host would mean copying them back)
            if c >= 0 and c < k:
                losses[i] = -(x[i, c] - m - math.log(s))
            else:
                losses[i] = math.nan


def softmax(x):
    """Row-wise softmax (Eq. 3.20)."""
    _need_device("softmax", x=x)
    _need_float("softmax", x)
    ck.need_2d("softmax", "x", x)
    p = cuda.device_array_like(x)
    dummy = cuda.device_array(1, dtype=np.int64)
    losses = cuda.device_array(1, dtype=np.float64)
    blocks, threads = grid_1d(x.shape[0])
    _softmax_rows[blocks, threads](x, p, dummy, False, losses)
    return p


def softmax_xent_device(logits, labels, last=None, running=None):
    """Mean cross-entropy (Eq. 3.21) left on the device: returns (last, probs).

    ``last`` is a float64 device array of shape (1,) that receives the batch mean;
    ``running`` (optional, same shape) has the mean added to it, so a training loop
    can sum an epoch's losses without copying anything back until it wants to.
    """
    _need_device("softmax_xent", logits=logits, labels=labels, last=last, running=running)
    _need_float("softmax_xent", logits)
    ck.need_2d("softmax_xent", "logits", logits)
    n = logits.shape[0]
    ck.need_labels("softmax_xent", labels, n)
    ck.need_shape("softmax_xent", "last", last, (1,))
    ck.need_shape("softmax_xent", "running", running, (1,))
    p = cuda.device_array_like(logits)
    losses = cuda.device_array(n, dtype=np.float64)
    blocks, threads = grid_1d(n)
    _softmax_rows[blocks, threads](logits, p, labels, True, losses)
    if last is None:
        last = cuda.device_array(1, dtype=np.float64)
    acc = running if running is not None else last
    _mean_into[1, TPB_1D](losses, 1.0 / max(n, 1), last, acc, running is not None)
    return last, p


def softmax_xent(logits, labels):
    """Returns (loss, probs); the loss is reduced on the device and one scalar comes back."""
    last, p = softmax_xent_device(logits, labels)
    return float(last.copy_to_host()[0]), p


@cuda.jit(device=True)
def block_sum(buf):
    """Tree-sum a block's TPB_1D values in shared memory into buf[0]; every thread calls it."""
    t = cuda.threadIdx.x
    cuda.syncthreads()
    s = TPB_1D // 2  # TPB_1D is a power of two
    while s > 0:
        if t < s:
            buf[t] += buf[t + s]
        cuda.syncthreads()
        s //= 2


@cuda.jit
def _mean_into(x, scale, last, running, accumulate):
    """Single-block tree reduction: last[0] = scale * sum(x); running[0] += it if asked."""
    buf = cuda.shared.array(TPB_1D, float64)
    t = cuda.threadIdx.x
    acc = 0.0
    for i in range(t, x.size, TPB_1D):
        acc += x[i]
    buf[t] = acc
    block_sum(buf)
    if t == 0:
        v = buf[0] * scale
        last[0] = v
        if accumulate:
            running[0] += v


@cuda.jit
def _xent_grad(p, labels, inv, out):
    j, i = cuda.grid(2)  # x along columns: a warp reads one row (coalesced)
    if i < p.shape[0] and j < p.shape[1]:
        v = p[i, j] * inv
        if j == labels[i]:
            v -= inv
        out[i, j] = v


def softmax_xent_backward(probs, labels):
    """(p - y) / n (Eq. 3.22)."""
    _need_device("softmax_xent_backward", probs=probs, labels=labels)
    _need_float("softmax_xent_backward", probs)
    ck.need_2d("softmax_xent_backward", "probs", probs)
    ck.need_labels("softmax_xent_backward", labels, probs.shape[0])
    out = cuda.device_array_like(probs)
    blocks, threads = _grid_rows_cols(probs)
    _xent_grad[blocks, threads](probs, labels, probs.dtype.type(1.0 / probs.shape[0]), out)
    return out


@cuda.jit
def _col_sum(x, out):
    """Column sums: a block owns 32 neighbouring columns (a warp reads 32 neighbouring
    addresses of one row) and splits the rows over 8 thread rows, then adds the 8
    partial sums in shared memory.  The order of additions is fixed, so the result
    does not depend on timing."""
    j = cuda.blockIdx.x * _CS_X + cuda.threadIdx.x
    acc = 0.0
    if j < x.shape[1]:
        for i in range(cuda.threadIdx.y, x.shape[0], _CS_Y):
            acc += x[i, j]
    _finish_col_sum(acc, j, x.shape[1], out)


def col_sum(x, out=None):
    """Sum over rows of x (n, m) -> (m,): the bias gradient."""
    _need_device("col_sum", x=x, out=out)
    _need_float("col_sum", x, out)
    ck.need_2d("col_sum", "x", x)
    ck.need_shape("col_sum", "out", out, (x.shape[1],), " (one entry per column of x)")
    if out is None:
        out = cuda.device_array(x.shape[1], dtype=x.dtype)
    blocks = max(1, (x.shape[1] + _CS_X - 1) // _CS_X)
    _col_sum[blocks, (_CS_X, _CS_Y)](x, out)
    return out


@cuda.jit
def _fill(x, v):
    i = cuda.grid(1)
    if i < x.size:
        x[i] = v


def fill(x, value):
    """Set every element of a device array to ``value`` in place."""
    _need_device("fill", x=x)
    blocks, threads = grid_1d(x.size)
    _fill[blocks, threads](_flat(x), x.dtype.type(value))
    return x


@cuda.jit
def _take_rows(x, idx, out):
    j, i = cuda.grid(2)  # x along columns: a warp reads one row (coalesced)
    if i < out.shape[0] and j < out.shape[1]:
        r = idx[i]
        if r >= 0 and r < x.shape[0]:  # never read past x (out's row is then left as is)
            out[i, j] = x[r, j]


@cuda.jit
def _take(v, idx, out):
    i = cuda.grid(1)
    if i < out.size:
        r = idx[i]
        if r >= 0 and r < v.size:
            out[i] = v[r]


def take_rows(x, idx, out=None):
    """Rows ``x[idx]`` gathered on the device (x (N, d) or (N,), idx (n,) integers).

    Used to cut a mini-batch out of a data set that already lives on the GPU; the
    caller guarantees 0 <= idx < N: reading idx back would cost a transfer, so the
    kernel only refuses to read past x (an out-of-range row of ``out`` is left unwritten).
    """
    _need_device("take_rows", x=x, idx=idx, out=out)
    if len(idx.shape) != 1:
        raise ValueError(f"take_rows: idx must be 1-D, got shape {tuple(idx.shape)}")
    n = idx.shape[0]
    ck.need_shape("take_rows", "out", out, (n,) + tuple(x.shape[1:]), " (one row per index)")
    if len(x.shape) == 1:
        if out is None:
            out = cuda.device_array(n, dtype=x.dtype)
        blocks, threads = grid_1d(n)
        _take[blocks, threads](x, idx, out)
        return out
    if out is None:
        out = cuda.device_array((n, x.shape[1]), dtype=x.dtype)
    blocks, threads = _grid_rows_cols(out)
    _take_rows[blocks, threads](x, idx, out)
    return out


@cuda.jit
def _pack_status(last, running, flags, status):
    """status = [last loss, running loss sum, flag_0, flag_1, ...]."""
    status[0] = last[0]
    status[1] = running[0]
    for i in range(flags.size):
        status[2 + i] = flags[i]


def pack_status(last, running, flags, status):
    """Gather a training loop's scalars into one float64 device array, so reading them
    back is a single small copy (used by ``ddlib.device.DeviceTrainer``)."""
    _need_device("pack_status", last=last, running=running, flags=flags, status=status)
    _pack_status[1, 1](last, running, flags, status)
    return status


@cuda.jit
def _mse_rows(s, t, inv, g, rows):
    """One thread per row: the row's squared error, and (s - t) / n into g."""
    i = cuda.grid(1)
    if i < s.shape[0]:
        acc = 0.0
        for j in range(s.shape[1]):
            d = s[i, j] - t[i, j]
            acc += d * d
            g[i, j] = d * inv
        rows[i] = acc


def mse(scores, targets):
    """(0.5 ||s - t||^2 averaged over rows, (s - t) / n); one scalar comes back."""
    _need_device("mse", scores=scores, targets=targets)
    _need_float("mse", scores, targets)
    ck.need_2d("mse", "scores", scores)
    ck.need_same_shape("mse", "scores", scores, targets=targets)
    n = scores.shape[0]
    g = cuda.device_array_like(scores)
    rows = cuda.device_array(n, dtype=np.float64)
    blocks, threads = grid_1d(n)
    _mse_rows[blocks, threads](scores, targets, scores.dtype.type(1.0 / n), g, rows)
    last = cuda.device_array(1, dtype=np.float64)
    _mean_into[1, TPB_1D](rows, 0.5 / max(n, 1), last, last, False)
    return float(last.copy_to_host()[0]), g
