"""Update rules of Sec. 3.5, one equation each.  Updates are added: W <- W + update.

Every rule takes ``lr`` as a constant or a schedule ``step -> rate`` (see ``schedules``),
keeps its state in a NamedTuple (print it, plot it), and carries a fused single-pass
kernel (``ddlib.backend.*.optim``) that the tests hold equal to the explicit equations.
The state's ``count`` is the number of steps taken so far; the rate used at a step is
``lr(count)``.

A fused kernel gets ``bad``, one non-finite counter per parameter (``base.make_counters``),
and adds to it the gradient entries it found NaN/inf, which it leaves untouched.

``weight_decay`` (sgd, momentum, nesterov, adagrad, rmsprop, adam, ...) is PyTorch's: the
L2 penalty's gradient weight_decay * W is added to the gradient before the rule sees it,
by chaining ``add_decayed_weights(weight_decay)`` in front (so there is one code path, and
the state becomes the chain's tuple).  The default 0 returns the bare rule.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..errors import check_positive, check_unit_interval
from .base import Transform, chain, check_lr, lr_at, zeros_like_tree
from .transforms import add_decayed_weights


def _decayed(rule, weight_decay):
    """``rule`` with L2 weight decay in front (PyTorch's ``weight_decay``): the gradient
    becomes g + weight_decay * W before the rule sees it.  0 returns the rule itself."""
    weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
    if weight_decay == 0.0:
        return rule
    return chain(add_decayed_weights(weight_decay), rule,
                 name=f"{rule.name}(weight_decay={weight_decay:g})")


# ---------------------------------------------------------------- plain SGD
class SGDState(NamedTuple):
    count: int


def sgd(lr=0.01, weight_decay=0.0):
    """Plain gradient descent: update = -lr * grad.

    ``weight_decay`` wd > 0 steps W <- W - lr (grad + wd W), PyTorch's ``SGD(weight_decay=)``
    (see the module docstring).  Example: ``Optimizer(net, sgd(0.1))``.
    """
    lr = check_lr(lr)

    def init(params):
        return SGDState(0)

    def update(grads, state, params=None):
        a = lr_at(lr, state.count)
        return {k: -a * g for k, g in grads.items()}, SGDState(state.count + 1)

    def fused(be, params, grads, state, bad, point=None):
        a = lr_at(lr, state.count)
        for k in params:
            be.sgd_step(params[k], grads[k], a, bad=bad[k])
        return SGDState(state.count + 1)

    return _decayed(Transform(init, update, fused, "sgd"), weight_decay)


# ---------------------------------------------------------------- momentum (3.5.2)
class MomentumState(NamedTuple):
    count: int
    velocity: dict


def momentum(lr=0.01, beta=0.9, weight_decay=0.0):
    """Momentum (Sec. 3.5.2): V <- beta V - lr grad, update = V.

    State: ``velocity`` V, one array per parameter, same shape.
    PyTorch's ``SGD(momentum=beta)`` keeps v <- beta v + grad and steps -lr v; with a
    constant rate the two trajectories are identical (V = -lr v).

    ``weight_decay``: as for ``sgd``, the gradient is g + wd W.
    Example: ``Optimizer(net, momentum(0.05, beta=0.9))``.
    """
    lr = check_lr(lr)
    beta = check_unit_interval("beta", beta)

    def init(params):
        return MomentumState(0, zeros_like_tree(params))

    def update(grads, state, params=None):
        a = lr_at(lr, state.count)
        vel = {k: beta * state.velocity[k] - a * g for k, g in grads.items()}
        return dict(vel), MomentumState(state.count + 1, vel)

    def fused(be, params, grads, state, bad, point=None):
        a = lr_at(lr, state.count)
        for k in params:
            be.momentum_step(params[k], state.velocity[k], grads[k], a, beta, bad=bad[k])
        return MomentumState(state.count + 1, state.velocity)

    return _decayed(Transform(init, update, fused, "momentum"), weight_decay)


def _shifted(beta):
    """lookahead for Nesterov-type rules: the gradient is taken at W + beta V."""

    def lookahead(params, state):
        return {k: p + beta * state.velocity[k] for k, p in params.items()}

    return lookahead


def nesterov(lr=0.01, beta=0.9, weight_decay=0.0):
    """Nesterov momentum (Sec. 3.5.2.1): V <- beta V - lr dL(W + beta V)/dW, update = V.

    The gradient belongs to the lookahead point W + beta V, which the rule names through
    ``rule.lookahead(params, state)``; ``Optimizer`` and ``trajectory`` evaluate gradients
    there (the Optimizer keeps the model's parameters at that point between steps and the
    iterate W in ``Optimizer.iterate``).  State: ``velocity`` V.

    Relation to PyTorch's ``SGD(momentum=beta, nesterov=True)``: PyTorch stores the
    lookahead point P = W + beta V as "the parameters" and steps P <- P - lr (g + beta v),
    v <- beta v + g.  With a constant rate, V = -lr v and PyTorch's parameters equal our
    lookahead point at every step, so the two produce the same gradients and losses; only
    which of W and P is called "the weights" differs.

    ``weight_decay`` adds wd W to the gradient, W the iterate (not the lookahead point,
    where PyTorch, which stores the lookahead point as its weights, takes it).

    Example: ``trajectory(nesterov(0.1, 0.9), surface.grad, x0, steps=50)``.
    """
    # the same state and equation as momentum; only where the gradient is taken differs
    base = momentum(lr, beta)

    def fused(be, params, grads, state, bad, point=None):
        a = lr_at(lr, state.count)
        for k in params:
            be.nesterov_step(params[k], state.velocity[k], grads[k], a, beta,
                             None if point is None else point[k], bad=bad[k])
        return MomentumState(state.count + 1, state.velocity)

    return _decayed(Transform(base.init, base.update, fused, "nesterov", _shifted(beta)),
                    weight_decay)


# ---------------------------------------------------------------- delta-bar-delta (3.5.3)
class DeltaBarDeltaState(NamedTuple):
    count: int
    bar: dict  # exponentially smoothed past gradient (delta-bar)
    gain: dict  # per-parameter multiplier of the global rate


def delta_bar_delta(lr=0.01, kappa=0.05, phi=0.2, theta=0.7, weight_decay=0.0):
    """Delta-bar-delta (Sec. 3.5.3, Jacobs 1988): a rate per parameter, grown while the sign holds.

    With delta = grad and delta_bar the smoothed past gradient:
    gain <- gain + kappa if delta_bar * delta > 0; gain <- (1 - phi) gain if < 0;
    update = -lr * gain * delta; then delta_bar <- (1 - theta) delta + theta delta_bar.
    Gains start at 1, so the rate of parameter i is lr * gain_i (Jacobs adds kappa to the
    rate itself; with a constant lr that is our rule with kappa scaled by lr).

    Example: ``Optimizer(net, delta_bar_delta(0.01, kappa=0.05, phi=0.2))``.
    """
    lr = check_lr(lr)
    kappa = check_positive("kappa", kappa, allow_zero=True)
    phi = check_unit_interval("phi", phi)
    theta = check_unit_interval("theta", theta)

    def init(params):
        return DeltaBarDeltaState(0, zeros_like_tree(params), zeros_like_tree(params, 1.0))

    def update(grads, state, params=None):
        a = lr_at(lr, state.count)
        bar, gain, out = {}, {}, {}
        for k, g in grads.items():
            agree = state.bar[k] * g
            gk = np.where(agree > 0, state.gain[k] + kappa,
                          np.where(agree < 0, (1 - phi) * state.gain[k], state.gain[k]))
            gain[k] = gk
            out[k] = -a * gk * g
            bar[k] = (1 - theta) * g + theta * state.bar[k]
        return out, DeltaBarDeltaState(state.count + 1, bar, gain)

    def fused(be, params, grads, state, bad, point=None):
        a = lr_at(lr, state.count)
        for k in params:
            be.delta_bar_delta_step(params[k], state.bar[k], state.gain[k], grads[k], a,
                                    kappa, phi, theta, bad=bad[k])
        return DeltaBarDeltaState(state.count + 1, state.bar, state.gain)

    return _decayed(Transform(init, update, fused, "delta_bar_delta"), weight_decay)


# ---------------------------------------------------------------- AdaGrad (Eq. 3.40)
class AdaGradState(NamedTuple):
    count: int
    sum_sq: dict  # A: running sum of squared gradients


def adagrad(lr=0.01, eps=1e-8, weight_decay=0.0):
    """AdaGrad (Eq. 3.40): A <- A + grad^2, update = -lr grad / (sqrt(A) + eps).

    State: ``sum_sq`` A, one array per parameter.  Same as PyTorch's ``Adagrad`` with no
    rate decay; ``weight_decay`` is its L2 term (g + wd W).
    Example: ``Optimizer(net, adagrad(0.1))``.
    """
    lr = check_lr(lr)
    eps = check_positive("eps", eps)

    def init(params):
        return AdaGradState(0, zeros_like_tree(params))

    def update(grads, state, params=None):
        a = lr_at(lr, state.count)
        acc = {k: state.sum_sq[k] + g * g for k, g in grads.items()}
        out = {k: -a * g / (np.sqrt(acc[k]) + eps) for k, g in grads.items()}
        return out, AdaGradState(state.count + 1, acc)

    def fused(be, params, grads, state, bad, point=None):
        a = lr_at(lr, state.count)
        for k in params:
            be.adagrad_step(params[k], state.sum_sq[k], grads[k], a, eps, bad=bad[k])
        return AdaGradState(state.count + 1, state.sum_sq)

    return _decayed(Transform(init, update, fused, "adagrad"), weight_decay)


# ---------------------------------------------------------------- RMSProp (Eq. 3.41)
class RMSPropState(NamedTuple):
    count: int
    mean_sq: dict  # A: exponentially averaged squared gradient


def rmsprop(lr=0.001, rho=0.9, eps=1e-8, weight_decay=0.0):
    """RMSProp (Eq. 3.41): A <- rho A + (1 - rho) grad^2, update = -lr grad / (sqrt(A) + eps).

    State: ``mean_sq`` A.  PyTorch's ``RMSprop(alpha=rho)`` is the same rule, and
    ``weight_decay`` its L2 term (g + wd W).
    Example: ``Optimizer(net, rmsprop(1e-3, rho=0.9))``.
    """
    lr = check_lr(lr)
    rho = check_unit_interval("rho", rho)
    eps = check_positive("eps", eps)

    def init(params):
        return RMSPropState(0, zeros_like_tree(params))

    def update(grads, state, params=None):
        a = lr_at(lr, state.count)
        acc = {k: rho * state.mean_sq[k] + (1 - rho) * g * g for k, g in grads.items()}
        out = {k: -a * g / (np.sqrt(acc[k]) + eps) for k, g in grads.items()}
        return out, RMSPropState(state.count + 1, acc)

    def fused(be, params, grads, state, bad, point=None):
        a = lr_at(lr, state.count)
        for k in params:
            be.rmsprop_step(params[k], state.mean_sq[k], grads[k], a, rho, eps, bad=bad[k])
        return RMSPropState(state.count + 1, state.mean_sq)

    return _decayed(Transform(init, update, fused, "rmsprop"), weight_decay)


# ---------------------------------------------------------------- RMSProp + Nesterov (Eq. 3.42)
class RMSPropNesterovState(NamedTuple):
    count: int
    velocity: dict  # V
    mean_sq: dict  # A, fed with gradients taken at the lookahead point


def rmsprop_nesterov(lr=0.001, beta=0.9, rho=0.9, eps=1e-8, weight_decay=0.0):
    """RMSProp with Nesterov momentum (Eq. 3.42), gradient g taken at W + beta V.

    A <- rho A + (1 - rho) g^2;  V <- beta V - lr g / (sqrt(A) + eps);  update = V.
    Like ``nesterov``, the rule exposes ``lookahead``; no bias correction (unlike Adam).
    Example: ``trajectory(rmsprop_nesterov(0.01), surface.grad, x0, steps=100)``.
    """
    lr = check_lr(lr)
    beta = check_unit_interval("beta", beta)
    rho = check_unit_interval("rho", rho)
    eps = check_positive("eps", eps)

    def init(params):
        return RMSPropNesterovState(0, zeros_like_tree(params), zeros_like_tree(params))

    def update(grads, state, params=None):
        a = lr_at(lr, state.count)
        acc = {k: rho * state.mean_sq[k] + (1 - rho) * g * g for k, g in grads.items()}
        vel = {k: beta * state.velocity[k] - a * g / (np.sqrt(acc[k]) + eps)
               for k, g in grads.items()}
        return dict(vel), RMSPropNesterovState(state.count + 1, vel, acc)

    def fused(be, params, grads, state, bad, point=None):
        a = lr_at(lr, state.count)
        for k in params:
            be.rmsprop_nesterov_step(params[k], state.velocity[k], state.mean_sq[k], grads[k],
                                     a, beta, rho, eps, None if point is None else point[k],
                                     bad=bad[k])
        return RMSPropNesterovState(state.count + 1, state.velocity, state.mean_sq)

    return _decayed(Transform(init, update, fused, "rmsprop_nesterov", _shifted(beta)),
                    weight_decay)


# ---------------------------------------------------------------- AdaDelta (Eq. 3.43)
class AdaDeltaState(NamedTuple):
    count: int
    mean_sq: dict  # A: averaged squared gradient
    mean_sq_delta: dict  # delta: averaged squared increment


def adadelta(lr=1.0, rho=0.95, eps=1e-6, weight_decay=0.0):
    """AdaDelta (Eq. 3.43, Zeiler 2012): the rate comes from past increments.

    A <- rho A + (1 - rho) g^2;  dw = -sqrt(delta + eps) / sqrt(A + eps) * g;
    delta <- rho delta + (1 - rho) dw^2;  update = lr * dw.
    eps sits inside both square roots as in Zeiler's paper: delta starts at 0, and without
    eps in the numerator the first step, and so every later one, would be zero.  ``lr`` is
    a plain multiplier (1.0 is the chapter's rate-free rule; PyTorch's ``Adadelta`` has the
    same form).  Example: ``Optimizer(net, adadelta())``.
    """
    lr = check_lr(lr)
    rho = check_unit_interval("rho", rho)
    eps = check_positive("eps", eps)

    def init(params):
        return AdaDeltaState(0, zeros_like_tree(params), zeros_like_tree(params))

    def update(grads, state, params=None):
        a = lr_at(lr, state.count)
        acc, dacc, out = {}, {}, {}
        for k, g in grads.items():
            acc[k] = rho * state.mean_sq[k] + (1 - rho) * g * g
            dw = -np.sqrt(state.mean_sq_delta[k] + eps) / np.sqrt(acc[k] + eps) * g
            dacc[k] = rho * state.mean_sq_delta[k] + (1 - rho) * dw * dw
            out[k] = a * dw
        return out, AdaDeltaState(state.count + 1, acc, dacc)

    def fused(be, params, grads, state, bad, point=None):
        a = lr_at(lr, state.count)
        for k in params:
            be.adadelta_step(params[k], state.mean_sq[k], state.mean_sq_delta[k], grads[k],
                             a, rho, eps, bad=bad[k])
        return AdaDeltaState(state.count + 1, state.mean_sq, state.mean_sq_delta)

    return _decayed(Transform(init, update, fused, "adadelta"), weight_decay)


# ---------------------------------------------------------------- Adam (Eqs. 3.44-3.46)
class AdamState(NamedTuple):
    count: int
    mean: dict  # F: averaged gradient (Eq. 3.45)
    mean_sq: dict  # A: averaged squared gradient (Eq. 3.44)


def adam_rate(lr, t, rho_f, rho, bias_correction=True):
    """The step size alpha_t of Eq. 3.46 at step t >= 1: lr sqrt(1 - rho^t) / (1 - rho_f^t)."""
    if not bias_correction:
        return lr
    return lr * math.sqrt(1.0 - rho**t) / (1.0 - rho_f**t)


def adam(lr=0.001, rho_f=0.9, rho=0.999, eps=1e-8, bias_correction=True, weight_decay=0.0):
    """Adam (Eqs. 3.44-3.46): RMSProp's scaling applied to a smoothed gradient.

    A <- rho A + (1 - rho) g^2 (3.44);  F <- rho_f F + (1 - rho_f) g (3.45);
    update = -alpha_t F / (sqrt(A) + eps), alpha_t = lr sqrt(1 - rho^t) / (1 - rho_f^t)
    (3.46) at step t = 1, 2, ...; ``bias_correction=False`` uses alpha_t = lr.

    PyTorch's ``Adam(betas=(rho_f, rho))`` corrects F and A themselves:
    -lr (F / (1 - rho_f^t)) / (sqrt(A / (1 - rho^t)) + eps).  Multiplying through shows it
    is our update with eps replaced by eps sqrt(1 - rho^t); the two differ only in how
    much eps matters in the first steps (Kingma and Ba give both forms).

    ``weight_decay`` wd is the coupled L2 form of ``torch.optim.Adam(weight_decay=wd)``:
    g + wd W enters both averages (3.44, 3.45), so the decay is rescaled by sqrt(A) like
    the gradient.  It is not AdamW's decoupled decay, which subtracts lr wd W from the
    weights beside the Adam step and which ddlib does not provide.

    Example: ``Optimizer(net, adam(1e-3))``.
    """
    lr = check_lr(lr)
    rho_f = check_unit_interval("rho_f", rho_f)
    rho = check_unit_interval("rho", rho)
    eps = check_positive("eps", eps)
    bias_correction = bool(bias_correction)

    def init(params):
        return AdamState(0, zeros_like_tree(params), zeros_like_tree(params))

    def rate(count):
        return adam_rate(lr_at(lr, count), count + 1, rho_f, rho, bias_correction)

    def update(grads, state, params=None):
        at = rate(state.count)
        acc = {k: rho * state.mean_sq[k] + (1 - rho) * g * g for k, g in grads.items()}
        mean = {k: rho_f * state.mean[k] + (1 - rho_f) * g for k, g in grads.items()}
        out = {k: -at * mean[k] / (np.sqrt(acc[k]) + eps) for k in grads}
        return out, AdamState(state.count + 1, mean, acc)

    def fused(be, params, grads, state, bad, point=None):
        at = rate(state.count)
        for k in params:
            be.adam_step(params[k], state.mean[k], state.mean_sq[k], grads[k], at, rho_f, rho,
                         eps, bad=bad[k])
        return AdamState(state.count + 1, state.mean, state.mean_sq)

    return _decayed(Transform(init, update, fused, "adam"), weight_decay)


RULES = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "delta_bar_delta": delta_bar_delta,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "rmsprop_nesterov": rmsprop_nesterov,
    "adadelta": adadelta,
    "adam": adam,
}
