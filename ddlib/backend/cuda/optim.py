"""numba.cuda kernels for the optimizer family: one thread per parameter, one pass.

The update rules' kernels are generated from ``backend.elementwise`` by
``cuda.elementwise``; the clipping, norm and averaging kernels are written here.

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
from ..elementwise import RULES, make_steps
from .core import block_sum, fill
from .elementwise import rule_kernel
from .launch import TPB_1D, grid_1d

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

COUNTER = np.int64  # dtype of the non-finite counters (an epoch's worth cannot overflow)


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


#: argument types of the generated rule kernels for ``make ptx-check`` (filled below)
PTX_SIGNATURES = {}


class _RuleLaunch:
    """A rule's generated grid kernel (``cuda.elementwise``) behind the step's calling
    convention ``k(w, *state, g, *scalars, p, bad)``."""

    def __init__(self, name, write_point):
        self.kernel = rule_kernel(name, write_point)
        self.n_arrays = len(RULES[name].state) + 1  # the state and g
        # the kernel as a module attribute with its PTX argument types, so that
        # tests/cuda/test_ptx.py finds and compiles it like every other kernel
        tag = f"_{name}_point" if write_point else f"_{name}"
        globals()[tag] = self.kernel
        PTX_SIGNATURES[tag] = "A" * (self.n_arrays + 1) + "S" * RULES[name].n_scalars + "AL"

    def __call__(self, w, *args):
        n = self.n_arrays
        arrays, scalars, p, bad = args[:n], args[n:-2], args[-2], args[-1]
        return _launch(self.kernel, w, _f(w), *map(_f, arrays), *scalars, _f(p), bad=bad)


def _passthrough(result, bad):
    return result


# sgd_step, momentum_step, ..., adam_step: generated from backend.elementwise.RULES
globals().update(make_steps(_RuleLaunch, _passthrough, __name__))


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
