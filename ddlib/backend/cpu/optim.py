"""Single-pass numba kernels for the optimizer family (equations in ``numpy_ref.optim``).

The update rules' loops are compiled from ``backend.elementwise`` by ``cpu.elementwise``
(vectorized: see there); the clipping, axpy and averaging kernels are written here.
Each kernel reads every array once and writes it once, in the arrays' own dtype (float32
stays float32: the scalars are cast before the call).  An entry whose gradient is NaN or
inf is left untouched and counted; the compiled loop returns the count, and the wrapper
adds it to the caller's counter ``bad`` (or, without one, returns whether it is
positive), exactly as ``numpy_ref.optim`` describes.  Arrays must be C-contiguous
(parameters and their state always are).
"""

import math
import types

import numba as nb
import numpy as np

from .. import checks as ck
from ..elementwise import RULES, make_steps
from .elementwise import PARALLEL_MIN, RuleKernel

# the rules' steps (sgd_step, ..., adam_step) are generated from elementwise.RULES
__all__ = [f"{name}_step" for name in RULES] + [
    "clip_value",
    "clip_values",
    "clip_norms",
    "axpy",
    "sum_squares",
    "scale_inplace",
    "ema_update",
]

def pjit(fn):
    """Compile ``fn`` twice -- parallel and serial -- and pick by the first array's size.

    The serial twin is a copy of the function under another qualified name, so numba's
    on-disk cache keeps the two compilations apart.  (The update rules are compiled by
    ``cpu.elementwise`` instead; this serves the clipping and averaging kernels.)
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
def _sum_squares_finite(g):
    """(sum of g^2 over the finite entries, in float64; how many were not finite)."""
    gf = g.reshape(-1)
    s = 0.0
    bad = 0
    for i in nb.prange(gf.size):
        x = np.float64(gf[i])
        if math.isfinite(x):
            s += x * x
        else:
            bad += 1
    return s, bad


@pjit
def _axpy(y, a, x):
    yf = y.reshape(-1)
    xf = x.reshape(-1)
    bad = 0
    for i in nb.prange(yf.size):
        yi = yf[i]
        if math.isfinite(yi):
            yf[i] = yi + a * xf[i]
        else:
            bad += 1
    return bad


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


def _report(n_bad, bad):
    # the family's one way of reporting (see numpy_ref.optim): add to the counter, or
    # without one say whether there was anything to count
    if bad is None:
        return n_bad > 0
    if n_bad:
        bad[0] += n_bad
    return None


# sgd_step, momentum_step, ..., adam_step: generated from backend.elementwise.RULES
globals().update(make_steps(RuleKernel, _report, __name__))


def clip_value(g, lo, hi):
    ck.need_float("clip_value", g=g)
    ck.need_contiguous("clip_value", g=g)
    t = g.dtype.type
    n, bad = _clip_value(g, t(lo), t(hi))
    return int(n), bad > 0


def clip_values(grads, lo, hi, clipped, bad):
    grads, bad = list(grads), list(bad)
    ck.need_clip("clip_values", grads, bad, [clipped], 1, "clipped")
    n = 0
    for g, b in zip(grads, bad, strict=True):
        t = g.dtype.type
        c, nb_bad = _clip_value(g, t(lo), t(hi))
        n += c
        _report(nb_bad, b)
    clipped[0] = n


def clip_norms(grads, max_norm, norms, bad, per_parameter=False):
    grads, bad, norms = list(grads), list(bad), list(norms)
    ck.need_clip("clip_norms", grads, bad, norms, len(grads) if per_parameter else 1, "norms")
    sq = []
    for g, b in zip(grads, bad):
        s, n_bad = _sum_squares_finite(g)
        sq.append(s)
        _report(n_bad, b)
    totals = sq if per_parameter else [sum(sq)]
    for out, s in zip(norms, totals):
        out[0] = math.sqrt(s)
    for k, g in enumerate(grads):
        norm = math.sqrt(totals[k if per_parameter else 0])
        if norm > max_norm:
            _scale(g, g.dtype.type(max_norm / norm))


def axpy(y, a, x, bad=None):
    ck.need_step("axpy", y, x, bad, names=("y", "x"))
    return _report(_axpy(y, y.dtype.type(a), x), bad)


def sum_squares(g):
    return float(_sum_squares(g))


def scale_inplace(g, s):
    ck.need_contiguous("scale_inplace", g=g)
    _scale(g, g.dtype.type(s))


def ema_update(avg, w, c):
    ck.need_step("ema_update", avg, w, names=("avg", "w"))
    t = avg.dtype.type
    _ema(avg, w, t(1 - c), t(c))
