"""Gradient transforms beside clipping: weight decay (L2 regularization as an update step).

``add_decayed_weights(wd)`` adds the gradient of the penalty (wd / 2) ||W||^2 to the
gradient, g <- g + wd W, before the rule chained after it sees g.  It is optax's
``add_decayed_weights`` and what PyTorch's optimizers do with ``weight_decay=wd``; the
rules' own ``weight_decay`` keyword (``sgd(0.1, weight_decay=1e-4)``) is this transform
chained in front of them::

    chain(add_decayed_weights(1e-4), sgd(0.1))    # W <- W - 0.1 (g + 1e-4 W)

With plain SGD this shrinks the weights by the factor (1 - lr wd) each step, hence the
name; with an adaptive rule (Adam) the decay term is rescaled with the gradient.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import check_positive
from .base import Transform


class AddDecayedWeightsState(NamedTuple):
    count: int


def _mask_of(mask, params):
    """{name: bool} from ``mask`` (None: every parameter; a dict; or a callable on params)."""
    if mask is None:
        return {k: True for k in params}
    m = mask(params) if callable(mask) else mask
    if not isinstance(m, dict) or set(m) != set(params):
        got = sorted(m) if isinstance(m, dict) else type(m).__name__
        raise ValueError(f"add_decayed_weights: mask must name every parameter "
                         f"{sorted(params)}, got {got}")
    return {k: bool(v) for k, v in m.items()}


def add_decayed_weights(weight_decay, mask=None):
    """g <- g + weight_decay * W for every parameter (or those ``mask`` selects).

    weight_decay: a finite number >= 0 (0 leaves the gradient as it is)
    mask:         None (decay everything), a dict {name: bool}, or a callable
                  ``params -> {name: bool}``, e.g. to leave biases alone:
                  ``mask=lambda p: {k: not k.endswith(".b") for k in p}``

    A gradient transform (``kind='grad'``): chain it before a rule.  The fused path is the
    backend's ``axpy`` kernel, in place on the gradient; an entry whose gradient is NaN or
    inf stays as it is and is counted.  Example::

        Optimizer(net, chain(add_decayed_weights(5e-4), momentum(0.05, 0.9)))
    """
    weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
    if mask is not None and not (callable(mask) or isinstance(mask, dict)):
        raise TypeError(f"add_decayed_weights: mask must be None, a dict or a callable, "
                        f"got {type(mask).__name__}")

    def init(params):
        _mask_of(mask, params)  # a mask that does not fit the parameters fails here
        return AddDecayedWeightsState(0)

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("add_decayed_weights needs the parameters: call "
                             "update(grads, state, params)")
        m = _mask_of(mask, params)
        out = {k: g + weight_decay * params[k] if m[k] else g for k, g in grads.items()}
        return out, AddDecayedWeightsState(state.count + 1)

    def fused(be, params, grads, state, bad, point=None):
        m = _mask_of(mask, params)
        for k, g in grads.items():
            if m[k]:
                be.axpy(g, weight_decay, params[k], bad=bad[k])
        return AddDecayedWeightsState(state.count + 1)

    return Transform(init, update, fused, f"add_decayed_weights({weight_decay:g})", kind="grad")
