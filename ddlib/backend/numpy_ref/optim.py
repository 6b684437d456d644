"""Fused optimizer steps written as equations.  Each updates its arrays in place and
returns True when the gradient held a non-finite value (the caller stops the step)."""

import numpy as np

__all__ = ["sgd_step", "momentum_step"]


def sgd_step(w, g, lr):
    """w <- w - lr g."""
    w -= w.dtype.type(lr) * g
    return not np.isfinite(g).all()


def momentum_step(w, v, g, lr, beta):
    """v <- beta v - lr g;  w <- w + v   (Sec. 3.5.2)."""
    v *= v.dtype.type(beta)
    v -= v.dtype.type(lr) * g
    w += v
    return not np.isfinite(g).all()
