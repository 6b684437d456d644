"""Fused optimizer steps written as equations (the reference for cpu and cuda).

Each ``*_step`` updates its arrays in place and returns True when the gradient held a
non-finite value.  Entries whose gradient is NaN/inf are left untouched (weights and
state); the others take their step, and the caller stops training with the parameter's
name.  Scalars are cast to the arrays' dtype so float32 stays float32 throughout.

Shapes: every array argument has the parameter's shape; ``lr`` and the decay rates are
Python floats.  Example::

    bad = adam_step(w, f, a, g, lr_t, 0.9, 0.999, 1e-8)   # w, f, a changed in place
"""

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
    """Write each new value into its array where g is finite; report whether any was not."""
    ok = np.isfinite(g)
    for dst, new in pairs:
        np.copyto(dst, new, where=ok)
    return not ok.all()


@_quiet
def sgd_step(w, g, lr):
    """w <- w - lr g."""
    lr = w.dtype.type(lr)
    return _commit(g, (w, w - lr * g))


@_quiet
def momentum_step(w, v, g, lr, beta):
    """v <- beta v - lr g;  w <- w + v   (Sec. 3.5.2)."""
    t = w.dtype.type
    v_new = t(beta) * v - t(lr) * g
    return _commit(g, (v, v_new), (w, w + v_new))


@_quiet
def nesterov_step(w, v, g, lr, beta, point=None):
    """Momentum with g taken at W + beta V (Sec. 3.5.2.1); writes the next lookahead point.

    v <- beta v - lr g;  w <- w + v;  point <- w + beta v  (skipped when point is None).
    """
    t = w.dtype.type
    v_new = t(beta) * v - t(lr) * g
    w_new = w + v_new
    pairs = [(v, v_new), (w, w_new)]
    if point is not None:
        pairs.append((point, w_new + t(beta) * v_new))
    return _commit(g, *pairs)


@_quiet
def delta_bar_delta_step(w, bar, gain, g, lr, kappa, phi, theta):
    """gain <- gain + kappa if bar g > 0, (1 - phi) gain if < 0;  w <- w - lr gain g;
    bar <- (1 - theta) g + theta bar   (Sec. 3.5.3, Jacobs' delta-bar-delta)."""
    t = w.dtype.type
    agree = bar * g
    gain_new = np.where(agree > 0, gain + t(kappa),
                        np.where(agree < 0, t(1 - phi) * gain, gain))
    w_new = w - t(lr) * gain_new * g
    bar_new = t(1 - theta) * g + t(theta) * bar
    return _commit(g, (gain, gain_new), (w, w_new), (bar, bar_new))


@_quiet
def adagrad_step(w, a, g, lr, eps):
    """A <- A + g^2;  w <- w - lr g / (sqrt(A) + eps)   (Eq. 3.40)."""
    t = w.dtype.type
    a_new = a + g * g
    return _commit(g, (a, a_new), (w, w - t(lr) * g / (np.sqrt(a_new) + t(eps))))


@_quiet
def rmsprop_step(w, a, g, lr, rho, eps):
    """A <- rho A + (1 - rho) g^2;  w <- w - lr g / (sqrt(A) + eps)   (Eq. 3.41)."""
    t = w.dtype.type
    a_new = t(rho) * a + t(1 - rho) * g * g
    return _commit(g, (a, a_new), (w, w - t(lr) * g / (np.sqrt(a_new) + t(eps))))


@_quiet
def rmsprop_nesterov_step(w, v, a, g, lr, beta, rho, eps, point=None):
    """g taken at W + beta V:  A <- rho A + (1 - rho) g^2;
    v <- beta v - lr g / (sqrt(A) + eps);  w <- w + v;  point <- w + beta v   (Eq. 3.42)."""
    t = w.dtype.type
    a_new = t(rho) * a + t(1 - rho) * g * g
    v_new = t(beta) * v - t(lr) * g / (np.sqrt(a_new) + t(eps))
    w_new = w + v_new
    pairs = [(a, a_new), (v, v_new), (w, w_new)]
    if point is not None:
        pairs.append((point, w_new + t(beta) * v_new))
    return _commit(g, *pairs)


@_quiet
def adadelta_step(w, a, d, g, lr, rho, eps):
    """A <- rho A + (1 - rho) g^2;  dw = -sqrt(d + eps) / sqrt(A + eps) g;
    d <- rho d + (1 - rho) dw^2;  w <- w + lr dw   (Eq. 3.43, Zeiler's eps placement)."""
    t = w.dtype.type
    a_new = t(rho) * a + t(1 - rho) * g * g
    dw = -np.sqrt(d + t(eps)) / np.sqrt(a_new + t(eps)) * g
    d_new = t(rho) * d + t(1 - rho) * dw * dw
    return _commit(g, (a, a_new), (d, d_new), (w, w + t(lr) * dw))


@_quiet
def adam_step(w, f, a, g, lr_t, rho_f, rho, eps):
    """A <- rho A + (1 - rho) g^2 (3.44);  F <- rho_f F + (1 - rho_f) g (3.45);
    w <- w - lr_t F / (sqrt(A) + eps), lr_t already bias-corrected (3.46)."""
    t = w.dtype.type
    a_new = t(rho) * a + t(1 - rho) * g * g
    f_new = t(rho_f) * f + t(1 - rho_f) * g
    return _commit(g, (a, a_new), (f, f_new), (w, w - t(lr_t) * f_new / (np.sqrt(a_new) + t(eps))))


@_quiet
def clip_value(g, lo, hi):
    """g <- clip(g, lo, hi) in place (Sec. 3.5.5); returns (entries clipped, non-finite?)."""
    t = g.dtype.type
    n = int(np.count_nonzero((g > hi) | (g < lo)))
    bad = _commit(g, (g, np.clip(g, t(lo), t(hi))))
    return n, bad


def sum_squares(g):
    """sum of g^2 as a Python float (float64 accumulation); NaN/inf propagate."""
    return float(np.sum(np.square(g, dtype=np.float64)))


def scale_inplace(g, s):
    """g <- s g."""
    g *= g.dtype.type(s)


def ema_update(avg, w, c):
    """avg <- (1 - c) avg + c w: one Polyak-averaging step (Sec. 3.5.7)."""
    t = avg.dtype.type
    avg *= t(1 - c)
    avg += t(c) * w
