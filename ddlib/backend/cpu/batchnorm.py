"""numba kernels for batch normalization; see ``numpy_ref.batchnorm`` for the equations.

The work is split over blocks of *features* (columns): a unit's mean and variance need
every example of the batch but no other unit, so each thread owns a block of columns
from the first row to the last and never waits for another thread (batches below
``PARALLEL_MIN`` elements are one block on the calling thread).  Inside a block:

* the statistics take one pass: sums of (v - K) and (v - K)^2 with K the block's first
  row (a shift that keeps the one-pass variance accurate), accumulated in float64;
* the forward pass then writes a = v * scale + shift, two per-unit constants folded from
  gamma, beta, mu and sigma, so the second pass is one fused multiply-add per element;
* the backward pass likewise needs one pass for the sums of g and g (v - mu) and one
  pass writing dL/dv as an affine function of g and v with per-unit coefficients.

A block of columns is re-read while it still sits in the core's cache, so each pass
over memory is close to the cost of streaming the arrays once.
"""

import math

import numba as nb
import numpy as np

__all__ = [
    "batchnorm_stats",
    "batchnorm_forward",
    "batchnorm_infer",
    "batchnorm_backward",
    "batchnorm_backward_recursive",
    "batchnorm_running_update",
]

jit = nb.njit(cache=True)
pjit = nb.njit(cache=True, parallel=True)

#: Below this many elements the kernels run on the calling thread.  Measured on the
#: 2-core machine this library is developed on: a 512 x 1024 float32 forward + backward
#: took 0.35 ms (median) on one thread and 0.60 ms on two, and 8192 x 1024 took 14 ms and
#: 27 ms; the batch sits in the shared L3 cache or saturates memory from one core, and
#: waking the second thread (twice per step) costs more than it saves whenever anything
#: else runs.  Only batches beyond 4M elements are split over the threads.
PARALLEL_MIN = 1 << 22
#: Narrowest column block worth a thread of its own (a few cache lines per row).
MIN_COLS = 64


def _nblocks(n, d):
    if n * d < PARALLEL_MIN or d < 2 * MIN_COLS:
        return 1
    # one block per thread: narrower blocks read shorter runs of each row, and the
    # hardware prefetcher, which follows runs within a page, then helps less (measured:
    # 16 blocks of 64 columns were 2x slower than one block of 1024 on one thread)
    return max(1, min(d // MIN_COLS, nb.get_num_threads()))


# --- per-block pieces (called from both the serial and the parallel drivers) ------------


#: Rows summed in the input's own precision before the partial sums join the float64
#: totals: float32 lanes are twice as wide, and 32 terms lose nothing measurable.
CHUNK_ROWS = 32


@jit
def _block_stats(x, lo, hi, mu, var):
    """mu, var (float64, length hi - lo) of columns lo:hi in one pass over the rows."""
    n = x.shape[0]
    w = hi - lo
    k = np.empty(w, dtype=x.dtype)
    t1 = np.empty(w, dtype=x.dtype)
    t2 = np.empty(w, dtype=x.dtype)
    s1 = np.zeros(w, dtype=np.float64)
    s2 = np.zeros(w, dtype=np.float64)
    x0 = x[0, lo:hi]
    for j in range(w):
        k[j] = x0[j]
    for i0 in range(0, n, CHUNK_ROWS):
        i1 = min(i0 + CHUNK_ROWS, n)
        for j in range(w):
            t1[j] = 0
            t2[j] = 0
        i = i0
        # two rows per sweep halve the loads and stores of the partial sums; more rows
        # than two stop LLVM from vectorizing (too many pointers to check for overlap)
        while i + 2 <= i1:
            r0 = x[i, lo:hi]
            r1 = x[i + 1, lo:hi]
            for j in range(w):
                kj = k[j]
                v0 = r0[j] - kj
                v1 = r1[j] - kj
                t1[j] += v0 + v1
                t2[j] += v0 * v0 + v1 * v1
            i += 2
        if i < i1:
            xr = x[i, lo:hi]
            for j in range(w):
                v = xr[j] - k[j]
                t1[j] += v
                t2[j] += v * v
        for j in range(w):
            s1[j] += t1[j]
            s2[j] += t2[j]
    for j in range(w):
        m1 = s1[j] / n
        mu[j] = k[j] + m1
        var[j] = max(s2[j] / n - m1 * m1, 0.0)


@jit
def _block_affine(x, lo, hi, scale, shift, out):
    """out[:, lo:hi] = x[:, lo:hi] * scale + shift (per-column constants)."""
    n = x.shape[0]
    w = hi - lo
    for i in range(n):
        xr = x[i, lo:hi]
        orow = out[i, lo:hi]
        for j in range(w):
            orow[j] = xr[j] * scale[j] + shift[j]


@jit
def _fwd_block(x, gamma, beta, eps, out, mean, var, lo, hi):
    w = hi - lo
    mu = np.empty(w, dtype=np.float64)
    va = np.empty(w, dtype=np.float64)
    _block_stats(x, lo, hi, mu, va)
    scale = np.empty(w, dtype=x.dtype)
    shift = np.empty(w, dtype=x.dtype)
    for j in range(w):
        s = gamma[lo + j] / math.sqrt(va[j] + eps)
        scale[j] = s
        shift[j] = beta[lo + j] - mu[j] * s
        mean[lo + j] = mu[j]
        var[lo + j] = va[j]
    _block_affine(x, lo, hi, scale, shift, out)


@jit
def _block_gsums(g, x, lo, hi, mu64, sg, sgc):
    """sg += sum_r g, sgc += sum_r g (v - mu) over columns lo:hi (as in _block_stats)."""
    n = x.shape[0]
    w = hi - lo
    mu = np.empty(w, dtype=x.dtype)
    t1 = np.empty(w, dtype=x.dtype)
    t2 = np.empty(w, dtype=x.dtype)
    for j in range(w):
        mu[j] = mu64[j]
    for i0 in range(0, n, CHUNK_ROWS):
        i1 = min(i0 + CHUNK_ROWS, n)
        for j in range(w):
            t1[j] = 0
            t2[j] = 0
        i = i0
        while i + 2 <= i1:
            g0 = g[i, lo:hi]
            g1 = g[i + 1, lo:hi]
            x0 = x[i, lo:hi]
            x1 = x[i + 1, lo:hi]
            for j in range(w):
                a0 = g0[j]
                a1 = g1[j]
                t1[j] += a0 + a1
                t2[j] += a0 * (x0[j] - mu[j]) + a1 * (x1[j] - mu[j])
            i += 2
        if i < i1:
            gr = g[i, lo:hi]
            xr = x[i, lo:hi]
            for j in range(w):
                t1[j] += gr[j]
                t2[j] += gr[j] * (xr[j] - mu[j])
        for j in range(w):
            sg[j] += t1[j]
            sgc[j] += t2[j]


@jit
def _bwd_block(g, x, gamma, mean, var, eps, recursive, dx, dgamma, dbeta, lo, hi):
    n = x.shape[0]
    w = hi - lo
    mu = np.empty(w, dtype=np.float64)
    for j in range(w):
        mu[j] = mean[lo + j]
    sg = np.zeros(w, dtype=np.float64)  # sum_r g
    sgc = np.zeros(w, dtype=np.float64)  # sum_r g (v - mu)
    sc = np.zeros(w, dtype=np.float64)  # sum_r (v - mu), used by the recursion's dL/dmu
    if recursive:
        for i in range(n):
            gr = g[i, lo:hi]
            xr = x[i, lo:hi]
            for j in range(w):
                c = xr[j] - mu[j]
                sg[j] += gr[j]
                sgc[j] += gr[j] * c
                sc[j] += c
    else:
        _block_gsums(g, x, lo, hi, mu, sg, sgc)
    a = np.empty(w, dtype=x.dtype)
    b = np.empty(w, dtype=x.dtype)
    c0 = np.empty(w, dtype=x.dtype)
    for j in range(w):
        gam = gamma[lo + j]
        sigma2 = var[lo + j] + eps
        inv = 1.0 / math.sqrt(sigma2)
        d_beta = sg[j]
        d_gamma = sgc[j] * inv
        dbeta[lo + j] = d_beta
        dgamma[lo + j] = d_gamma
        if recursive:
            # Eq. 3.64-3.65 term by term: dL/dsigma^2, dL/dmu, then the three paths
            d_sigma2 = gam * sgc[j] * (-0.5) * sigma2 ** -1.5
            d_mu = -gam * inv * sg[j] + d_sigma2 * (-2.0 / n) * sc[j]
            bj = d_sigma2 * 2.0 / n
            a[j] = gam * inv
            b[j] = bj
            c0[j] = d_mu / n - bj * mu[j]
        else:
            # (gamma / (m sigma)) (m g - dbeta - v_hat dgamma), expanded in g and v
            aj = gam * inv
            bj = -aj * inv * d_gamma / n
            a[j] = aj
            b[j] = bj
            c0[j] = -aj * d_beta / n - bj * mu[j]
    for i in range(n):
        gr = g[i, lo:hi]
        xr = x[i, lo:hi]
        dr = dx[i, lo:hi]
        for j in range(w):
            dr[j] = a[j] * gr[j] + b[j] * xr[j] + c0[j]


# --- drivers ----------------------------------------------------------------------------


@jit
def _stats_seq(x, mean, var):
    d = x.shape[1]
    mu = np.empty(d, dtype=np.float64)
    va = np.empty(d, dtype=np.float64)
    _block_stats(x, 0, d, mu, va)
    for j in range(d):
        mean[j] = mu[j]
        var[j] = va[j]


@pjit
def _stats_par(x, mean, var, nblocks):
    d = x.shape[1]
    for c in nb.prange(nblocks):
        lo, hi = c * d // nblocks, (c + 1) * d // nblocks
        mu = np.empty(hi - lo, dtype=np.float64)
        va = np.empty(hi - lo, dtype=np.float64)
        _block_stats(x, lo, hi, mu, va)
        for j in range(hi - lo):
            mean[lo + j] = mu[j]
            var[lo + j] = va[j]


@jit
def _fwd_seq(x, gamma, beta, eps, out, mean, var):
    _fwd_block(x, gamma, beta, eps, out, mean, var, 0, x.shape[1])


@pjit
def _fwd_par(x, gamma, beta, eps, out, mean, var, nblocks):
    d = x.shape[1]
    for c in nb.prange(nblocks):
        _fwd_block(x, gamma, beta, eps, out, mean, var, c * d // nblocks, (c + 1) * d // nblocks)


@jit
def _bwd_seq(g, x, gamma, mean, var, eps, recursive, dx, dgamma, dbeta):
    _bwd_block(g, x, gamma, mean, var, eps, recursive, dx, dgamma, dbeta, 0, x.shape[1])


@pjit
def _bwd_par(g, x, gamma, mean, var, eps, recursive, dx, dgamma, dbeta, nblocks):
    d = x.shape[1]
    for c in nb.prange(nblocks):
        _bwd_block(g, x, gamma, mean, var, eps, recursive, dx, dgamma, dbeta,
                   c * d // nblocks, (c + 1) * d // nblocks)


@jit
def _infer_rows(x, scale, shift, out, r0, r1):
    d = x.shape[1]
    for i in range(r0, r1):
        xr = x[i]
        orow = out[i]
        for j in range(d):
            orow[j] = xr[j] * scale[j] + shift[j]


@pjit
def _infer_par(x, scale, shift, out, nblocks):
    n = x.shape[0]
    for c in nb.prange(nblocks):
        _infer_rows(x, scale, shift, out, c * n // nblocks, (c + 1) * n // nblocks)


# --- public kernels ---------------------------------------------------------------------


def _c(x):
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def _vec(name, v, d, dtype):
    v = np.asarray(v)
    if v.shape != (d,):
        raise ValueError(f"{name} must have shape ({d},) to match the batch's {d} units, "
                         f"got shape {v.shape}")
    return v if v.dtype == dtype and v.flags.c_contiguous else np.ascontiguousarray(v, dtype)


def _batch(name, x):
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D batch (m, d), got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    return _c(x)


def _buf(name, buf, shape, dtype):
    if buf is None:
        return np.empty(shape, dtype=dtype)
    if buf.shape != shape or buf.dtype != dtype or not buf.flags.c_contiguous:
        raise ValueError(f"{name} must be a contiguous {dtype} array of shape {shape}, "
                         f"got {buf.dtype} {buf.shape}")
    return buf


def batchnorm_stats(x):
    x = _batch("x", x)
    n, d = x.shape
    mean, var = np.empty(d, dtype=x.dtype), np.empty(d, dtype=x.dtype)
    nb_ = _nblocks(n, d)
    if nb_ > 1:
        _stats_par(x, mean, var, nb_)
    else:
        _stats_seq(x, mean, var)
    return mean, var


def batchnorm_forward(x, gamma, beta, eps, out=None):
    x = _batch("x", x)
    n, d = x.shape
    gamma, beta = _vec("gamma", gamma, d, x.dtype), _vec("beta", beta, d, x.dtype)
    out = _buf("out", out, x.shape, x.dtype)
    mean, var = np.empty(d, dtype=x.dtype), np.empty(d, dtype=x.dtype)
    nb_ = _nblocks(n, d)
    if nb_ > 1:
        _fwd_par(x, gamma, beta, float(eps), out, mean, var, nb_)
    else:
        _fwd_seq(x, gamma, beta, float(eps), out, mean, var)
    return out, mean, var


def batchnorm_infer(x, gamma, beta, mean, var, eps, out=None):
    x = _batch("x", x)
    n, d = x.shape
    gamma, beta = _vec("gamma", gamma, d, x.dtype), _vec("beta", beta, d, x.dtype)
    mean, var = _vec("mean", mean, d, np.float64), _vec("var", var, d, np.float64)
    scale64 = gamma / np.sqrt(var + eps)
    scale = scale64.astype(x.dtype)
    shift = (beta - mean * scale64).astype(x.dtype)
    out = _buf("out", out, x.shape, x.dtype)
    if n * d >= PARALLEL_MIN and n >= 2:
        _infer_par(x, scale, shift, out, min(n, 4 * nb.get_num_threads()))
    else:
        _infer_rows(x, scale, shift, out, 0, n)
    return out


def _backward(g, x, gamma, mean, var, eps, recursive, dx, dgamma, dbeta):
    x = _batch("x", x)
    g = _batch("g", g)
    if g.shape != x.shape:
        raise ValueError(f"g has shape {g.shape} but the forward input x has shape {x.shape}")
    if g.dtype != x.dtype:
        g = g.astype(x.dtype)
    n, d = x.shape
    gamma = _vec("gamma", gamma, d, x.dtype)
    mean, var = _vec("mean", mean, d, x.dtype), _vec("var", var, d, x.dtype)
    dx = _buf("dx", dx, x.shape, x.dtype)
    dgamma = _buf("dgamma", dgamma, (d,), x.dtype)
    dbeta = _buf("dbeta", dbeta, (d,), x.dtype)
    nb_ = _nblocks(n, d)
    if nb_ > 1:
        _bwd_par(g, x, gamma, mean, var, float(eps), recursive, dx, dgamma, dbeta, nb_)
    else:
        _bwd_seq(g, x, gamma, mean, var, float(eps), recursive, dx, dgamma, dbeta)
    return dx, dgamma, dbeta


def batchnorm_backward(g, x, gamma, mean, var, eps, dx=None, dgamma=None, dbeta=None):
    return _backward(g, x, gamma, mean, var, eps, False, dx, dgamma, dbeta)


def batchnorm_backward_recursive(g, x, gamma, mean, var, eps, dx=None, dgamma=None,
                                 dbeta=None):
    return _backward(g, x, gamma, mean, var, eps, True, dx, dgamma, dbeta)


def batchnorm_running_update(run_mean, run_var, mean, var, momentum, m):
    # d numbers: NumPy's vector ops are already as fast as a kernel launch would be
    keep = 1.0 - momentum
    run_mean *= keep
    run_mean += momentum * mean
    run_var *= keep
    run_var += (momentum * m / (m - 1.0)) * var


batchnorm_stats.__doc__ = "Per-unit mean and biased variance in one pass (Eqs. 3.58-3.59)."
batchnorm_forward.__doc__ = "Training forward, Eqs. 3.58-3.61, fused; returns (out, mean, var)."
batchnorm_infer.__doc__ = "Inference forward with fixed statistics (an affine map per unit)."
batchnorm_backward.__doc__ = "Closed-form backward, fused; returns (dx, dgamma, dbeta)."
batchnorm_backward_recursive.__doc__ = "Backward by Eqs. 3.62-3.65; returns (dx, dgamma, dbeta)."
batchnorm_running_update.__doc__ = "In-place exponential running averages of mean and var."
