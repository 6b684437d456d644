"""Update rules of Sec. 3.5, one equation each.  Updates are added: W <- W + update."""

from __future__ import annotations

from typing import NamedTuple

from ..errors import check_unit_interval
from .base import Transform, check_lr, lr_at, zeros_like_tree


class SGDState(NamedTuple):
    count: int


def sgd(lr=0.01):
    """Plain gradient descent: update = -lr * grad."""
    lr = check_lr(lr)

    def init(params):
        return SGDState(0)

    def update(grads, state, params=None):
        a = lr_at(lr, state.count)
        return {k: -a * g for k, g in grads.items()}, SGDState(state.count + 1)

    def fused(be, params, grads, state):
        a = lr_at(lr, state.count)
        bad = [k for k in params if be.sgd_step(params[k], grads[k], a)]
        return SGDState(state.count + 1), bad

    return Transform(init, update, fused, "sgd")


class MomentumState(NamedTuple):
    count: int
    velocity: dict


def momentum(lr=0.01, beta=0.9):
    """Momentum (Sec. 3.5.2): V <- beta V - lr grad, update = V.

    PyTorch's ``SGD(momentum=beta)`` keeps v <- beta v + grad and steps -lr v; with a
    constant rate the two trajectories are identical (V = -lr v).
    """
    lr = check_lr(lr)
    beta = check_unit_interval("beta", beta)

    def init(params):
        return MomentumState(0, zeros_like_tree(params))

    def update(grads, state, params=None):
        a = lr_at(lr, state.count)
        vel = {k: beta * state.velocity[k] - a * g for k, g in grads.items()}
        return dict(vel), MomentumState(state.count + 1, vel)

    def fused(be, params, grads, state):
        a = lr_at(lr, state.count)
        bad = [k for k in params if be.momentum_step(params[k], state.velocity[k], grads[k], a, beta)]
        return MomentumState(state.count + 1, state.velocity), bad

    return Transform(init, update, fused, "momentum")
