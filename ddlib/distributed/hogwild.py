"""Hogwild: lock-free parallel SGD on one machine (Niu, Recht, Re and Wright, 2011).

Several threads run plain SGD on one shared weight vector at the same time, with no lock
around the reads and writes.  An update of example i reads and writes only the
coordinates where row i of X is nonzero, so on a sparse problem two threads seldom touch
the same coordinate at the same moment; when they do, one of the two writes may be lost
or computed from a slightly stale read, which SGD tolerates as a little extra noise.
No thread ever waits for another, which is where the speed comes from.

The problem here is sparse least squares, ``min_w 1/(2n) sum_i (x_i . w - y_i)^2``, with
X stored CSR.  One SGD step on example i::

    r = x_i . w - y_i            (over the nonzeros of row i)
    w[j] -= lr * r * x_ij        for every nonzero j of row i

How the threads are run: each epoch draws one permutation of the rows from the seeded
Generator and cuts it into ``threads`` contiguous blocks; block t goes to Python thread
t (``concurrent.futures.ThreadPoolExecutor``), which calls a numba kernel compiled with
``nogil=True``, so the threads run truly in parallel on one shared array.  We chose this
over numba's ``prange`` because it gives each thread an explicit list of examples in an
explicit order: with ``threads=1`` the run is exactly serial SGD in that order (a test
checks it bit for bit against a pure Python loop), and the number of threads is a
per-call argument that does not touch numba's process-wide thread setting, which the
other ddlib kernels use.  Only the races between threads make a multi-threaded run
non-deterministic.

Example::

    from ddlib.distributed import hogwild as hw
    X, y, w_true = hw.make_sparse_problem(200_000, 10_000, nnz_per_row=10, seed=0)
    w, hist = hw.hogwild(X, y, threads=2, epochs=5, lr=0.02, seed=1)
    hist["loss"]        # the loss before training and after each epoch
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba as nb
import numpy as np

from ..errors import check_int, check_positive

__all__ = ["CSR", "as_csr", "make_sparse_problem", "hogwild", "loss", "sgd_epoch"]


class CSR(NamedTuple):
    """A compressed-sparse-row matrix: row i's nonzeros are
    ``data[indptr[i]:indptr[i+1]]`` at columns ``indices[indptr[i]:indptr[i+1]]``."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple

    def to_scipy(self):
        """The same matrix as a ``scipy.sparse.csr_array`` (needs scipy)."""
        from scipy import sparse

        return sparse.csr_array((self.data, self.indices, self.indptr), shape=self.shape)


def as_csr(X):
    """A ``CSR`` of float64 data and int64 indices from a ``CSR`` or any scipy sparse
    matrix or array (converted with ``tocsr()``); checked for consistency."""
    if hasattr(X, "tocsr") and not isinstance(X, CSR):
        X = X.tocsr()
    try:
        data, indices, indptr, shape = X.data, X.indices, X.indptr, tuple(X.shape)
    except AttributeError:
        raise TypeError(f"X must be a CSR matrix (ddlib CSR or scipy.sparse), got "
                        f"{type(X).__name__}") from None
    if len(shape) != 2:
        raise ValueError(f"X must be 2-D, got shape {shape}")
    n, d = (int(s) for s in shape)
    data = np.ascontiguousarray(data, dtype=np.float64)
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    if indptr.shape != (n + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise ValueError(f"X.indptr must be {n + 1} non-decreasing offsets from 0")
    if indptr[-1] != data.size or indices.size != data.size:
        raise ValueError(f"X has {data.size} values, {indices.size} column indices and "
                         f"indptr[-1]={indptr[-1]}; they must agree")
    if indices.size and (indices.min() < 0 or indices.max() >= d):
        raise ValueError(f"X.indices must lie in [0, {d}), got [{indices.min()}, "
                         f"{indices.max()}]")
    if not np.all(np.isfinite(data)):
        raise ValueError("X contains non-finite values (NaN or inf)")
    return CSR(data, indices, indptr, (n, d))


def make_sparse_problem(n=200_000, d=10_000, nnz_per_row=10, noise=0.1, seed=0):
    """(X, y, w_true): a random sparse least-squares problem.

    Each row has ``nnz_per_row`` distinct columns drawn uniformly, with N(0, 1) values;
    ``y = X w_true + noise * N(0, 1)`` with ``w_true ~ N(0, 1)``.  X is a ``CSR``.
    """
    n = check_int("n", n)
    d = check_int("d", d)
    k = check_int("nnz_per_row", nnz_per_row)
    if k > d:
        raise ValueError(f"nnz_per_row={k} exceeds d={d}")
    noise = check_positive("noise", noise, allow_zero=True)
    rng = np.random.default_rng(seed)
    cols = np.sort(rng.integers(0, d, size=(n, k)), axis=1)
    # redraw the rows that got a column twice (few for k << d) until none is left
    while True:
        bad = np.nonzero(np.any(np.diff(cols, axis=1) == 0, axis=1))[0]
        if bad.size == 0:
            break
        cols[bad] = np.sort(rng.integers(0, d, size=(bad.size, k)), axis=1)
    data = rng.standard_normal(n * k)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    X = CSR(data, cols.ravel(), indptr, (n, d))
    w_true = rng.standard_normal(d)
    y = _matvec(X.data, X.indices, X.indptr, w_true) + noise * rng.standard_normal(n)
    return X, y, w_true


@nb.njit(cache=True, nogil=True)
def _matvec(data, indices, indptr, w):
    n = indptr.size - 1
    out = np.empty(n)
    for i in range(n):
        s = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            s += data[p] * w[indices[p]]
        out[i] = s
    return out


@nb.njit(cache=True, nogil=True)
def _loss(data, indices, indptr, y, w):
    n = indptr.size - 1
    total = 0.0
    for i in range(n):
        s = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            s += data[p] * w[indices[p]]
        r = s - y[i]
        total += r * r
    return 0.5 * total / n


@nb.njit(cache=True, nogil=True)
def _sgd_rows(data, indices, indptr, y, w, rows, lr):
    """Serial SGD over ``rows`` in order, writing into the shared ``w`` with no lock."""
    for t in range(rows.size):
        i = rows[t]
        s = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            s += data[p] * w[indices[p]]
        g = lr * (s - y[i])
        for p in range(indptr[i], indptr[i + 1]):
            w[indices[p]] -= g * data[p]


def loss(X, y, w):
    """The least-squares loss ``1/(2n) sum_i (x_i . w - y_i)^2``."""
    X = as_csr(X)
    return float(_loss(X.data, X.indices, X.indptr, np.asarray(y, np.float64),
                       np.asarray(w, np.float64)))


def sgd_epoch(X, y, w, rows, lr):
    """One serial pass of SGD over ``rows`` (in that order), updating ``w`` in place."""
    X = as_csr(X)
    _sgd_rows(X.data, X.indices, X.indptr, np.asarray(y, np.float64), w,
              np.ascontiguousarray(rows, dtype=np.int64), float(lr))
    return w


def _check_y(y, n):
    y = np.ascontiguousarray(y, dtype=np.float64)
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X's rows, got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains non-finite values (NaN or inf)")
    return y


def hogwild(X, y, threads=2, epochs=5, lr=0.01, seed=0, w0=None, target_loss=None):
    """Lock-free parallel SGD on sparse least squares; returns ``(w, history)``.

    X: (n, d) CSR (``CSR`` or scipy sparse); y: (n,); ``threads`` threads share one
    weight vector (initially ``w0``, default zeros) with no locks.  Each epoch the rows
    are permuted by ``numpy.random.default_rng(seed)`` and cut into ``threads``
    contiguous blocks, one per thread.  ``target_loss``: stop after the first epoch whose
    loss is at or below it.  ``history`` holds ``loss`` (before training and after each
    epoch, float64 array) and ``seconds`` (training time up to the end of each epoch,
    the loss evaluations left out) and ``cpu_seconds`` (the process's CPU time over the
    same spans: about ``threads`` times ``seconds`` when every thread had a core).  With ``threads=1`` this is exactly serial SGD.
    """
    X = as_csr(X)
    n, d = X.shape
    y = _check_y(y, n)
    threads = check_int("threads", threads)
    epochs = check_int("epochs", epochs)
    lr = check_positive("lr", lr)
    if target_loss is not None:
        target_loss = check_positive("target_loss", target_loss, allow_zero=True)
    if w0 is None:
        w = np.zeros(d)
    else:
        w = np.array(w0, dtype=np.float64)       # a copy: the caller's array is not touched
        if w.shape != (d,):
            raise ValueError(f"w0 must have shape ({d},), got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("w0 contains non-finite values (NaN or inf)")
    rng = np.random.default_rng(seed)
    args = (X.data, X.indices, X.indptr, y)
    losses = [float(_loss(*args, w))]
    seconds, cpu_seconds = [], []
    spent = cpu = 0.0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for epoch in range(epochs):
            blocks = np.array_split(rng.permutation(n), threads)
            t0, c0 = time.perf_counter(), time.process_time()
            if threads == 1:
                _sgd_rows(*args, w, blocks[0], lr)
            else:
                futures = [pool.submit(_sgd_rows, *args, w, b, lr) for b in blocks]
                for f in futures:
                    f.result()
            spent += time.perf_counter() - t0
            cpu += time.process_time() - c0
            seconds.append(spent)
            cpu_seconds.append(cpu)
            losses.append(float(_loss(*args, w)))
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"hogwild diverged in epoch {epoch + 1} "
                                         f"(loss {losses[-1]}); lower lr={lr}")
            if target_loss is not None and losses[-1] <= target_loss:
                break
    return w, dict(loss=np.array(losses), seconds=np.array(seconds),
                   cpu_seconds=np.array(cpu_seconds))
