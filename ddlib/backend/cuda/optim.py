"""numba.cuda kernels for the optimizer family: one thread per parameter, one pass.

A device flag counts non-finite gradient entries; reading it back is the only transfer.
"""

import math

import numpy as np
from numba import cuda

from .launch import grid_1d

__all__ = ["sgd_step", "momentum_step"]


@cuda.jit
def _sgd(w, g, lr, bad):
    i = cuda.grid(1)
    if i < w.size:
        gi = g[i]
        if not math.isfinite(gi):
            cuda.atomic.add(bad, 0, 1)
        w[i] -= lr * gi


@cuda.jit
def _momentum(w, v, g, lr, beta, bad):
    i = cuda.grid(1)
    if i < w.size:
        gi = g[i]
        if not math.isfinite(gi):
            cuda.atomic.add(bad, 0, 1)
        vi = beta * v[i] - lr * gi
        v[i] = vi
        w[i] += vi


def _flag():
    return cuda.to_device(np.zeros(1, dtype=np.int32))


def _f(x):
    return x.reshape(x.size)


def sgd_step(w, g, lr):
    bad = _flag()
    blocks, threads = grid_1d(w.size)
    _sgd[blocks, threads](_f(w), _f(g), w.dtype.type(lr), bad)
    return bool(bad.copy_to_host()[0])


def momentum_step(w, v, g, lr, beta):
    bad = _flag()
    t = w.dtype.type
    blocks, threads = grid_1d(w.size)
    _momentum[blocks, threads](_f(w), _f(v), _f(g), t(lr), t(beta), bad)
    return bool(bad.copy_to_host()[0])
