"""numba.cuda kernels for the optimizer family: one thread per parameter, one pass.

Equations in ``numpy_ref.optim``.  An entry whose gradient is NaN/inf is left untouched
and counted with an atomic add into the caller's counter ``bad`` (a (1,) int64 device
array, usually a slice of ``Optimizer``'s counters): nothing comes back to the host, so a
training step never waits.  Without ``bad`` a fresh counter is made and read back (one
small copy per call; for tests and scripts).
"""

import math

import numpy as np
from numba import cuda, float64

from .. import checks as ck
from ..arrays import is_device
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
    "clip_values",
    "clip_norms",
    "axpy",
    "sum_squares",
    "scale_inplace",
    "ema_update",
]

COUNTER = np.int64  # dtype of the non-finite counters (an epoch's worth cannot overflow)


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
def _clip_value(g, lo, hi, clipped, bad):
    i = cuda.grid(1)
    if i < g.size:
        gi = g[i]
        if not math.isfinite(gi):
            cuda.atomic.add(bad, 0, 1)
        elif gi > hi:
            g[i] = hi
            cuda.atomic.add(clipped, 0, 1)
        elif gi < lo:
            g[i] = lo
            cuda.atomic.add(clipped, 0, 1)


@cuda.jit
def _axpy(y, a, x, bad):
    i = cuda.grid(1)
    if i < y.size:
        yi = y[i]
        if math.isfinite(yi):
            y[i] = yi + a * x[i]
        else:
            cuda.atomic.add(bad, 0, 1)


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
def _sum_squares_finite(g, sq, k, bad):
    """sq[k] += sum of g^2 over g's finite entries (float64); the others are counted."""
    buf = cuda.shared.array(TPB_1D, float64)
    i = cuda.grid(1)
    t = cuda.threadIdx.x
    x = 0.0
    if i < g.size:
        x = float64(g[i])
        if not math.isfinite(x):
            cuda.atomic.add(bad, 0, 1)
            x = 0.0
    buf[t] = x * x
    block_sum(buf)
    if t == 0:
        cuda.atomic.add(sq, k, buf[0])


@cuda.jit
def _scale(g, s):
    i = cuda.grid(1)
    if i < g.size:
        g[i] *= s


@cuda.jit
def _scale_by_norm(g, sq, k, max_norm, norm_out, write_norm):
    """g *= max_norm / ||g|| when the norm sqrt(sq[k]) exceeds max_norm; thread 0 also
    writes the norm into norm_out[0] when asked (norm_out is not sq, so no thread can
    read a value another one is overwriting)."""
    i = cuda.grid(1)
    norm = math.sqrt(sq[k])
    if write_norm and i == 0:
        norm_out[0] = norm
    if i < g.size and norm > max_norm:
        g[i] *= max_norm / norm


@cuda.jit
def _ema(avg, w, keep, c):
    i = cuda.grid(1)
    if i < avg.size:
        avg[i] = keep * avg[i] + c * w[i]


def _counter(n=1):
    return fill(cuda.device_array(n, dtype=COUNTER), 0)


def _f(x):
    return x.reshape(x.size)


def _need_counter(who, bad):
    if not is_device(bad):
        raise TypeError(f"{who}: the counter bad must be a device array (e.g. a slice of "
                        f"get_backend('cuda').zeros(n, np.int64)), got {type(bad).__name__}")


def _launch(kernel, w, *args, bad=None):
    """Run ``kernel`` over w.size threads, counting non-finite gradient entries.

    With ``bad`` (a (1,) int64 device array) the kernel adds to it and nothing is read
    back.  Without it a fresh counter is made and read back: True if it counted anything.
    """
    own = bad is None
    if own:
        bad = _counter()
    else:
        _need_counter("cuda optimizer kernel", bad)
    blocks, threads = grid_1d(w.size)
    kernel[blocks, threads](*args, bad)
    return bool(bad.copy_to_host()[0]) if own else None


def sgd_step(w, g, lr, bad=None):
    ck.need_step("sgd_step", w, g, bad)
    return _launch(_sgd, w, _f(w), _f(g), w.dtype.type(lr), bad=bad)


def momentum_step(w, v, g, lr, beta, bad=None):
    ck.need_step("momentum_step", w, g, bad, v=v)
    t = w.dtype.type
    return _launch(_momentum, w, _f(w), _f(v), _f(g), t(lr), t(beta), _f(w), False, bad=bad)


def nesterov_step(w, v, g, lr, beta, point=None, bad=None):
    ck.need_step("nesterov_step", w, g, bad, v=v, point=point)
    t = w.dtype.type
    p = w if point is None else point
    return _launch(_momentum, w, _f(w), _f(v), _f(g), t(lr), t(beta), _f(p), point is not None,
                   bad=bad)


def delta_bar_delta_step(w, bar, gain, g, lr, kappa, phi, theta, bad=None):
    ck.need_step("delta_bar_delta_step", w, g, bad, bar=bar, gain=gain)
    t = w.dtype.type
    return _launch(_delta_bar_delta, w, _f(w), _f(bar), _f(gain), _f(g), t(lr), t(kappa),
                   t(1 - phi), t(theta), t(1 - theta), bad=bad)


def adagrad_step(w, a, g, lr, eps, bad=None):
    ck.need_step("adagrad_step", w, g, bad, a=a)
    t = w.dtype.type
    return _launch(_adagrad, w, _f(w), _f(a), _f(g), t(lr), t(eps), bad=bad)


def rmsprop_step(w, a, g, lr, rho, eps, bad=None):
    ck.need_step("rmsprop_step", w, g, bad, a=a)
    t = w.dtype.type
    return _launch(_rmsprop, w, _f(w), _f(a), _f(g), t(lr), t(rho), t(1 - rho), t(eps), bad=bad)


def rmsprop_nesterov_step(w, v, a, g, lr, beta, rho, eps, point=None, bad=None):
    ck.need_step("rmsprop_nesterov_step", w, g, bad, v=v, a=a, point=point)
    t = w.dtype.type
    p = w if point is None else point
    return _launch(_rmsprop_nesterov, w, _f(w), _f(v), _f(a), _f(g), t(lr), t(beta), t(rho),
                   t(1 - rho), t(eps), _f(p), point is not None, bad=bad)


def adadelta_step(w, a, d, g, lr, rho, eps, bad=None):
    ck.need_step("adadelta_step", w, g, bad, a=a, d=d)
    t = w.dtype.type
    return _launch(_adadelta, w, _f(w), _f(a), _f(d), _f(g), t(lr), t(rho), t(1 - rho), t(eps), bad=bad)


def adam_step(w, f, a, g, lr_t, rho_f, rho, eps, bad=None):
    ck.need_step("adam_step", w, g, bad, f=f, a=a)
    t = w.dtype.type
    return _launch(_adam, w, _f(w), _f(f), _f(a), _f(g), t(lr_t), t(rho_f), t(1 - rho_f),
                   t(rho), t(1 - rho), t(eps), bad=bad)


def clip_value(g, lo, hi):
    """One array's ``clip_values``, reading (entries clipped, non-finite?) back."""
    counts = _counter(2)
    clip_values([g], lo, hi, counts[0:1], [counts[1:2]])
    n, bad = counts.copy_to_host()
    return int(n), bool(bad)


def clip_values(grads, lo, hi, clipped, bad):
    """Clip every array of ``grads`` to [lo, hi] in place; ``clipped`` (a (1,) device
    counter) is set to the entries clipped, each array's NaN/inf entries are added to its
    counter in ``bad``.  Nothing is read back."""
    grads, bad = list(grads), list(bad)
    ck.need_clip("clip_values", grads, bad, [clipped], 1, "clipped")
    _need_counter("clip_values", clipped)
    fill(clipped, 0)
    for g, b in zip(grads, bad):
        _need_counter("clip_values", b)
        t = g.dtype.type
        blocks, threads = grid_1d(g.size)
        _clip_value[blocks, threads](_f(g), t(lo), t(hi), clipped, b)


def clip_norms(grads, max_norm, norms, bad, per_parameter=False):
    """Rescale ``grads`` in place to L2 norm ``max_norm`` when longer, on the device.

    The norms (of the finite entries; the others are counted in ``bad``) are summed in a
    float64 scratch array, compared and applied on the GPU and written into ``norms``
    ((1,) float64 device arrays, one per gradient when per_parameter, else one).  Launches:
    one per gradient to sum, one per gradient to scale, and nothing is read back.
    """
    grads, bad, norms = list(grads), list(bad), list(norms)
    ck.need_clip("clip_norms", grads, bad, norms, len(grads) if per_parameter else 1, "norms")
    for b in bad:
        _need_counter("clip_norms", b)
    sq = fill(cuda.device_array(len(norms), dtype=np.float64), 0.0)
    for k, g in enumerate(grads):
        blocks, threads = grid_1d(g.size)
        _sum_squares_finite[blocks, threads](_f(g), sq, k if per_parameter else 0, bad[k])
    for k, g in enumerate(grads):
        j = k if per_parameter else 0
        blocks, threads = grid_1d(g.size)
        _scale_by_norm[blocks, threads](_f(g), sq, j, np.float64(max_norm), norms[j],
                                        per_parameter or k == 0)
    if not grads and not per_parameter:
        fill(norms[0], 0.0)


def axpy(y, a, x, bad=None):
    """y <- y + a x in place where y is finite; the other entries are counted."""
    ck.need_step("axpy", y, x, bad, names=("y", "x"))
    return _launch(_axpy, y, _f(y), y.dtype.type(a), _f(x), bad=bad)


def sum_squares(g):
    out = cuda.to_device(np.zeros(1, dtype=np.float64))
    blocks, threads = grid_1d(g.size)
    _sum_squares[blocks, threads](_f(g), out)
    return float(out.copy_to_host()[0])


def scale_inplace(g, s):
    ck.need_contiguous("scale_inplace", g=g)
    blocks, threads = grid_1d(g.size)
    _scale[blocks, threads](_f(g), g.dtype.type(s))


def ema_update(avg, w, c):
    ck.need_step("ema_update", avg, w, names=("avg", "w"))
    t = avg.dtype.type
    blocks, threads = grid_1d(avg.size)
    _ema[blocks, threads](_f(avg), _f(w), t(1 - c), t(c))
