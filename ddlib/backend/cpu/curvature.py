"""numba kernels for curvature products; see ``numpy_ref.curvature`` for the equations.

Each kernel is one compiled pass after the same checks as the reference (shapes, float
dtypes), so a wrong argument raises before compiled code indexes anything:

* ``act_second``: one elementwise loop for sigmoid and tanh; the piecewise-linear kinds
  have f'' = 0 and return zeros without a loop;
* ``softmax_xent_hvp``: one loop over rows, each row's p . r summed in float64;
* the two batch-norm R-passes: per-unit sums over the rows (float64), then one write
  pass, column blocks split over threads for large batches as ``cpu.batchnorm`` does.

>>> import numpy as np
>>> softmax_xent_hvp(np.full((1, 2), 0.5), np.array([[1.0, -1.0]]))
array([[ 0.5, -0.5]])
"""

import math

import numba as nb
import numpy as np

from .. import checks as ck
from ..numpy_ref.core import SIGMOID, TANH, activation_code
from .batchnorm import _nblocks
from .core import PARALLEL_MIN, _chunks

__all__ = ["act_second", "softmax_xent_hvp", "batchnorm_rforward", "batchnorm_rbackward"]

jit = nb.njit(cache=True)
pjit = nb.njit(cache=True, parallel=True)


def _c(x):
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


# --- act_second -------------------------------------------------------------------------


@jit
def _act2(code, yf, gf, rf, of):
    """of = g * f''(x) * r with f'' read from y = f(x) (sigmoid or tanh only)."""
    if code == SIGMOID:
        for i in range(yf.size):
            s = yf[i]
            of[i] = gf[i] * rf[i] * ((s - s * s) * (1 - 2 * s))
    else:  # TANH
        for i in range(yf.size):
            t = yf[i]
            of[i] = gf[i] * rf[i] * (-2 * t * (1 - t * t))


@pjit
def _act2_par(code, yf, gf, rf, of, nchunks):
    n = yf.size
    for c in nb.prange(nchunks):
        lo, hi = c * n // nchunks, (c + 1) * n // nchunks
        _act2(code, yf[lo:hi], gf[lo:hi], rf[lo:hi], of[lo:hi])


def act_second(kind, x, y, g, r, alpha=0.01, out=None):
    ck.need_same_shape("act_second", "the forward input x", x, y=y, g=g, r=r, out=out)
    ck.need_float("act_second", x=x, y=y, g=g, r=r)
    ck.need_contiguous("act_second", out=out)
    code = activation_code(kind)
    if code not in (SIGMOID, TANH):  # identity, relu, leaky_relu, hardtanh: f'' = 0
        if out is None:
            return np.zeros(g.shape, dtype=g.dtype)
        out[...] = 0
        return out
    y, g, r = _c(y), _c(g), _c(r)
    if out is None:
        out = np.empty(g.shape, dtype=g.dtype)
    args = (code, y.reshape(-1), g.reshape(-1), r.reshape(-1), out.reshape(-1))
    if y.size >= PARALLEL_MIN:
        _act2_par(*args, _chunks(y.size))
    else:
        _act2(*args)
    return out


# --- softmax_xent_hvp -------------------------------------------------------------------


@jit
def _hvp_row(p, r, n, out, i):
    k = p.shape[1]
    s = 0.0
    for j in range(k):
        s += p[i, j] * r[i, j]
    for j in range(k):
        pj = p[i, j]
        out[i, j] = (pj * r[i, j] - pj * s) / n


@jit
def _hvp(p, r, out):
    n = p.shape[0]
    for i in range(n):
        _hvp_row(p, r, n, out, i)


@pjit
def _hvp_par(p, r, out):
    n = p.shape[0]
    for i in nb.prange(n):
        _hvp_row(p, r, n, out, i)


def softmax_xent_hvp(probs, r, out=None):
    ck.need_2d("softmax_xent_hvp", "probs", probs)
    ck.need_same_shape("softmax_xent_hvp", "probs", probs, r=r, out=out)
    ck.need_float("softmax_xent_hvp", probs=probs, r=r)
    probs, r = _c(probs), _c(r)
    if out is None:
        out = np.empty(probs.shape, dtype=probs.dtype)
    if probs.size >= PARALLEL_MIN and probs.shape[0] >= 2:
        _hvp_par(probs, r, out)
    else:
        _hvp(probs, r, out)
    return out


# --- batch normalization's R-passes ------------------------------------------------------
# Per-unit vectors arrive as float64 (d numbers: the cast is free), so the constants of
# each column are formed in float64 whatever the batch's dtype.


@jit
def _rfwd_block(rx, x, gamma, mean, var, eps, vgamma, vbeta, has_rx, rout, rxhat, rsigma,
                lo, hi):
    n = x.shape[0]
    w = hi - lo
    inv = np.empty(w, dtype=np.float64)
    s_r = np.zeros(w, dtype=np.float64)  # sum_r rx
    s_xr = np.zeros(w, dtype=np.float64)  # sum_r x_hat rx
    for j in range(w):
        inv[j] = 1.0 / math.sqrt(var[lo + j] + eps)
    if has_rx:
        for i in range(n):
            for j in range(w):
                xh = (x[i, lo + j] - mean[lo + j]) * inv[j]
                v = rx[i, lo + j]
                s_r[j] += v
                s_xr[j] += xh * v
    for j in range(w):  # now R{mean} and R{sigma}
        s_r[j] /= n
        s_xr[j] /= n
        rsigma[lo + j] = s_xr[j]
    for i in range(n):
        for j in range(w):
            c = lo + j
            xh = (x[i, c] - mean[c]) * inv[j]
            rh = 0.0
            if has_rx:
                rh = (rx[i, c] - s_r[j] - xh * s_xr[j]) * inv[j]
            rxhat[i, c] = rh
            rout[i, c] = gamma[c] * rh + vgamma[c] * xh + vbeta[c]


@jit
def _rfwd_seq(rx, x, gamma, mean, var, eps, vgamma, vbeta, has_rx, rout, rxhat, rsigma):
    _rfwd_block(rx, x, gamma, mean, var, eps, vgamma, vbeta, has_rx, rout, rxhat, rsigma,
                0, x.shape[1])


@pjit
def _rfwd_par(rx, x, gamma, mean, var, eps, vgamma, vbeta, has_rx, rout, rxhat, rsigma,
              nblocks):
    d = x.shape[1]
    for b in nb.prange(nblocks):
        _rfwd_block(rx, x, gamma, mean, var, eps, vgamma, vbeta, has_rx, rout, rxhat,
                    rsigma, b * d // nblocks, (b + 1) * d // nblocks)


def _need_given(who, **arrays):
    for name, a in arrays.items():
        if a is None:
            raise TypeError(f"{who}: {name} is required (an array), got None")


def _vecs64(*vs):
    return [np.ascontiguousarray(v, dtype=np.float64) for v in vs]


def batchnorm_rforward(rx, x, gamma, mean, var, eps, vgamma, vbeta):
    who = "batchnorm_rforward"
    ck.need_2d(who, "x", x)
    _need_given(who, gamma=gamma, mean=mean, var=var, vgamma=vgamma, vbeta=vbeta)
    d = x.shape[1]
    for name, a in (("gamma", gamma), ("mean", mean), ("var", var), ("vgamma", vgamma),
                    ("vbeta", vbeta)):
        ck.need_shape(who, name, a, (d,), " (one entry per unit)")
    if rx is not None:
        ck.need_same_shape(who, "x", x, rx=rx)
    ck.need_float(who, rx=rx, x=x, gamma=gamma, mean=mean, var=var, vgamma=vgamma,
                  vbeta=vbeta)
    x = _c(x)
    has_rx = rx is not None
    rx = np.ascontiguousarray(rx, dtype=x.dtype) if has_rx else x
    gamma, mean, var, vgamma, vbeta = _vecs64(gamma, mean, var, vgamma, vbeta)
    n = x.shape[0]
    rout = np.empty(x.shape, dtype=x.dtype)
    rxhat = np.empty(x.shape, dtype=x.dtype)
    rsigma = np.empty(d, dtype=x.dtype)
    args = (rx, x, gamma, mean, var, float(eps), vgamma, vbeta, has_rx, rout, rxhat, rsigma)
    nb_ = _nblocks(n, d)
    if nb_ > 1:
        _rfwd_par(*args, nb_)
    else:
        _rfwd_seq(*args)
    return rout, rxhat, rsigma


@jit
def _rbwd_block(g, rg, rxhat, rsigma, x, gamma, mean, var, eps, vgamma, rdx, rdgamma,
                rdbeta, lo, hi):
    n = x.shape[0]
    w = hi - lo
    inv = np.empty(w, dtype=np.float64)
    sg = np.zeros(w, dtype=np.float64)  # dbeta = sum_r g
    sgx = np.zeros(w, dtype=np.float64)  # dgamma = sum_r g x_hat
    srg = np.zeros(w, dtype=np.float64)  # R{dbeta} = sum_r rg
    srgx = np.zeros(w, dtype=np.float64)  # R{dgamma} = sum_r (rg x_hat + g R{x_hat})
    for j in range(w):
        inv[j] = 1.0 / math.sqrt(var[lo + j] + eps)
    for i in range(n):
        for j in range(w):
            c = lo + j
            xh = (x[i, c] - mean[c]) * inv[j]
            gv = g[i, c]
            rv = rg[i, c]
            sg[j] += gv
            sgx[j] += gv * xh
            srg[j] += rv
            srgx[j] += rv * xh + gv * rxhat[i, c]
    cc = np.empty(w, dtype=np.float64)  # c = gamma / (m sigma)
    rc = np.empty(w, dtype=np.float64)  # R{c}
    for j in range(w):
        c = lo + j
        cc[j] = gamma[c] * inv[j] / n
        rc[j] = vgamma[c] * inv[j] / n - gamma[c] * rsigma[c] * inv[j] * inv[j] / n
        rdgamma[c] = srgx[j]
        rdbeta[c] = srg[j]
    for i in range(n):
        for j in range(w):
            c = lo + j
            xh = (x[i, c] - mean[c]) * inv[j]
            rdx[i, c] = (rc[j] * (n * g[i, c] - sg[j] - xh * sgx[j])
                         + cc[j] * (n * rg[i, c] - srg[j] - rxhat[i, c] * sgx[j]
                                    - xh * srgx[j]))


@jit
def _rbwd_seq(g, rg, rxhat, rsigma, x, gamma, mean, var, eps, vgamma, rdx, rdgamma, rdbeta):
    _rbwd_block(g, rg, rxhat, rsigma, x, gamma, mean, var, eps, vgamma, rdx, rdgamma,
                rdbeta, 0, x.shape[1])


@pjit
def _rbwd_par(g, rg, rxhat, rsigma, x, gamma, mean, var, eps, vgamma, rdx, rdgamma, rdbeta,
              nblocks):
    d = x.shape[1]
    for b in nb.prange(nblocks):
        _rbwd_block(g, rg, rxhat, rsigma, x, gamma, mean, var, eps, vgamma, rdx, rdgamma,
                    rdbeta, b * d // nblocks, (b + 1) * d // nblocks)


def batchnorm_rbackward(g, rg, rxhat, rsigma, x, gamma, mean, var, eps, vgamma,
                        rdgamma=None, rdbeta=None):
    who = "batchnorm_rbackward"
    ck.need_2d(who, "x", x)
    ck.need_same_shape(who, "x", x, g=g, rg=rg, rxhat=rxhat)
    _need_given(who, g=g, rg=rg, rxhat=rxhat, rsigma=rsigma, gamma=gamma, mean=mean, var=var,
                vgamma=vgamma)
    d = x.shape[1]
    for name, a in (("rsigma", rsigma), ("gamma", gamma), ("mean", mean), ("var", var),
                    ("vgamma", vgamma), ("rdgamma", rdgamma), ("rdbeta", rdbeta)):
        ck.need_shape(who, name, a, (d,), " (one entry per unit)")
    ck.need_float(who, g=g, rg=rg, rxhat=rxhat, rsigma=rsigma, x=x, gamma=gamma, mean=mean,
                  var=var, vgamma=vgamma, rdgamma=rdgamma, rdbeta=rdbeta)
    x = _c(x)
    dt = x.dtype
    g, rg, rxhat = (np.ascontiguousarray(a, dtype=dt) for a in (g, rg, rxhat))
    rsigma, gamma, mean, var, vgamma = _vecs64(rsigma, gamma, mean, var, vgamma)
    n = x.shape[0]
    rdx = np.empty(x.shape, dtype=dt)
    if rdgamma is None:
        rdgamma = np.empty(d, dtype=dt)
    if rdbeta is None:
        rdbeta = np.empty(d, dtype=dt)
    args = (g, rg, rxhat, rsigma, x, gamma, mean, var, float(eps), vgamma, rdx, rdgamma,
            rdbeta)
    nb_ = _nblocks(n, d)
    if nb_ > 1:
        _rbwd_par(*args, nb_)
    else:
        _rbwd_seq(*args)
    return rdx, rdgamma, rdbeta


act_second.__doc__ = "g * f''(x) * r elementwise: one loop for sigmoid/tanh, zeros otherwise."
softmax_xent_hvp.__doc__ = "Softmax cross-entropy Hessian (w.r.t. scores) times r, one row pass."
batchnorm_rforward.__doc__ = "R{out}, R{x_hat}, R{sigma} of training batch norm; rx may be None."
batchnorm_rbackward.__doc__ = "R{dx}, R{dgamma}, R{dbeta} of batch norm's backward pass."
