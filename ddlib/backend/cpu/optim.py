"""Single-pass numba kernels for the optimizer family (equations in ``numpy_ref.optim``).

Each kernel reads every array once and writes it once, in the arrays' own dtype (float32
stays float32: the scalars are cast before the call).  An entry whose gradient is NaN or
inf is left untouched and counted; the wrapper returns True when the count is positive.
Arrays must be C-contiguous (parameters and their state always are).
"""

import math
import types

import numba as nb
import numpy as np

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
    "ema_update",
]

#: Arrays smaller than this are updated on the calling thread: waking the worker threads
#: costs tens of microseconds, more than a bias vector or a small matrix takes serially.
PARALLEL_MIN = 1 << 21


def pjit(fn):
    """Compile ``fn`` twice -- parallel and serial -- and pick by the first array's size.

    The serial twin is a copy of the function under another qualified name, so numba's
    on-disk cache keeps the two compilations apart.
    """
    par = nb.njit(cache=True, parallel=True)(fn)
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                               fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + "_serial"
    ser = nb.njit(cache=True)(clone)

    def call(*args):
        return (par if args[0].size >= PARALLEL_MIN else ser)(*args)

    call.parallel, call.serial = par, ser
    call.__name__, call.__doc__ = fn.__name__, fn.__doc__
    return call

# Each flat view gets its own assignment: numba 0.68 silently dropped the writes of a parfor
# whose views came from one tuple assignment (``wf, vf, gf, pf = w.reshape(-1), ...``).


@pjit
def _sgd(w, g, lr):
    wf = w.reshape(-1)
    gf = g.reshape(-1)
    bad = 0
    for i in nb.prange(wf.size):
        gi = gf[i]
        if math.isfinite(gi):
            wf[i] -= lr * gi
        else:
            bad += 1
    return bad


@pjit
def _momentum(w, v, g, lr, beta, p, write_p):
    wf = w.reshape(-1)
    vf = v.reshape(-1)
    gf = g.reshape(-1)
    pf = p.reshape(-1)
    bad = 0
    for i in nb.prange(wf.size):
        gi = gf[i]
        if math.isfinite(gi):
            vi = beta * vf[i] - lr * gi
            wi = wf[i] + vi
            vf[i] = vi
            wf[i] = wi
            if write_p:
                pf[i] = wi + beta * vi
        else:
            bad += 1
    return bad


@pjit
def _delta_bar_delta(w, bar, gain, g, lr, kappa, keep, theta, one_m_theta):
    wf = w.reshape(-1)
    bf = bar.reshape(-1)
    kf = gain.reshape(-1)
    gf = g.reshape(-1)
    bad = 0
    for i in nb.prange(wf.size):
        gi = gf[i]
        if math.isfinite(gi):
            bi = bf[i]
            ki = kf[i]
            agree = bi * gi
            if agree > 0:
                ki = ki + kappa
            elif agree < 0:
                ki = keep * ki
            kf[i] = ki
            wf[i] -= lr * ki * gi
            bf[i] = one_m_theta * gi + theta * bi
        else:
            bad += 1
    return bad


@pjit
def _adagrad(w, a, g, lr, eps):
    wf = w.reshape(-1)
    af = a.reshape(-1)
    gf = g.reshape(-1)
    bad = 0
    for i in nb.prange(wf.size):
        gi = gf[i]
        if math.isfinite(gi):
            ai = af[i] + gi * gi
            af[i] = ai
            wf[i] -= lr * gi / (math.sqrt(ai) + eps)
        else:
            bad += 1
    return bad


@pjit
def _rmsprop(w, a, g, lr, rho, one_m_rho, eps):
    wf = w.reshape(-1)
    af = a.reshape(-1)
    gf = g.reshape(-1)
    bad = 0
    for i in nb.prange(wf.size):
        gi = gf[i]
        if math.isfinite(gi):
            ai = rho * af[i] + one_m_rho * gi * gi
            af[i] = ai
            wf[i] -= lr * gi / (math.sqrt(ai) + eps)
        else:
            bad += 1
    return bad


@pjit
def _rmsprop_nesterov(w, v, a, g, lr, beta, rho, one_m_rho, eps, p, write_p):
    wf = w.reshape(-1)
    vf = v.reshape(-1)
    af = a.reshape(-1)
    gf = g.reshape(-1)
    pf = p.reshape(-1)
    bad = 0
    for i in nb.prange(wf.size):
        gi = gf[i]
        if math.isfinite(gi):
            ai = rho * af[i] + one_m_rho * gi * gi
            vi = beta * vf[i] - lr * gi / (math.sqrt(ai) + eps)
            wi = wf[i] + vi
            af[i] = ai
            vf[i] = vi
            wf[i] = wi
            if write_p:
                pf[i] = wi + beta * vi
        else:
            bad += 1
    return bad


@pjit
def _adadelta(w, a, d, g, lr, rho, one_m_rho, eps):
    wf = w.reshape(-1)
    af = a.reshape(-1)
    df = d.reshape(-1)
    gf = g.reshape(-1)
    bad = 0
    for i in nb.prange(wf.size):
        gi = gf[i]
        if math.isfinite(gi):
            ai = rho * af[i] + one_m_rho * gi * gi
            dw = -math.sqrt(df[i] + eps) / math.sqrt(ai + eps) * gi
            af[i] = ai
            df[i] = rho * df[i] + one_m_rho * dw * dw
            wf[i] += lr * dw
        else:
            bad += 1
    return bad


@pjit
def _adam(w, f, a, g, lr_t, rho_f, one_m_rho_f, rho, one_m_rho, eps):
    wf = w.reshape(-1)
    ff = f.reshape(-1)
    af = a.reshape(-1)
    gf = g.reshape(-1)
    bad = 0
    for i in nb.prange(wf.size):
        gi = gf[i]
        if math.isfinite(gi):
            ai = rho * af[i] + one_m_rho * gi * gi
            fi = rho_f * ff[i] + one_m_rho_f * gi
            af[i] = ai
            ff[i] = fi
            wf[i] -= lr_t * fi / (math.sqrt(ai) + eps)
        else:
            bad += 1
    return bad


@pjit
def _clip_value(g, lo, hi):
    gf = g.reshape(-1)
    n = 0
    bad = 0
    for i in nb.prange(gf.size):
        gi = gf[i]
        if not math.isfinite(gi):
            bad += 1
        elif gi > hi:
            gf[i] = hi
            n += 1
        elif gi < lo:
            gf[i] = lo
            n += 1
    return n, bad


@pjit
def _sum_squares(g):
    gf = g.reshape(-1)
    s = 0.0
    for i in nb.prange(gf.size):
        x = np.float64(gf[i])
        s += x * x
    return s


@pjit
def _scale(g, s):
    gf = g.reshape(-1)
    for i in nb.prange(gf.size):
        gf[i] *= s


@pjit
def _ema(avg, w, keep, c):
    af = avg.reshape(-1)
    wf = w.reshape(-1)
    for i in nb.prange(af.size):
        af[i] = keep * af[i] + c * wf[i]


def sgd_step(w, g, lr):
    return _sgd(w, g, w.dtype.type(lr)) > 0


def momentum_step(w, v, g, lr, beta):
    t = w.dtype.type
    return _momentum(w, v, g, t(lr), t(beta), w, False) > 0


def nesterov_step(w, v, g, lr, beta, point=None):
    t = w.dtype.type
    p = w if point is None else point
    return _momentum(w, v, g, t(lr), t(beta), p, point is not None) > 0


def delta_bar_delta_step(w, bar, gain, g, lr, kappa, phi, theta):
    t = w.dtype.type
    return _delta_bar_delta(w, bar, gain, g, t(lr), t(kappa), t(1 - phi), t(theta),
                            t(1 - theta)) > 0


def adagrad_step(w, a, g, lr, eps):
    t = w.dtype.type
    return _adagrad(w, a, g, t(lr), t(eps)) > 0


def rmsprop_step(w, a, g, lr, rho, eps):
    t = w.dtype.type
    return _rmsprop(w, a, g, t(lr), t(rho), t(1 - rho), t(eps)) > 0


def rmsprop_nesterov_step(w, v, a, g, lr, beta, rho, eps, point=None):
    t = w.dtype.type
    p = w if point is None else point
    return _rmsprop_nesterov(w, v, a, g, t(lr), t(beta), t(rho), t(1 - rho), t(eps), p,
                             point is not None) > 0


def adadelta_step(w, a, d, g, lr, rho, eps):
    t = w.dtype.type
    return _adadelta(w, a, d, g, t(lr), t(rho), t(1 - rho), t(eps)) > 0


def adam_step(w, f, a, g, lr_t, rho_f, rho, eps):
    t = w.dtype.type
    return _adam(w, f, a, g, t(lr_t), t(rho_f), t(1 - rho_f), t(rho), t(1 - rho), t(eps)) > 0


def clip_value(g, lo, hi):
    t = g.dtype.type
    n, bad = _clip_value(g, t(lo), t(hi))
    return int(n), bad > 0


def sum_squares(g):
    return float(_sum_squares(g))


def scale_inplace(g, s):
    _scale(g, g.dtype.type(s))


def ema_update(avg, w, c):
    t = avg.dtype.type
    _ema(avg, w, t(1 - c), t(c))
