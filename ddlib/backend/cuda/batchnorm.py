"""numba.cuda kernels for batch normalization; see ``numpy_ref.batchnorm`` for the equations.

One block owns a strip of up to 32 units (columns) and every example (row) of the batch,
so the statistics and the per-unit sums of the backward pass never leave the block: its
threads stride down the rows (adjacent threads read adjacent columns, so the loads are
coalesced), reduce their partial sums in shared memory, then the same block writes the
output.  Forward and backward are one launch each; partial sums are kept in float64.
"""

import math

import numpy as np
from numba import cuda, float64

from .. import checks as ck
from .launch import TPB_1D, grid_1d

__all__ = [
    "batchnorm_stats",
    "batchnorm_forward",
    "batchnorm_infer",
    "batchnorm_backward",
    "batchnorm_backward_recursive",
    "batchnorm_running_update",
]

BX = 32  # units per block (one warp wide, for coalescing)
BY = 8  # row strides per block


def _blocks(n, d):
    """(grid, block) for a strip-per-block launch; small batches get small blocks (this
    matters on the simulator, where every thread is a Python thread)."""
    bx, by = min(BX, d), min(BY, n)
    return ((d + bx - 1) // bx,), (bx, by)


@cuda.jit(device=True)
def _strip_stats(x, j, tx, ty, s1, s2, res):
    """Block-wide one-pass mean and biased variance of column j -> res[0, tx], res[1, tx]."""
    n, d = x.shape
    a = 0.0
    b = 0.0
    k = 0.0
    if j < d:
        k = x[0, j]
        for i in range(ty, n, cuda.blockDim.y):
            v = x[i, j] - k
            a += v
            b += v * v
    s1[ty, tx] = a
    s2[ty, tx] = b
    cuda.syncthreads()
    if ty == 0:
        a = 0.0
        b = 0.0
        for r in range(cuda.blockDim.y):
            a += s1[r, tx]
            b += s2[r, tx]
        m1 = a / n
        res[0, tx] = k + m1
        res[1, tx] = max(b / n - m1 * m1, 0.0)
    cuda.syncthreads()


@cuda.jit
def _stats(x, mean, var):
    s1 = cuda.shared.array((BY, BX), float64)
    s2 = cuda.shared.array((BY, BX), float64)
    res = cuda.shared.array((2, BX), float64)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    j = cuda.blockIdx.x * cuda.blockDim.x + tx
    _strip_stats(x, j, tx, ty, s1, s2, res)
    if ty == 0 and j < x.shape[1]:
        mean[j] = res[0, tx]
        var[j] = res[1, tx]


@cuda.jit
def _forward(x, gamma, beta, eps, out, mean, var):
    s1 = cuda.shared.array((BY, BX), float64)
    s2 = cuda.shared.array((BY, BX), float64)
    res = cuda.shared.array((2, BX), float64)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    j = cuda.blockIdx.x * cuda.blockDim.x + tx
    n, d = x.shape
    _strip_stats(x, j, tx, ty, s1, s2, res)
    if j < d:
        mu = res[0, tx]
        va = res[1, tx]
        if ty == 0:
            mean[j] = mu
            var[j] = va
        scale = gamma[j] / math.sqrt(va + eps)
        shift = beta[j] - mu * scale
        for i in range(ty, n, cuda.blockDim.y):
            out[i, j] = x[i, j] * scale + shift


@cuda.jit
def _backward(g, x, gamma, mean, var, eps, recursive, dx, dgamma, dbeta):
    s1 = cuda.shared.array((BY, BX), float64)
    s2 = cuda.shared.array((BY, BX), float64)
    s3 = cuda.shared.array((BY, BX), float64)
    coef = cuda.shared.array((3, BX), float64)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    j = cuda.blockIdx.x * cuda.blockDim.x + tx
    n, d = x.shape
    sg = 0.0
    sgc = 0.0
    sc = 0.0
    mu = 0.0
    if j < d:
        mu = mean[j]
        for i in range(ty, n, cuda.blockDim.y):
            c = x[i, j] - mu
            gv = g[i, j]
            sg += gv
            sgc += gv * c
            sc += c
    s1[ty, tx] = sg
    s2[ty, tx] = sgc
    s3[ty, tx] = sc
    cuda.syncthreads()
    if ty == 0 and j < d:
        sg = 0.0
        sgc = 0.0
        sc = 0.0
        for r in range(cuda.blockDim.y):
            sg += s1[r, tx]
            sgc += s2[r, tx]
            sc += s3[r, tx]
        gam = gamma[j]
        sigma2 = var[j] + eps
        inv = 1.0 / math.sqrt(sigma2)
        d_gamma = sgc * inv
        dbeta[j] = sg
        dgamma[j] = d_gamma
        if recursive:
            # dL/dsigma^2 and dL/dmu as in the chapter, then Eq. 3.65
            d_sigma2 = gam * sgc * (-0.5) / (sigma2 * math.sqrt(sigma2))
            d_mu = -gam * inv * sg + d_sigma2 * (-2.0 / n) * sc
            b = d_sigma2 * 2.0 / n
            coef[0, tx] = gam * inv
            coef[1, tx] = b
            coef[2, tx] = d_mu / n - b * mu
        else:
            a = gam * inv
            b = -a * inv * d_gamma / n
            coef[0, tx] = a
            coef[1, tx] = b
            coef[2, tx] = -a * sg / n - b * mu
    cuda.syncthreads()
    if j < d:
        a = coef[0, tx]
        b = coef[1, tx]
        c0 = coef[2, tx]
        for i in range(ty, n, cuda.blockDim.y):
            dx[i, j] = a * g[i, j] + b * x[i, j] + c0


@cuda.jit
def _infer(x, gamma, beta, mean, var, eps, out):
    j, i = cuda.grid(2)  # x along columns: a warp reads one row (coalesced)
    if i < x.shape[0] and j < x.shape[1]:
        scale = gamma[j] / math.sqrt(var[j] + eps)
        out[i, j] = (x[i, j] - mean[j]) * scale + beta[j]


@cuda.jit
def _running(run_mean, run_var, mean, var, momentum, unbias):
    j = cuda.grid(1)
    if j < run_mean.size:
        keep = 1.0 - momentum
        run_mean[j] = keep * run_mean[j] + momentum * mean[j]
        run_var[j] = keep * run_var[j] + momentum * var[j] * unbias


# --- public kernels ---------------------------------------------------------------------


def _batch(name, x):
    if len(x.shape) != 2:
        raise ValueError(f"{name} must be a 2-D batch (m, d), got shape {tuple(x.shape)}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    return x


def _vec(name, v, d):
    if tuple(v.shape) != (d,):
        raise ValueError(f"{name} must have shape ({d},) to match the batch's {d} units, "
                         f"got shape {tuple(v.shape)}")
    return v


def _out(buf, shape, dtype, name="out"):
    if buf is None:
        return cuda.device_array(shape, dtype=dtype)
    ck.need_shape("batchnorm", name, buf, shape)
    ck.need_dtype("batchnorm", name, buf, dtype)
    return buf


def batchnorm_stats(x):
    x = _batch("x", x)
    n, d = x.shape
    mean, var = cuda.device_array(d, x.dtype), cuda.device_array(d, x.dtype)
    grid, block = _blocks(n, d)
    _stats[grid, block](x, mean, var)
    return mean, var


def batchnorm_forward(x, gamma, beta, eps, out=None):
    x = _batch("x", x)
    n, d = x.shape
    _vec("gamma", gamma, d), _vec("beta", beta, d)
    out = _out(out, (n, d), x.dtype)
    mean, var = cuda.device_array(d, x.dtype), cuda.device_array(d, x.dtype)
    grid, block = _blocks(n, d)
    _forward[grid, block](x, gamma, beta, float(eps), out, mean, var)
    return out, mean, var


def batchnorm_infer(x, gamma, beta, mean, var, eps, out=None):
    x = _batch("x", x)
    n, d = x.shape
    for name, v in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)):
        _vec(name, v, d)
    out = _out(out, (n, d), x.dtype)
    by, bx = min(8, n), min(32, d)
    _infer[((d + bx - 1) // bx, (n + by - 1) // by), (bx, by)](
        x, gamma, beta, mean, var, float(eps), out)
    return out


def _bwd(g, x, gamma, mean, var, eps, recursive, dx, dgamma, dbeta):
    x, g = _batch("x", x), _batch("g", g)
    if tuple(g.shape) != tuple(x.shape):
        raise ValueError(f"g has shape {tuple(g.shape)} but the forward input x has shape "
                         f"{tuple(x.shape)}")
    n, d = x.shape
    for name, v in (("gamma", gamma), ("mean", mean), ("var", var)):
        _vec(name, v, d)
    dx = _out(dx, (n, d), x.dtype, "dx")
    dgamma = _out(dgamma, (d,), x.dtype, "dgamma")
    dbeta = _out(dbeta, (d,), x.dtype, "dbeta")
    grid, block = _blocks(n, d)
    _backward[grid, block](g, x, gamma, mean, var, float(eps), recursive, dx, dgamma, dbeta)
    return dx, dgamma, dbeta


def batchnorm_backward(g, x, gamma, mean, var, eps, dx=None, dgamma=None, dbeta=None):
    return _bwd(g, x, gamma, mean, var, eps, 0, dx, dgamma, dbeta)


def batchnorm_backward_recursive(g, x, gamma, mean, var, eps, dx=None, dgamma=None,
                                 dbeta=None):
    return _bwd(g, x, gamma, mean, var, eps, 1, dx, dgamma, dbeta)


def batchnorm_running_update(run_mean, run_var, mean, var, momentum, m):
    ck.need_same_shape("batchnorm_running_update", "run_mean", run_mean, run_var=run_var,
                       mean=mean, var=var)
    # no wider than the vector: idle threads cost real time on the simulator
    blocks, threads = grid_1d(run_mean.size, min(TPB_1D, max(1, run_mean.size)))
    _running[blocks, threads](run_mean, run_var, mean, var, float(momentum),
                              float(m) / (m - 1.0))


batchnorm_stats.__doc__ = "Per-unit mean and biased variance in one pass (Eqs. 3.58-3.59)."
batchnorm_forward.__doc__ = "Training forward, Eqs. 3.58-3.61, one launch; (out, mean, var)."
batchnorm_infer.__doc__ = "Inference forward with fixed statistics (an affine map per unit)."
batchnorm_backward.__doc__ = "Closed-form backward, one launch; returns (dx, dgamma, dbeta)."
batchnorm_backward_recursive.__doc__ = "Backward by Eqs. 3.62-3.65; returns (dx, dgamma, dbeta)."
batchnorm_running_update.__doc__ = "In-place exponential running averages of mean and var."
