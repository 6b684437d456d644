"""numba.cuda kernels for the optimizer family: one thread per parameter, one pass.

Equations in ``numpy_ref.optim``.  An entry whose gradient is NaN/inf is left untouched;
a device counter records how many there were, and reading it back is the only transfer.
"""

import math

import numpy as np
from numba import cuda, float64

from .core import block_sum, fill
from .launch import TPB_1D, grid_1d

__all__ = [
    "sgd_step",
    "momentum_step",
    "nesterov_step",
    "delta_bar_delta_step",
    "adagrad_step",
    "rmsprop_step",
    "rmsprop_nesterov_step",
    "adadelta_step",
    "adam_step",
    "clip_value",
    "sum_squares",
    "scale_inplace",
    "clip_value_device",
    "clip_norm_device",
    "ema_update",
]


@cuda.jit
def _sgd(w, g, lr, bad):
    i = cuda.grid(1)
    if i < w.size:
        gi = g[i]
        if math.isfinite(gi):
            w[i] -= lr * gi
        else:
            cuda.atomic.add(bad, 0, 1)


@cuda.jit
def _momentum(w, v, g, lr, beta, p, write_p, bad):
    i = cuda.grid(1)
    if i < w.size:
        gi = g[i]
        if math.isfinite(gi):
            vi = beta * v[i] - lr * gi
            wi = w[i] + vi
            v[i] = vi
            w[i] = wi
            if write_p:
                p[i] = wi + beta * vi
        else:
            cuda.atomic.add(bad, 0, 1)


@cuda.jit
def _delta_bar_delta(w, bar, gain, g, lr, kappa, keep, theta, one_m_theta, bad):
    i = cuda.grid(1)
    if i < w.size:
        gi = g[i]
        if math.isfinite(gi):
            bi = bar[i]
            ki = gain[i]
            agree = bi * gi
            if agree > 0:
                ki = ki + kappa
            elif agree < 0:
                ki = keep * ki
            gain[i] = ki
            w[i] -= lr * ki * gi
            bar[i] = one_m_theta * gi + theta * bi
        else:
            cuda.atomic.add(bad, 0, 1)


@cuda.jit
def _adagrad(w, a, g, lr, eps, bad):
    i = cuda.grid(1)
    if i < w.size:
        gi = g[i]
        if math.isfinite(gi):
            ai = a[i] + gi * gi
            a[i] = ai
            w[i] -= lr * gi / (math.sqrt(ai) + eps)
        else:
            cuda.atomic.add(bad, 0, 1)


@cuda.jit
def _rmsprop(w, a, g, lr, rho, one_m_rho, eps, bad):
    i = cuda.grid(1)
    if i < w.size:
        gi = g[i]
        if math.isfinite(gi):
            ai = rho * a[i] + one_m_rho * gi * gi
            a[i] = ai
            w[i] -= lr * gi / (math.sqrt(ai) + eps)
        else:
            cuda.atomic.add(bad, 0, 1)


@cuda.jit
def _rmsprop_nesterov(w, v, a, g, lr, beta, rho, one_m_rho, eps, p, write_p, bad):
    i = cuda.grid(1)
    if i < w.size:
        gi = g[i]
        if math.isfinite(gi):
            ai = rho * a[i] + one_m_rho * gi * gi
            vi = beta * v[i] - lr * gi / (math.sqrt(ai) + eps)
            wi = w[i] + vi
            a[i] = ai
            v[i] = vi
            w[i] = wi
            if write_p:
                p[i] = wi + beta * vi
        else:
            cuda.atomic.add(bad, 0, 1)


@cuda.jit
def _adadelta(w, a, d, g, lr, rho, one_m_rho, eps, bad):
    i = cuda.grid(1)
    if i < w.size:
        gi = g[i]
        if math.isfinite(gi):
            ai = rho * a[i] + one_m_rho * gi * gi
            di = d[i]
            dw = -math.sqrt(di + eps) / math.sqrt(ai + eps) * gi
            a[i] = ai
            d[i] = rho * di + one_m_rho * dw * dw
            w[i] += lr * dw
        else:
            cuda.atomic.add(bad, 0, 1)


@cuda.jit
def _adam(w, f, a, g, lr_t, rho_f, one_m_rho_f, rho, one_m_rho, eps, bad):
    i = cuda.grid(1)
    if i < w.size:
        gi = g[i]
        if math.isfinite(gi):
            ai = rho * a[i] + one_m_rho * gi * gi
            fi = rho_f * f[i] + one_m_rho_f * gi
            a[i] = ai
            f[i] = fi
            w[i] -= lr_t * fi / (math.sqrt(ai) + eps)
        else:
            cuda.atomic.add(bad, 0, 1)


@cuda.jit
def _clip_value(g, lo, hi, counts):
    i = cuda.grid(1)
    if i < g.size:
        gi = g[i]
        if not math.isfinite(gi):
            cuda.atomic.add(counts, 1, 1)
        elif gi > hi:
            g[i] = hi
            cuda.atomic.add(counts, 0, 1)
        elif gi < lo:
            g[i] = lo
            cuda.atomic.add(counts, 0, 1)


@cuda.jit
def _sum_squares(g, out):
    # a tree sum in shared memory per block, then one atomic add per block
    buf = cuda.shared.array(TPB_1D, float64)
    i = cuda.grid(1)
    t = cuda.threadIdx.x
    x = float64(g[i]) if i < g.size else 0.0
    buf[t] = x * x
    block_sum(buf)
    if t == 0:
        cuda.atomic.add(out, 0, buf[0])


@cuda.jit
def _scale(g, s):
    i = cuda.grid(1)
    if i < g.size:
        g[i] *= s


@cuda.jit
def _scale_by_norm(g, sq, k, max_norm):
    """g *= max_norm / ||g|| when the norm sqrt(sq[k]) exceeds max_norm; a non-finite
    norm leaves g as it is (the rule's step then finds and counts the bad entries)."""
    i = cuda.grid(1)
    if i < g.size:
        s = sq[k]
        if math.isfinite(s):
            norm = math.sqrt(s)
            if norm > max_norm:
                g[i] *= max_norm / norm


@cuda.jit
def _sqrt_inplace(x):
    i = cuda.grid(1)
    if i < x.size:
        x[i] = math.sqrt(x[i])


@cuda.jit
def _ema(avg, w, keep, c):
    i = cuda.grid(1)
    if i < avg.size:
        avg[i] = keep * avg[i] + c * w[i]


def _flag(n=1):
    return cuda.to_device(np.zeros(n, dtype=np.int32))


def _f(x):
    return x.reshape(x.size)


def _launch(kernel, w, *args, bad=None):
    """Run ``kernel`` over w.size threads, counting non-finite gradient entries.

    Without ``bad`` a fresh counter is made and read back: True if it counted anything.
    With ``bad`` (a (1,) int32 device array) the kernel adds to it and nothing is read
    back, so a whole training step can stay on the device (``ddlib.device.DeviceTrainer``
    reads all counters once, when it is asked).
    """
    own = bad is None
    flag = _flag() if own else bad
    blocks, threads = grid_1d(w.size)
    kernel[blocks, threads](*args, flag)
    return bool(flag.copy_to_host()[0]) if own else False


def sgd_step(w, g, lr, bad=None):
    return _launch(_sgd, w, _f(w), _f(g), w.dtype.type(lr), bad=bad)


def momentum_step(w, v, g, lr, beta, bad=None):
    t = w.dtype.type
    return _launch(_momentum, w, _f(w), _f(v), _f(g), t(lr), t(beta), _f(w), False, bad=bad)


def nesterov_step(w, v, g, lr, beta, point=None, bad=None):
    t = w.dtype.type
    p = w if point is None else point
    return _launch(_momentum, w, _f(w), _f(v), _f(g), t(lr), t(beta), _f(p), point is not None,
                   bad=bad)


def delta_bar_delta_step(w, bar, gain, g, lr, kappa, phi, theta, bad=None):
    t = w.dtype.type
    return _launch(_delta_bar_delta, w, _f(w), _f(bar), _f(gain), _f(g), t(lr), t(kappa),
                   t(1 - phi), t(theta), t(1 - theta), bad=bad)


def adagrad_step(w, a, g, lr, eps, bad=None):
    t = w.dtype.type
    return _launch(_adagrad, w, _f(w), _f(a), _f(g), t(lr), t(eps), bad=bad)


def rmsprop_step(w, a, g, lr, rho, eps, bad=None):
    t = w.dtype.type
    return _launch(_rmsprop, w, _f(w), _f(a), _f(g), t(lr), t(rho), t(1 - rho), t(eps), bad=bad)


def rmsprop_nesterov_step(w, v, a, g, lr, beta, rho, eps, point=None, bad=None):
    t = w.dtype.type
    p = w if point is None else point
    return _launch(_rmsprop_nesterov, w, _f(w), _f(v), _f(a), _f(g), t(lr), t(beta), t(rho),
                   t(1 - rho), t(eps), _f(p), point is not None, bad=bad)


def adadelta_step(w, a, d, g, lr, rho, eps, bad=None):
    t = w.dtype.type
    return _launch(_adadelta, w, _f(w), _f(a), _f(d), _f(g), t(lr), t(rho), t(1 - rho), t(eps), bad=bad)


def adam_step(w, f, a, g, lr_t, rho_f, rho, eps, bad=None):
    t = w.dtype.type
    return _launch(_adam, w, _f(w), _f(f), _f(a), _f(g), t(lr_t), t(rho_f), t(1 - rho_f),
                   t(rho), t(1 - rho), t(eps), bad=bad)


def clip_value(g, lo, hi):
    t = g.dtype.type
    counts = _flag(2)
    blocks, threads = grid_1d(g.size)
    _clip_value[blocks, threads](_f(g), t(lo), t(hi), counts)
    n, bad = counts.copy_to_host()
    return int(n), bool(bad)


def sum_squares(g):
    out = cuda.to_device(np.zeros(1, dtype=np.float64))
    blocks, threads = grid_1d(g.size)
    _sum_squares[blocks, threads](_f(g), out)
    return float(out.copy_to_host()[0])


def scale_inplace(g, s):
    blocks, threads = grid_1d(g.size)
    _scale[blocks, threads](_f(g), g.dtype.type(s))


def _zeros_on_device(n, dtype):
    return fill(cuda.device_array(n, dtype=dtype), 0)


def clip_value_device(grads, lo, hi):
    """Clip every array of ``grads`` to [lo, hi] in place without reading anything back.

    Returns a (2,) int32 device array: entries clipped, and entries that were NaN/inf (left
    as they are, for the rule's step to count against their parameter).
    """
    counts = _zeros_on_device(2, np.int32)
    for g in grads:
        t = g.dtype.type
        blocks, threads = grid_1d(g.size)
        _clip_value[blocks, threads](_f(g), t(lo), t(hi), counts)
    return counts


def clip_norm_device(grads, max_norm, per_parameter=False):
    """Rescale ``grads`` in place to L2 norm ``max_norm`` when longer, on the device.

    Global: one norm over all arrays, one scale for all; ``per_parameter``: each array by its
    own norm.  Returns the norm(s) before clipping as a float64 device array (one entry, or
    one per array) and reads nothing back, so a training step stays on the GPU.
    """
    grads = list(grads)
    sq = _zeros_on_device(len(grads) if per_parameter else 1, np.float64)
    for k, g in enumerate(grads):
        blocks, threads = grid_1d(g.size)
        _sum_squares[blocks, threads](_f(g), sq[k:k + 1] if per_parameter else sq)
    for k, g in enumerate(grads):
        blocks, threads = grid_1d(g.size)
        _scale_by_norm[blocks, threads](_f(g), sq, k if per_parameter else 0,
                                        g.dtype.type(max_norm))
    blocks, threads = grid_1d(sq.size)
    _sqrt_inplace[blocks, threads](sq)
    return sq


def ema_update(avg, w, c):
    t = avg.dtype.type
    blocks, threads = grid_1d(avg.size)
    _ema[blocks, threads](_f(avg), _f(w), t(1 - c), t(c))
