"""Gradient-descent strategies of Sec. 3.5 as composable update rules (optax style).

Rules (each one equation, explicit state, a fused kernel behind it):
``sgd``, ``momentum`` (3.5.2), ``nesterov`` (3.5.2.1, gradient at W + beta V via
``rule.lookahead``), ``delta_bar_delta`` (3.5.3), ``adagrad`` (Eq. 3.40), ``rmsprop``
(Eq. 3.41), ``rmsprop_nesterov`` (Eq. 3.42), ``adadelta`` (Eq. 3.43), ``adam``
(Eqs. 3.44-3.46).

Schedules (3.5.1): ``exponential_decay``, ``inverse_decay``, ``step_decay``,
``ReduceOnPlateau``.  Clipping (3.5.5): ``clip_by_value``, ``clip_by_norm``.  Weight decay
(L2): ``add_decayed_weights``, or ``weight_decay=`` on a rule.  Second order (3.5.6):
``second_order`` and its ``minimize`` (Newton, nonlinear CG, BFGS, L-BFGS), scipy-style.
Averaging (3.5.7): ``PolyakAverage``, ``average_path``.  Running: ``Optimizer`` over a
model, ``trajectory`` over a function given by its gradient, ``chain`` to combine.

Example::

    from ddlib import optim
    opt = optim.Optimizer(net, optim.chain(optim.clip_by_norm(5.0), optim.adam(1e-3)))
"""

from . import second_order  # (Sec. 3.5.6: second-order methods on functions)
from .averaging import PolyakAverage, average_path
from .base import (
    NonFiniteGradient,
    NonFiniteParameter,
    Optimizer,
    Transform,
    chain,
    lr_at,
    make_counters,
)
from .clipping import ClipState, clip_by_global_norm, clip_by_norm, clip_by_value
from .rules import (
    RULES,
    AdaDeltaState,
    AdaGradState,
    AdamState,
    DeltaBarDeltaState,
    MomentumState,
    RMSPropNesterovState,
    RMSPropState,
    SGDState,
    adadelta,
    adagrad,
    adam,
    adam_rate,
    delta_bar_delta,
    momentum,
    nesterov,
    rmsprop,
    rmsprop_nesterov,
    sgd,
)
from .run import Trajectory, trajectory
from .schedules import (
    ReduceLROnPlateau,
    ReduceOnPlateau,
    exponential_decay,
    inverse_decay,
    step_decay,
)
from .second_order import minimize
from .transforms import AddDecayedWeightsState, add_decayed_weights

__all__ = [
    "RULES", "AdaDeltaState", "AdaGradState", "AdamState", "AddDecayedWeightsState",
    "ClipState", "DeltaBarDeltaState", "MomentumState", "NonFiniteGradient",
    "NonFiniteParameter", "Optimizer",
    "PolyakAverage", "RMSPropNesterovState", "RMSPropState", "ReduceLROnPlateau",
    "ReduceOnPlateau", "SGDState", "Trajectory", "Transform", "adadelta", "adagrad", "adam",
    "adam_rate", "add_decayed_weights", "average_path", "chain", "clip_by_global_norm",
    "clip_by_norm", "clip_by_value", "delta_bar_delta", "exponential_decay", "inverse_decay",
    "lr_at", "make_counters", "momentum", "nesterov", "rmsprop", "rmsprop_nesterov", "sgd",
    "step_decay", "trajectory", "second_order", "minimize",
]
