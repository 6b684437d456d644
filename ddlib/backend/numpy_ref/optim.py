"""Fused optimizer steps written as equations (the reference for cpu and cuda).

Each ``*_step`` updates its arrays in place.  Entries whose gradient is NaN/inf are left
untouched (weights and state); the others take their step.  How the non-finite entries are
reported is the same for every kernel of this family, on every backend:

* with ``bad`` -- a small integer counter array on the arrays' side, shape (1,) (in
  practice a one-entry slice of ``Optimizer``'s counters, one per parameter) -- the kernel
  *adds* the number of non-finite gradient entries to ``bad[0]`` and returns None.  On
  cuda nothing is copied back, so a whole training step can run without waiting;
* without it, the kernel returns True when there were any (on cuda that reads a fresh
  counter back: a convenience for tests and scripts, not for a training loop).

Scalars are cast to the arrays' dtype so float32 stays float32 throughout.  Shapes: every
array argument has the parameter's shape; ``lr`` and the decay rates are Python floats.
Example::

    adam_step(w, f, a, g, lr_t, 0.9, 0.999, 1e-8, bad=counts[0:1])   # w, f, a in place

The clipping kernels ``clip_values`` and ``clip_norms`` take every gradient at once (a
list), so one call clips the whole model, and write what they saw (entries clipped, the
norms before clipping) into small arrays the caller owns; ``axpy`` adds a multiple of one
array to another (weight decay, ``ddlib.optim.add_decayed_weights``).
"""

import numpy as np

from .. import checks as ck

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


def _quiet(kernel):
    # NaN/inf gradients are expected input here (they are reported, not raised), so the
    # arithmetic on them must not warn
    import functools

    @functools.wraps(kernel)
    def wrapped(*args, **kwargs):
        with np.errstate(invalid="ignore", over="ignore"):
            return kernel(*args, **kwargs)

    return wrapped


def _commit(g, *pairs):
    """Write each new value into its array where g is finite; return how many were not."""
    ok = np.isfinite(g)
    for dst, new in pairs:
        np.copyto(dst, new, where=ok)
    return int(ok.size - np.count_nonzero(ok))


def _report(n_bad, bad):
    """The family's one way of reporting: add to the counter ``bad``, or, without one,
    return whether there was anything to count."""
    if bad is None:
        return n_bad > 0
    if n_bad:
        bad[0] += n_bad
    return None


@_quiet
def sgd_step(w, g, lr, bad=None):
    """w <- w - lr g."""
    ck.need_step("sgd_step", w, g, bad, contiguous=False)
    lr = w.dtype.type(lr)
    return _report(_commit(g, (w, w - lr * g)), bad)


@_quiet
def momentum_step(w, v, g, lr, beta, bad=None):
    """v <- beta v - lr g;  w <- w + v   (Sec. 3.5.2)."""
    ck.need_step("momentum_step", w, g, bad, contiguous=False, v=v)
    t = w.dtype.type
    v_new = t(beta) * v - t(lr) * g
    return _report(_commit(g, (v, v_new), (w, w + v_new)), bad)


@_quiet
def nesterov_step(w, v, g, lr, beta, point=None, bad=None):
    """Momentum with g taken at W + beta V (Sec. 3.5.2.1); writes the next lookahead point.

    v <- beta v - lr g;  w <- w + v;  point <- w + beta v  (skipped when point is None).
    """
    ck.need_step("nesterov_step", w, g, bad, contiguous=False, v=v, point=point)
    t = w.dtype.type
    v_new = t(beta) * v - t(lr) * g
    w_new = w + v_new
    pairs = [(v, v_new), (w, w_new)]
    if point is not None:
        pairs.append((point, w_new + t(beta) * v_new))
    return _report(_commit(g, *pairs), bad)


@_quiet
def delta_bar_delta_step(w, bar, gain, g, lr, kappa, phi, theta, bad=None):
    """gain <- gain + kappa if bar g > 0, (1 - phi) gain if < 0;  w <- w - lr gain g;
    bar <- (1 - theta) g + theta bar   (Sec. 3.5.3, Jacobs' delta-bar-delta)."""
    ck.need_step("delta_bar_delta_step", w, g, bad, contiguous=False, bar=bar, gain=gain)
    t = w.dtype.type
    agree = bar * g
    gain_new = np.where(agree > 0, gain + t(kappa),
                        np.where(agree < 0, t(1 - phi) * gain, gain))
    w_new = w - t(lr) * gain_new * g
    bar_new = t(1 - theta) * g + t(theta) * bar
    return _report(_commit(g, (gain, gain_new), (w, w_new), (bar, bar_new)), bad)


@_quiet
def adagrad_step(w, a, g, lr, eps, bad=None):
    """A <- A + g^2;  w <- w - lr g / (sqrt(A) + eps)   (Eq. 3.40)."""
    ck.need_step("adagrad_step", w, g, bad, contiguous=False, a=a)
    t = w.dtype.type
    a_new = a + g * g
    return _report(_commit(g, (a, a_new), (w, w - t(lr) * g / (np.sqrt(a_new) + t(eps)))), bad)


@_quiet
def rmsprop_step(w, a, g, lr, rho, eps, bad=None):
    """A <- rho A + (1 - rho) g^2;  w <- w - lr g / (sqrt(A) + eps)   (Eq. 3.41)."""
    ck.need_step("rmsprop_step", w, g, bad, contiguous=False, a=a)
    t = w.dtype.type
    a_new = t(rho) * a + t(1 - rho) * g * g
    return _report(_commit(g, (a, a_new), (w, w - t(lr) * g / (np.sqrt(a_new) + t(eps)))), bad)


@_quiet
def rmsprop_nesterov_step(w, v, a, g, lr, beta, rho, eps, point=None, bad=None):
    """g taken at W + beta V:  A <- rho A + (1 - rho) g^2;
    v <- beta v - lr g / (sqrt(A) + eps);  w <- w + v;  point <- w + beta v   (Eq. 3.42)."""
    ck.need_step("rmsprop_nesterov_step", w, g, bad, contiguous=False, v=v, a=a, point=point)
    t = w.dtype.type
    a_new = t(rho) * a + t(1 - rho) * g * g
    v_new = t(beta) * v - t(lr) * g / (np.sqrt(a_new) + t(eps))
    w_new = w + v_new
    pairs = [(a, a_new), (v, v_new), (w, w_new)]
    if point is not None:
        pairs.append((point, w_new + t(beta) * v_new))
    return _report(_commit(g, *pairs), bad)


@_quiet
def adadelta_step(w, a, d, g, lr, rho, eps, bad=None):
    """A <- rho A + (1 - rho) g^2;  dw = -sqrt(d + eps) / sqrt(A + eps) g;
    d <- rho d + (1 - rho) dw^2;  w <- w + lr dw   (Eq. 3.43, Zeiler's eps placement)."""
    ck.need_step("adadelta_step", w, g, bad, contiguous=False, a=a, d=d)
    t = w.dtype.type
    a_new = t(rho) * a + t(1 - rho) * g * g
    dw = -np.sqrt(d + t(eps)) / np.sqrt(a_new + t(eps)) * g
    d_new = t(rho) * d + t(1 - rho) * dw * dw
    return _report(_commit(g, (a, a_new), (d, d_new), (w, w + t(lr) * dw)), bad)


@_quiet
def adam_step(w, f, a, g, lr_t, rho_f, rho, eps, bad=None):
    """A <- rho A + (1 - rho) g^2 (3.44);  F <- rho_f F + (1 - rho_f) g (3.45);
    w <- w - lr_t F / (sqrt(A) + eps), lr_t already bias-corrected (3.46)."""
    ck.need_step("adam_step", w, g, bad, contiguous=False, f=f, a=a)
    t = w.dtype.type
    a_new = t(rho) * a + t(1 - rho) * g * g
    f_new = t(rho_f) * f + t(1 - rho_f) * g
    return _report(_commit(g, (a, a_new), (f, f_new),
                           (w, w - t(lr_t) * f_new / (np.sqrt(a_new) + t(eps)))), bad)


def clip_value(g, lo, hi):
    """g <- clip(g, lo, hi) in place (Sec. 3.5.5); returns (entries clipped, non-finite?).

    The one-array convenience form of ``clip_values``, reading both answers back."""
    clipped, bad = np.zeros(1, np.int64), np.zeros(1, np.int64)
    clip_values([g], lo, hi, clipped, [bad])
    return int(clipped[0]), bool(bad[0] > 0)


@_quiet
def clip_values(grads, lo, hi, clipped, bad):
    """Clip every array of ``grads`` to [lo, hi] in place (Sec. 3.5.5).

    clipped: a (1,) integer array, set to the number of entries clipped over all arrays;
    bad:     one (1,) integer counter per array; its non-finite entries, left as they are,
             are added to it.
    """
    grads, bad = list(grads), list(bad)
    ck.need_clip("clip_values", grads, bad, [clipped], 1, "clipped", contiguous=False)
    n = 0
    for g, b in zip(grads, bad, strict=True):
        t = g.dtype.type
        ok = np.isfinite(g)
        out = ok & ((g > hi) | (g < lo))
        n += int(np.count_nonzero(out))
        np.copyto(g, np.clip(g, t(lo), t(hi)), where=ok)
        _report(int(ok.size - np.count_nonzero(ok)), b)
    clipped[0] = n


@_quiet
def clip_norms(grads, max_norm, norms, bad, per_parameter=False):
    """Rescale ``grads`` in place to L2 norm ``max_norm`` when longer (Sec. 3.5.5).

    Global (default): ||g|| = sqrt(sum over all arrays of sum g^2), one scale
    max_norm / ||g|| for every array when ||g|| > max_norm.  ``per_parameter``: each array
    by its own norm.  Non-finite entries are left as they are, count towards nothing in
    the norm, and are added to their array's counter in ``bad`` (one (1,) integer counter
    per array), so the finite part is still bounded.

    norms: (1,) float64 arrays that receive the norm(s) before clipping: one per array of
           ``grads`` when per_parameter, else one.  Sums are accumulated in float64.
    """
    grads, bad, norms = list(grads), list(bad), list(norms)
    ck.need_clip("clip_norms", grads, bad, norms, len(grads) if per_parameter else 1, "norms",
                 contiguous=False)
    sq = []
    for g, b in zip(grads, bad):
        ok = np.isfinite(g)
        sq.append(float(np.sum(np.square(np.where(ok, g, 0), dtype=np.float64))))
        _report(int(ok.size - np.count_nonzero(ok)), b)
    totals = sq if per_parameter else [sum(sq)]
    for out, s in zip(norms, totals):
        out[0] = np.sqrt(s)
    for k, g in enumerate(grads):
        norm = float(norms[k if per_parameter else 0][0])
        if norm > max_norm:
            g *= g.dtype.type(max_norm / norm)


@_quiet
def axpy(y, a, x, bad=None):
    """y <- y + a x in place where y is finite (weight decay: g <- g + wd W).

    Entries where y is NaN/inf are left untouched and counted, as in the ``*_step``
    kernels (``y`` plays the gradient's part)."""
    ck.need_step("axpy", y, x, bad, names=("y", "x"), contiguous=False)
    t = y.dtype.type
    return _report(_commit(y, (y, y + t(a) * x)), bad)


def sum_squares(g):
    """sum of g^2 as a Python float (float64 accumulation); NaN/inf propagate."""
    return float(np.sum(np.square(g, dtype=np.float64)))


def scale_inplace(g, s):
    """g <- s g."""
    g *= g.dtype.type(s)


def ema_update(avg, w, c):
    """avg <- (1 - c) avg + c w: one Polyak-averaging step (Sec. 3.5.7)."""
    ck.need_step("ema_update", avg, w, names=("avg", "w"), contiguous=False)
    t = avg.dtype.type
    avg *= t(1 - c)
    avg += t(c) * w
