"""Single-pass numba kernels for the optimizer family (see ``numpy_ref.optim``)."""

import math

import numba as nb

__all__ = ["sgd_step", "momentum_step"]

pjit = nb.njit(cache=True, parallel=True)


@pjit
def _sgd(w, g, lr):
    wf = w.reshape(-1)
    gf = g.reshape(-1)
    bad = 0
    for i in nb.prange(wf.size):
        gi = gf[i]
        if not math.isfinite(gi):
            bad += 1
        wf[i] -= lr * gi
    return bad


@pjit
def _momentum(w, v, g, lr, beta):
    wf = w.reshape(-1)
    vf = v.reshape(-1)
    gf = g.reshape(-1)
    bad = 0
    for i in nb.prange(wf.size):
        gi = gf[i]
        if not math.isfinite(gi):
            bad += 1
        vi = beta * vf[i] - lr * gi
        vf[i] = vi
        wf[i] += vi
    return bad


def sgd_step(w, g, lr):
    return _sgd(w, g, w.dtype.type(lr)) > 0


def momentum_step(w, v, g, lr, beta):
    t = w.dtype.type
    return _momentum(w, v, g, t(lr), t(beta)) > 0
