"""numba.cuda kernels for curvature products; see ``numpy_ref.curvature`` for the equations.

These run once per Hessian-vector product, not once per step, so they are written to be
plainly correct rather than fast:

* ``act_second``: one thread per element (sigmoid, tanh); the piecewise-linear kinds have
  f'' = 0 and get a filled array without a kernel of their own;
* ``softmax_xent_hvp``: one thread per row (rows are as short as the number of classes);
* the batch-norm R-passes: one thread per unit (column) walking down the rows, its sums in
  float64.  Neighbouring threads read neighbouring columns of a row, so loads coalesce.

Arguments and results are device arrays, all of one float dtype; the wrappers check
shapes and dtypes on the host (attribute reads only) before any launch.
"""

import math

from numba import cuda

from .. import checks as ck
from ..numpy_ref.core import SIGMOID, TANH, activation_code
from .core import _flat, _need_device, _need_float, fill
from .launch import TPB_1D, grid_1d

__all__ = ["act_second", "softmax_xent_hvp", "batchnorm_rforward", "batchnorm_rbackward"]

#: argument types for ``make ptx-check`` (codes as in tests/cuda/test_ptx.py)
PTX_SIGNATURES = {
    "_act2": "iAAAA",
    "_hvp_rows": "MMdM",
    "_rforward": "MMAAAdAABMMA",
    "_rbackward": "MMMAMAAAdAMAA",
}


def _grid(n):
    # no wider than the work: idle threads cost real time on the simulator
    return grid_1d(n, min(TPB_1D, max(1, n)))


@cuda.jit
def _act2(code, y, g, r, out):
    i = cuda.grid(1)
    if i < y.size:
        v = y[i]
        if code == SIGMOID:
            d2 = v * (1.0 - v) * (1.0 - 2.0 * v)
        else:  # TANH
            d2 = -2.0 * v * (1.0 - v * v)
        out[i] = g[i] * r[i] * d2


def act_second(kind, x, y, g, r, alpha=0.01, out=None):
    """g * f''(x) * r elementwise (device arrays)."""
    who = "act_second"
    code = activation_code(kind)
    _need_device(who, x=x, y=y, g=g, r=r, out=out)
    ck.need_same_shape(who, "the forward input x", x, y=y, g=g, r=r, out=out)
    _need_float(who, g, x, y, r, out)
    ck.need_contiguous(who, y=y, g=g, r=r, out=out)
    if out is None:
        out = cuda.device_array(g.shape, dtype=g.dtype)
    if code not in (SIGMOID, TANH):  # identity, relu, leaky_relu, hardtanh: f'' = 0
        return fill(out, 0.0)
    blocks, threads = _grid(y.size)
    _act2[blocks, threads](code, _flat(y), _flat(g), _flat(r), _flat(out))
    return out


@cuda.jit
def _hvp_rows(p, r, n, out):
    i = cuda.grid(1)
    if i < p.shape[0]:
        s = 0.0
        for j in range(p.shape[1]):
            s += p[i, j] * r[i, j]
        for j in range(p.shape[1]):
            pj = p[i, j]
            out[i, j] = (pj * r[i, j] - pj * s) / n


def softmax_xent_hvp(probs, r, out=None):
    """(diag(p) - p p^T) r / n row by row (device arrays)."""
    who = "softmax_xent_hvp"
    _need_device(who, probs=probs, r=r, out=out)
    ck.need_2d(who, "probs", probs)
    ck.need_same_shape(who, "probs", probs, r=r, out=out)
    _need_float(who, probs, r, out)
    if out is None:
        out = cuda.device_array(probs.shape, dtype=probs.dtype)
    n = probs.shape[0]
    blocks, threads = _grid(n)
    _hvp_rows[blocks, threads](probs, r, float(n), out)
    return out


@cuda.jit
def _rforward(rx, x, gamma, mean, var, eps, vgamma, vbeta, has_rx, rout, rxhat, rsigma):
    j = cuda.grid(1)
    n, d = x.shape
    if j < d:
        mu = mean[j]
        inv = 1.0 / math.sqrt(var[j] + eps)
        rmean = 0.0
        rsig = 0.0
        if has_rx:
            for i in range(n):
                v = rx[i, j]
                rmean += v
                rsig += (x[i, j] - mu) * inv * v
            rmean /= n
            rsig /= n
        rsigma[j] = rsig
        gam = gamma[j]
        vg = vgamma[j]
        vb = vbeta[j]
        for i in range(n):
            xh = (x[i, j] - mu) * inv
            rh = 0.0
            if has_rx:
                rh = (rx[i, j] - rmean - xh * rsig) * inv
            rxhat[i, j] = rh
            rout[i, j] = gam * rh + vg * xh + vb


def _need_given(who, **arrays):
    for name, a in arrays.items():
        if a is None:
            raise TypeError(f"{who}: {name} is required (an array), got None")


def batchnorm_rforward(rx, x, gamma, mean, var, eps, vgamma, vbeta):
    """(R{out}, R{x_hat}, R{sigma}) of training batch norm; ``rx`` may be None."""
    who = "batchnorm_rforward"
    _need_given(who, x=x, gamma=gamma, mean=mean, var=var, vgamma=vgamma, vbeta=vbeta)
    _need_device(who, rx=rx, x=x, gamma=gamma, mean=mean, var=var, vgamma=vgamma,
                 vbeta=vbeta)
    ck.need_2d(who, "x", x)
    n, d = x.shape
    for name, a in (("gamma", gamma), ("mean", mean), ("var", var), ("vgamma", vgamma),
                    ("vbeta", vbeta)):
        ck.need_shape(who, name, a, (d,), " (one entry per unit)")
    ck.need_same_shape(who, "x", x, rx=rx)
    _need_float(who, x, rx, gamma, mean, var, vgamma, vbeta)
    rout = cuda.device_array((n, d), dtype=x.dtype)
    rxhat = cuda.device_array((n, d), dtype=x.dtype)
    rsigma = cuda.device_array(d, dtype=x.dtype)
    blocks, threads = _grid(d)
    has_rx = rx is not None
    _rforward[blocks, threads](rx if has_rx else x, x, gamma, mean, var, float(eps), vgamma,
                               vbeta, has_rx, rout, rxhat, rsigma)
    return rout, rxhat, rsigma


@cuda.jit
def _rbackward(g, rg, rxhat, rsigma, x, gamma, mean, var, eps, vgamma, rdx, rdgamma,
               rdbeta):
    j = cuda.grid(1)
    n, d = x.shape
    if j < d:
        mu = mean[j]
        inv = 1.0 / math.sqrt(var[j] + eps)
        sg = 0.0  # dbeta
        sgx = 0.0  # dgamma
        srg = 0.0  # R{dbeta}
        srgx = 0.0  # R{dgamma}
        for i in range(n):
            xh = (x[i, j] - mu) * inv
            gv = g[i, j]
            rv = rg[i, j]
            sg += gv
            sgx += gv * xh
            srg += rv
            srgx += rv * xh + gv * rxhat[i, j]
        rdgamma[j] = srgx
        rdbeta[j] = srg
        c = gamma[j] * inv / n
        rc = vgamma[j] * inv / n - gamma[j] * rsigma[j] * inv * inv / n
        for i in range(n):
            xh = (x[i, j] - mu) * inv
            rdx[i, j] = (rc * (n * g[i, j] - sg - xh * sgx)
                         + c * (n * rg[i, j] - srg - rxhat[i, j] * sgx - xh * srgx))


def batchnorm_rbackward(g, rg, rxhat, rsigma, x, gamma, mean, var, eps, vgamma,
                        rdgamma=None, rdbeta=None):
    """(R{dx}, R{dgamma}, R{dbeta}); ``rdgamma``/``rdbeta`` may be (d,) device buffers."""
    who = "batchnorm_rbackward"
    _need_given(who, g=g, rg=rg, rxhat=rxhat, rsigma=rsigma, x=x, gamma=gamma, mean=mean,
                var=var, vgamma=vgamma)
    _need_device(who, g=g, rg=rg, rxhat=rxhat, rsigma=rsigma, x=x, gamma=gamma, mean=mean,
                 var=var, vgamma=vgamma, rdgamma=rdgamma, rdbeta=rdbeta)
    ck.need_2d(who, "x", x)
    ck.need_same_shape(who, "x", x, g=g, rg=rg, rxhat=rxhat)
    n, d = x.shape
    for name, a in (("rsigma", rsigma), ("gamma", gamma), ("mean", mean), ("var", var),
                    ("vgamma", vgamma), ("rdgamma", rdgamma), ("rdbeta", rdbeta)):
        ck.need_shape(who, name, a, (d,), " (one entry per unit)")
    _need_float(who, x, g, rg, rxhat, rsigma, gamma, mean, var, vgamma, rdgamma, rdbeta)
    rdx = cuda.device_array((n, d), dtype=x.dtype)
    if rdgamma is None:
        rdgamma = cuda.device_array(d, dtype=x.dtype)
    if rdbeta is None:
        rdbeta = cuda.device_array(d, dtype=x.dtype)
    blocks, threads = _grid(d)
    _rbackward[blocks, threads](g, rg, rxhat, rsigma, x, gamma, mean, var, float(eps), vgamma,
                                rdx, rdgamma, rdbeta)
    return rdx, rdgamma, rdbeta
