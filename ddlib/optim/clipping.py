"""Gradient clipping (Sec. 3.5.5) as gradient transforms, chained before a rule.

``chain(clip_by_value(1.0), sgd(0.1))`` clips each entry to [-1, 1] and then steps;
``chain(clip_by_norm(5.0), adam())`` rescales the whole gradient when its L2 norm exceeds 5
(``per_parameter=True`` rescales each parameter's gradient on its own).  Clipping keeps the
direction (by norm) or the sign pattern (by value) and only bounds the size, which is what
rescues a fixed-rate method at a cliff (Sec. 3.5.4).

What a step saw is kept in ``ClipState.last``: the entries clipped (by value) or the
norm(s) before clipping (by norm), as small arrays on the parameters' side -- a (1,)
array, or per parameter a dict of them -- so that the fused kernels write into them and
a step on the GPU copies nothing back.  ``float(state.last[0])`` (host) or
``ddlib.device.to_host`` (GPU) reads them.  The fused kernels run the same code on every
backend; a NaN/inf gradient entry is left as it is, left out of the norm, and counted
against its parameter.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from ..backend.arrays import zeros
from ..errors import check_positive
from .base import COUNTER_DTYPE, Transform


class ClipState(NamedTuple):
    count: int
    last: object  # what the last step saw: (1,) array (entries clipped, or the norm), or a
    #               dict of (1,) norms per parameter


def _like(params):
    return next(iter(params.values()), None)


def clip_by_value(max_value, min_value=None):
    """Clip every gradient entry to [min_value, max_value] (min_value defaults to -max_value).

    Example: ``chain(clip_by_value(0.5), momentum(0.1))``.  State ``last``: a (1,) int64
    array, the entries clipped at the last step (on the parameters' side).
    """
    hi = check_positive("max_value", max_value)
    if min_value is None:
        lo = -hi
    else:
        if isinstance(min_value, bool) or not isinstance(min_value, numbers.Real):
            raise TypeError(f"min_value must be a real number, got {min_value!r}")
        if not math.isfinite(min_value) or min_value >= hi:
            raise ValueError(f"min_value must be finite and below max_value={hi}, got "
                             f"{min_value!r}")
        lo = float(min_value)

    def init(params):
        return ClipState(0, zeros((1,), COUNTER_DTYPE, like=_like(params)))

    def update(grads, state, params=None):
        n = sum(int(np.count_nonzero((g > hi) | (g < lo))) for g in grads.values())
        return ({k: np.clip(g, lo, hi) for k, g in grads.items()},
                ClipState(state.count + 1, np.array([n], dtype=COUNTER_DTYPE)))

    def fused(be, params, grads, state, bad, point=None):
        be.clip_values(grads.values(), lo, hi, state.last, [bad[k] for k in grads])
        return ClipState(state.count + 1, state.last)

    return Transform(init, update, fused, "clip_by_value", kind="grad")


def clip_by_norm(max_norm, per_parameter=False):
    """Rescale the gradient to L2 norm ``max_norm`` when it is longer (Sec. 3.5.5).

    Global (default): one norm over all parameters, ||g|| = sqrt(sum_k ||g_k||^2), one scale
    for all, so the direction of the full gradient is kept (PyTorch's clip_grad_norm_).
    ``per_parameter=True``: each parameter's gradient is clipped by its own norm.
    State ``last``: the norm before clipping, a (1,) float64 array (a dict of them, by
    parameter name, when per parameter), on the parameters' side.  On the GPU the norms
    are computed, compared and applied there: no step waits for a copy.
    """
    max_norm = check_positive("max_norm", max_norm)
    per_parameter = bool(per_parameter)

    def init(params):
        like = _like(params)
        if per_parameter:
            return ClipState(0, {k: zeros((1,), np.float64, like=like) for k in params})
        return ClipState(0, zeros((1,), np.float64, like=like))

    def scale(norm):
        return max_norm / norm if norm > max_norm else 1.0

    def update(grads, state, params=None):
        norms = {k: float(np.sqrt(np.sum(g * g))) for k, g in grads.items()}
        if per_parameter:
            out = {k: g * scale(norms[k]) for k, g in grads.items()}
            return out, ClipState(state.count + 1, {k: np.array([v]) for k, v in norms.items()})
        total = math.sqrt(sum(n * n for n in norms.values()))
        s = scale(total)
        return ({k: g * s for k, g in grads.items()},
                ClipState(state.count + 1, np.array([total])))

    def fused(be, params, grads, state, bad, point=None):
        norms = [state.last[k] for k in grads] if per_parameter else [state.last]
        be.clip_norms(grads.values(), max_norm, norms, [bad[k] for k in grads], per_parameter)
        return ClipState(state.count + 1, state.last)

    return Transform(init, update, fused,
                     "clip_by_norm" + ("/param" if per_parameter else ""), kind="grad")


def clip_by_global_norm(max_norm):
    """``clip_by_norm(max_norm)``: one norm over all parameters (optax's name)."""
    return clip_by_norm(max_norm, per_parameter=False)
