"""numba.cuda kernels for compressed weights; see ``numpy_ref.sparse`` for the equations.

Written to be plainly correct:

* ``csr_matmul``: one thread per output entry (batch row i, unit o), summing unit o's
  stored weights times the inputs of row i they read;
* ``csr_chain``: layer by layer, ``csr_matmul`` then the activation kernel (views of the
  packed device arrays; the chain's small metadata stays on the host);
* ``hash_expand``: one thread per virtual weight (a gather);
* ``hash_reduce``: one thread per virtual weight, adding sign * g into its bucket with an
  atomic add (positions sharing a bucket would otherwise race); the order of those adds
  varies from run to run, so float32 sums may differ in their last bits.

Arguments are device arrays; index arrays may be int32 or int64.  The host wrappers check
shapes and dtypes (attribute reads) before any launch, but not the index values: reading
them would copy them to the host on every call.  The kernels never read or write outside
an array: in ``csr_matmul`` and ``hash_expand`` an output entry that an out-of-range index
would have fed is written as NaN, so a broken index array shows up in the result, and
``hash_reduce`` skips a position whose bucket is out of range.  (The host backends raise
a ValueError instead.)
"""

import math

from numba import cuda

from .. import checks as ck
from ..numpy_ref.sparse import (
    chain_by_layers,
    check_chain,
    check_csr,
    check_expand_args,
    check_reduce_args,
)
from .core import _flat, _need_device, act_forward, fill
from .launch import TPB_1D, grid_1d, grid_rows_cols

__all__ = ["csr_matmul", "csr_chain", "hash_expand", "hash_reduce"]

#: argument types for ``make ptx-check`` (codes as in tests/cuda/test_ptx.py); index
#: arrays come as int64 (L) or int32 (I)
PTX_SIGNATURES = {
    "_csr_rows": ["LLAMABM", "IIAMABM"],
    "_expand": ["ALAA", "AIAA"],
    "_reduce": ["ALAA", "AIAA"],
}


def _grid(n):
    # no wider than the work: idle threads cost real time on the simulator
    return grid_1d(n, min(TPB_1D, max(1, n)))


@cuda.jit
def _csr_rows(indptr, indices, data, x, b, has_b, out):
    o, i = cuda.grid(2)  # x along output units: a warp writes neighbouring entries of a row
    n, m = out.shape
    if i < n and o < m:
        d = x.shape[1]
        nnz = data.shape[0]
        lo = indptr[o]
        hi = indptr[o + 1]
        s = b[o] if has_b else 0.0
        ok = lo >= 0 and hi >= lo and hi <= nnz
        if ok:
            for k in range(lo, hi):
                j = indices[k]
                if j >= 0 and j < d:
                    s += data[k] * x[i, j]
                else:
                    ok = False
        out[i, o] = s if ok else math.nan


def csr_matmul(indptr, indices, data, x, b=None, out=None):
    """out = x A^T (+ b) for A in CSR form (device arrays)."""
    who = "csr_matmul"
    _need_device(who, indptr=indptr, indices=indices, data=data, x=x, b=b, out=out)
    n, m, _ = check_csr(who, indptr, indices, data, x, b, out)
    ck.need_contiguous(who, out=out)
    if out is None:
        out = cuda.device_array((n, m), dtype=x.dtype)
    if n == 0 or m == 0:
        return out
    blocks, threads = grid_rows_cols(n, m)
    has_b = b is not None
    _csr_rows[blocks, threads](indptr, indices, data, x, b if has_b else data, has_b, out)
    return out


def csr_chain(indptr, indices, data, bias, layout, x):
    """A pruned net's forward pass on the device, layer by layer (see numpy_ref.sparse)."""
    who = "csr_chain"
    _need_device(who, indptr=indptr, indices=indices, data=data, bias=bias, x=x)
    check_chain(who, indptr, indices, data, bias, layout, x)
    return chain_by_layers(csr_matmul, act_forward, indptr, indices, data, bias, layout, x)


@cuda.jit
def _expand(w, bucket, sign, out):
    p = cuda.grid(1)
    if p < bucket.size:
        q = bucket[p]
        if q >= 0 and q < w.size:
            out[p] = sign[p] * w[q]
        else:
            out[p] = math.nan


def hash_expand(w, bucket, sign, out=None):
    """Virtual weights sign * w[bucket] (device arrays)."""
    who = "hash_expand"
    _need_device(who, w=w, bucket=bucket, sign=sign, out=out)
    check_expand_args(who, w, bucket, sign, out)
    ck.need_contiguous(who, bucket=bucket, sign=sign, out=out)
    if out is None:
        out = cuda.device_array(bucket.shape, dtype=w.dtype)
    if bucket.size:
        blocks, threads = _grid(bucket.size)
        _expand[blocks, threads](w, _flat(bucket), _flat(sign), _flat(out))
    return out


@cuda.jit
def _reduce(g, bucket, sign, out):
    p = cuda.grid(1)
    if p < bucket.size:
        q = bucket[p]
        if q >= 0 and q < out.size:
            cuda.atomic.add(out, q, sign[p] * g[p])


def hash_reduce(g, bucket, sign, k, out=None):
    """gw[q] = sum of sign * g over bucket q (device arrays; atomic adds)."""
    who = "hash_reduce"
    _need_device(who, g=g, bucket=bucket, sign=sign, out=out)
    k = check_reduce_args(who, g, bucket, sign, k, out)
    ck.need_contiguous(who, g=g, bucket=bucket, sign=sign, out=out)
    if out is None:
        out = cuda.device_array(k, dtype=g.dtype)
    fill(out, 0.0)
    if bucket.size:
        blocks, threads = _grid(bucket.size)
        _reduce[blocks, threads](_flat(g), _flat(bucket), _flat(sign), out)
    return out
