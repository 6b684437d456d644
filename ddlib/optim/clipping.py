"""Gradient clipping (Sec. 3.5.5) as gradient transforms, chained before a rule.

``chain(clip_by_value(1.0), sgd(0.1))`` clips each entry to [-1, 1] and then steps;
``chain(clip_by_norm(5.0), adam())`` rescales the whole gradient when its L2 norm exceeds 5
(``per_parameter=True`` rescales each parameter's gradient on its own).  Clipping keeps the
direction (by norm) or the sign pattern (by value) and only bounds the size, which is what
rescues a fixed-rate method at a cliff (Sec. 3.5.4).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from ..errors import check_positive
from .base import Transform


class ClipState(NamedTuple):
    count: int
    last: object  # what the last call saw: entries clipped, or the norm(s) before clipping


def clip_by_value(max_value, min_value=None):
    """Clip every gradient entry to [min_value, max_value] (min_value defaults to -max_value).

    Example: ``chain(clip_by_value(0.5), momentum(0.1))``.  State ``last``: entries clipped
    (on the cuda backend a one-entry int32 device array, so that a step copies nothing back;
    ``ddlib.device.to_host`` reads it).
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
        return ClipState(0, 0)

    def update(grads, state, params=None):
        n = sum(int(np.count_nonzero((g > hi) | (g < lo))) for g in grads.values())
        return {k: np.clip(g, lo, hi) for k, g in grads.items()}, ClipState(state.count + 1, n)

    def fused(be, params, grads, state, point=None):
        on_device = getattr(be, "clip_value_device", None)
        if on_device is not None:  # cuda: nothing comes back; last = device (clipped, bad)
            counts = on_device(grads.values(), lo, hi)
            return ClipState(state.count + 1, counts[0:1]), []
        n, bad = 0, []
        for k, g in grads.items():
            clipped, b = be.clip_value(g, lo, hi)
            n += clipped
            if b:
                bad.append(k)
        return ClipState(state.count + 1, n), bad

    return Transform(init, update, fused, "clip_by_value", kind="grad")


def clip_by_norm(max_norm, per_parameter=False):
    """Rescale the gradient to L2 norm ``max_norm`` when it is longer (Sec. 3.5.5).

    Global (default): one norm over all parameters, ||g|| = sqrt(sum_k ||g_k||^2), one scale
    for all, so the direction of the full gradient is kept (PyTorch's clip_grad_norm_).
    ``per_parameter=True``: each parameter's gradient is clipped by its own norm.
    State ``last``: the norm before clipping (a dict of norms when per parameter).  On the
    cuda backend the norms are computed, compared and applied on the GPU and ``last`` holds
    one-entry float64 device arrays (``ddlib.device.to_host`` reads them): no step waits
    for a copy back to the host.
    """
    max_norm = check_positive("max_norm", max_norm)
    per_parameter = bool(per_parameter)

    def init(params):
        return ClipState(0, {k: 0.0 for k in params} if per_parameter else 0.0)

    def scale(norm):
        return max_norm / norm if norm > max_norm else 1.0

    def update(grads, state, params=None):
        norms = {k: float(np.sqrt(np.sum(g * g))) for k, g in grads.items()}
        if per_parameter:
            out = {k: g * scale(norms[k]) for k, g in grads.items()}
            return out, ClipState(state.count + 1, norms)
        total = math.sqrt(sum(n * n for n in norms.values()))
        s = scale(total)
        return {k: g * s for k, g in grads.items()}, ClipState(state.count + 1, total)

    def fused(be, params, grads, state, point=None):
        on_device = getattr(be, "clip_norm_device", None)
        if on_device is not None:  # cuda: the norms stay on the GPU (a float64 device array)
            norms = on_device(grads.values(), max_norm, per_parameter)
            last = ({k: norms[i:i + 1] for i, k in enumerate(grads)} if per_parameter
                    else norms)
            return ClipState(state.count + 1, last), []
        sq = {k: be.sum_squares(g) for k, g in grads.items()}
        bad = [k for k, v in sq.items() if not math.isfinite(v)]
        if bad:
            return ClipState(state.count + 1, state.last), bad
        norms = {k: math.sqrt(v) for k, v in sq.items()}
        if per_parameter:
            for k, g in grads.items():
                if norms[k] > max_norm:
                    be.scale_inplace(g, scale(norms[k]))
            return ClipState(state.count + 1, norms), []
        total = math.sqrt(sum(sq.values()))
        if total > max_norm:
            for g in grads.values():
                be.scale_inplace(g, scale(total))
        return ClipState(state.count + 1, total), []

    return Transform(init, update, fused,
                     "clip_by_norm" + ("/param" if per_parameter else ""), kind="grad")


def clip_by_global_norm(max_norm):
    """``clip_by_norm(max_norm)``: one norm over all parameters (optax's name)."""
    return clip_by_norm(max_norm, per_parameter=False)
