"""numba kernels for compressed weights; see ``numpy_ref.sparse`` for the equations.

``csr_matmul`` (out = x A^T + b, A (m, d) in CSR form, rows = output units) has two
loops, chosen by the batch size:

* few rows (batch 1 is the inference case): for each output unit a dot product over its
  stored weights, gathering the inputs they read.  Serial below a few hundred thousand
  multiply-adds, where waking threads costs more than the work;
* a batch: x is copied once to its transpose (d, n) so that each stored weight a[o, j]
  adds a[o, j] * x[:, j] to the n outputs of unit o as one contiguous, vectorized loop;
  output units are split over threads (each thread owns whole rows of the result, so no
  two threads write one number).

The column numbers and row pointers are checked inside the loops as they are read (a
compare per entry, no extra pass): an entry outside [0, d) or a row whose pointers run
backwards or past the data is counted, skipped, and reported afterwards as a ValueError.

``csr_chain`` runs a whole pruned net (one CSR matrix, bias and activation per layer).
For a few rows it is one compiled call: the layers' dot products and activations in one
loop nest over two scratch vectors, with no Python between layers (at batch 1 the calls
between layers cost more than the arithmetic); for a batch it is ``csr_matmul`` and the
activation kernel layer by layer.

``hash_expand`` is one gather loop.  ``hash_reduce`` adds into k buckets; positions
that share a bucket would race if threads split them, so large inputs are cut in chunks,
each thread adds its chunks into its own row of partial sums (float64), and the rows are
added at the end.  Bucket numbers are range-checked inside the loops in the same way.

>>> import numpy as np
>>> csr_matmul(np.array([0, 1, 3]), np.array([1, 0, 2]), np.array([2.0, 1.0, -1.0]),
...            np.array([[1.0, 2.0, 3.0]]))
array([[ 4., -2.]])
"""

import numba as nb
import numpy as np

from .. import checks as ck
from ..numpy_ref.sparse import (
    chain_by_layers,
    check_buckets,
    check_chain,
    check_chain_input,
    check_csr,
    check_expand_args,
    check_reduce_args,
)
from .core import PARALLEL_MIN, _chunks, _fwd, act_forward

__all__ = ["csr_matmul", "csr_chain", "hash_expand", "hash_reduce"]

jit = nb.njit(cache=True)
pjit = nb.njit(cache=True, parallel=True)
# the per-row helpers are inlined into the serial loops: a call per output unit would pass
# six arrays (reference counts and all) to do a few dozen multiply-adds.  (The threaded
# loops call them: numba's prange reductions do not survive the inlining.)
ijit = nb.njit(inline="always")  # compiled into its callers, never on its own

#: multiply-adds below which ``csr_matmul`` stays on the calling thread
CSR_PARALLEL_MIN = 1 << 17
#: batch rows from which ``csr_matmul`` uses the transposed (vectorized) loop
CSR_BATCH_MIN = 4


def _c(x):
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


# --- csr_matmul -----------------------------------------------------------------------------


def _csr_row_dots(indptr, indices, data, x, b, out, o):
    """out[:, o] for a few batch rows: unit o's dot products; returns the bad-entry count."""
    n, d = x.shape
    nnz = data.shape[0]
    lo, hi = indptr[o], indptr[o + 1]
    bad = 0
    if lo < 0 or hi < lo or hi > nnz:
        bad = 1
        lo = hi = 0
    for i in range(n):
        xr = x[i]
        # two partial sums: one chain of dependent adds would wait on each add's latency
        s0 = b[o]
        s1 = s0 - s0
        k = lo
        while k + 1 < hi:
            j0, j1 = indices[k], indices[k + 1]
            if j0 >= 0 and j0 < d and j1 >= 0 and j1 < d:
                s0 += data[k] * xr[j0]
                s1 += data[k + 1] * xr[j1]
            else:
                bad += 1
            k += 2
        if k < hi:
            j0 = indices[k]
            if j0 >= 0 and j0 < d:
                s0 += data[k] * xr[j0]
            else:
                bad += 1
        out[i, o] = s0 + s1
    return bad


_csr_row_dots = jit(_csr_row_dots)


@jit
def _csr_dots(indptr, indices, data, x, b, out):
    # one plain loop nest: indexing x[i, j] directly (no row views, no unrolling) lets
    # LLVM keep everything in registers; measured about twice as fast at batch 1 as the
    # row-helper form the threaded loop uses
    n, d = x.shape
    nnz = data.shape[0]
    bad = 0
    for o in range(out.shape[1]):
        lo, hi = indptr[o], indptr[o + 1]
        if lo < 0 or hi < lo or hi > nnz:
            bad += 1
            lo = hi = 0
        for i in range(n):
            s = b[o]
            for k in range(lo, hi):
                j = indices[k]
                if j >= 0 and j < d:
                    s += data[k] * x[i, j]
                else:
                    bad += 1
            out[i, o] = s
    return bad


@pjit
def _csr_dots_par(indptr, indices, data, x, b, out):
    bad = 0
    for o in nb.prange(out.shape[1]):
        bad += _csr_row_dots(indptr, indices, data, x, b, out, o)
    return bad


def _csr_row_axpy(indptr, indices, data, xt, b, outt, o):
    """outt[o, :] = b[o] + sum_k data[k] * xt[indices[k], :]; returns the bad-entry count."""
    d, n = xt.shape
    nnz = data.shape[0]
    lo, hi = indptr[o], indptr[o + 1]
    bad = 0
    if lo < 0 or hi < lo or hi > nnz:
        bad = 1
        lo = hi = 0
    acc = outt[o]
    bo = b[o]
    for i in range(n):
        acc[i] = bo
    for k in range(lo, hi):
        j = indices[k]
        if j < 0 or j >= d:
            bad += 1
            continue
        v = data[k]
        xr = xt[j]
        for i in range(n):
            acc[i] += v * xr[i]
    return bad


_row_axpy_inline, _csr_row_axpy = ijit(_csr_row_axpy), jit(_csr_row_axpy)


@jit
def _csr_axpy(indptr, indices, data, xt, b, outt):
    bad = 0
    for o in range(outt.shape[0]):
        bad += _row_axpy_inline(indptr, indices, data, xt, b, outt, o)
    return bad


@pjit
def _csr_axpy_par(indptr, indices, data, xt, b, outt):
    bad = 0
    for o in nb.prange(outt.shape[0]):
        bad += _csr_row_axpy(indptr, indices, data, xt, b, outt, o)
    return bad


def csr_matmul(indptr, indices, data, x, b=None, out=None):
    who = "csr_matmul"
    n, m, d = check_csr(who, indptr, indices, data, x, b, out)
    ck.need_contiguous(who, out=out)
    nnz = data.shape[0]
    if int(indptr[0]) != 0 or int(indptr[-1]) != nnz:
        raise ValueError(f"{who}: indptr must start at 0 and end at len(data) = {nnz}, got "
                         f"{int(indptr[0])} ... {int(indptr[-1])}")
    x, indices, data, indptr = _c(x), _c(indices), _c(data), _c(indptr)
    bb = _c(b) if b is not None else np.zeros(m, dtype=x.dtype)  # m numbers: no branch inside
    if out is None:
        out = np.empty((n, m), dtype=x.dtype)
    if n == 0 or m == 0:
        bad = 0
    elif n < CSR_BATCH_MIN:
        fn = _csr_dots_par if n * nnz >= CSR_PARALLEL_MIN and m >= 2 else _csr_dots
        bad = fn(indptr, indices, data, x, bb, out)
    else:
        xt = np.ascontiguousarray(x.T)
        outt = np.empty((m, n), dtype=x.dtype)
        fn = _csr_axpy_par if n * nnz >= CSR_PARALLEL_MIN and m >= 2 else _csr_axpy
        bad = fn(indptr, indices, data, xt, bb, outt)
        out[...] = outt.T
    if bad:
        raise ValueError(f"{who}: {bad} stored entries (or rows) are out of range: indices "
                         f"must lie in [0, {d}) (columns of x) and indptr must be "
                         f"non-decreasing within [0, {nnz}]")
    return out


# --- csr_chain -------------------------------------------------------------------------------


@jit
def _chain_dots(indptr, indices, data, bias, dims, nnz, codes, alphas, x, buf0, buf1):
    """All layers for a few rows; returns (bad-entry count, the flat last activations),
    or (-count, ...) when the input holds NaN or inf (found while it is copied in).

    Every index is checked before use and then cast to unsigned: numba then drops its
    negative-index wraparound, which (measured) makes this gather loop about 1.3x faster;
    four partial sums or unrolling measured slower, not faster.
    """
    n, d0 = x.shape
    src, dst = buf0, buf1
    nonfinite = 0
    for i in range(n):
        for j in range(d0):
            v = x[i, j]
            if not np.isfinite(v):
                nonfinite += 1
            src[i * d0 + j] = v
    if nonfinite:
        return -nonfinite, src
    bad = 0
    p = 0
    z = 0
    c = 0
    for li in range(codes.shape[0]):
        d = dims[li]
        m = dims[li + 1]
        k_l = nnz[li]
        for o in range(m):
            lo, hi = indptr[p + o], indptr[p + o + 1]
            if lo < 0 or hi < lo or hi > k_l:
                bad += 1
                lo = hi = 0
            for i in range(n):
                row = i * d
                s = bias[c + o]
                for k in range(nb.uint64(z + lo), nb.uint64(z + hi)):
                    j = indices[k]
                    if j >= 0 and j < d:
                        s += data[k] * src[nb.uint64(row + j)]
                    else:
                        bad += 1
                dst[i * m + o] = s
        out = dst[:n * m]
        _fwd(codes[li], out, alphas[li], out)
        p += m + 1
        z += k_l
        c += m
        src, dst = dst, src
    return bad, src


def csr_chain(indptr, indices, data, bias, layout, x):
    who = "csr_chain"
    n = check_chain(who, indptr, indices, data, bias, layout, x)
    if n >= CSR_BATCH_MIN:
        check_chain_input(who, x)
        return chain_by_layers(csr_matmul, act_forward, indptr, indices, data, bias, layout, x)
    width = layout.max_width * max(n, 1)
    bad, res = _chain_dots(indptr, indices, data, bias, layout.dims, layout.nnz, layout.codes,
                           layout.alphas_as(x.dtype), _c(x), np.empty(width, x.dtype),
                           np.empty(width, x.dtype))
    if bad:
        if bad < 0:
            raise ValueError(f"{who}: x contains {-bad} NaN or inf value(s)")
        raise ValueError(f"{who}: {bad} stored entries (or rows) are out of range: indices "
                         "must lie in [0, inputs of their layer) and each layer's indptr must "
                         "run from 0 to its nnz without decreasing")
    return res[:n * layout.d_out].reshape(n, layout.d_out)


# --- hashing: expand and reduce --------------------------------------------------------------


@jit
def _expand(w, bucket, sign, out):
    k = w.shape[0]
    bad = 0
    for p in range(bucket.shape[0]):
        q = bucket[p]
        if q >= 0 and q < k:
            out[p] = sign[p] * w[q]
        else:
            out[p] = 0
            bad += 1
    return bad


@pjit
def _expand_par(w, bucket, sign, out, nchunks):
    n = bucket.shape[0]
    bad = 0
    for c in nb.prange(nchunks):
        lo, hi = c * n // nchunks, (c + 1) * n // nchunks
        bad += _expand(w, bucket[lo:hi], sign[lo:hi], out[lo:hi])
    return bad


def _bad_buckets(who, k):
    return ValueError(f"{who}: bucket entries must lie in [0, {k}) for {k} real weights")


def hash_expand(w, bucket, sign, out=None):
    who = "hash_expand"
    check_expand_args(who, w, bucket, sign, out)
    ck.need_contiguous(who, out=out)
    w, bucket, sign = _c(w), _c(bucket), _c(sign)
    if out is None:
        out = np.empty(bucket.shape, dtype=w.dtype)
    args = (w, bucket.reshape(-1), sign.reshape(-1), out.reshape(-1))
    if bucket.size >= PARALLEL_MIN:
        bad = _expand_par(*args, _chunks(bucket.size))
    else:
        bad = _expand(*args)
    if bad:
        check_buckets(who, bucket, w.shape[0])  # words the error with the offending value
        raise _bad_buckets(who, w.shape[0])
    return out


@jit
def _reduce_into(g, bucket, sign, acc):
    """acc[bucket[p]] += sign[p] * g[p] in float64; returns the out-of-range count."""
    k = acc.shape[0]
    bad = 0
    for p in range(bucket.shape[0]):
        q = bucket[p]
        if q >= 0 and q < k:
            acc[q] += np.float64(sign[p]) * np.float64(g[p])
        else:
            bad += 1
    return bad


@jit
def _reduce(g, bucket, sign, out):
    acc = np.zeros(out.shape[0], dtype=np.float64)
    bad = _reduce_into(g, bucket, sign, acc)
    for q in range(out.shape[0]):
        out[q] = acc[q]
    return bad


@pjit
def _reduce_par(g, bucket, sign, out, nchunks):
    n = bucket.shape[0]
    k = out.shape[0]
    part = np.zeros((nchunks, k), dtype=np.float64)  # one row of partial sums per chunk
    bad = 0
    for c in nb.prange(nchunks):
        lo, hi = c * n // nchunks, (c + 1) * n // nchunks
        bad += _reduce_into(g[lo:hi], bucket[lo:hi], sign[lo:hi], part[c])
    for q in nb.prange(k):
        s = 0.0
        for c in range(nchunks):  # a fixed order: the result does not depend on threads
            s += part[c, q]
        out[q] = s
    return bad


def hash_reduce(g, bucket, sign, k, out=None):
    who = "hash_reduce"
    k = check_reduce_args(who, g, bucket, sign, k, out)
    ck.need_contiguous(who, out=out)
    g, bucket, sign = _c(g), _c(bucket), _c(sign)
    if out is None:
        out = np.empty(k, dtype=g.dtype)
    args = (g.reshape(-1), bucket.reshape(-1), sign.reshape(-1), out)
    if bucket.size >= PARALLEL_MIN:
        # chunks of at least ~4k positions, and few enough that the partial rows
        # (nchunks x k) stay small next to the input
        nchunks = max(1, min(_chunks(bucket.size), bucket.size // max(k, 1)))
        bad = _reduce_par(*args, nchunks)
    else:
        bad = _reduce(*args)
    if bad:
        check_buckets(who, bucket, k)
        raise _bad_buckets(who, k)
    return out


csr_matmul.__doc__ = "out = x A^T (+ b) for A in CSR form (rows = output units)."
hash_expand.__doc__ = "Virtual weights sign * w[bucket] (one gather loop)."
hash_reduce.__doc__ = "gw[q] = sum of sign * g over bucket q (race-free partial sums)."
