"""Run a rule on a function given by its gradient: the path an optimizer takes (Figs. 3.9-3.17).

``trajectory`` is the one loop every picture uses; it honours ``rule.lookahead`` so Nesterov
rules see the gradient at W + beta V, exactly as the chapter writes them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import check_int
from .base import NonFiniteGradient, Transform, _to_host


class Trajectory(NamedTuple):
    points: np.ndarray  # (steps + 1, *x0.shape): W_0, W_1, ...
    states: list  # rule state after each step (host copies) when record_state, else []
    stopped: int | None  # step at which a non-finite gradient stopped the run, else None


def trajectory(rule, grad, x0, steps, record_state=False, on_nonfinite="raise", name="w"):
    """Apply ``rule`` for ``steps`` steps from ``x0`` using ``grad(x) -> dL/dx``.

    ``x0`` is an array (e.g. shape (2,) for a 2-D surface), float64 by default.
    ``on_nonfinite='raise'`` raises NonFiniteGradient; ``'stop'`` ends the path early and
    reports the step in ``Trajectory.stopped``.

    Example::

        path = trajectory(momentum(0.05, 0.9), lambda w: np.array([2 * w[0], 20 * w[1]]),
                          np.array([-1.0, 1.0]), steps=100)
        path.points.shape   # (101, 2)
    """
    if not isinstance(rule, Transform):
        raise TypeError(f"rule must be a ddlib.optim Transform, got {type(rule).__name__}")
    steps = check_int("steps", steps, minimum=0)
    if on_nonfinite not in ("raise", "stop"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'stop', got {on_nonfinite!r}")
    x = np.array(x0, dtype=np.result_type(np.asarray(x0).dtype, np.float64), copy=True)
    params = {name: x}
    state = rule.init(params)
    points = [x.copy()]
    states = []
    stopped = None
    for t in range(steps):
        at = rule.lookahead(params, state)[name] if rule.lookahead is not None else x
        g = np.asarray(grad(at), dtype=x.dtype)
        if not np.isfinite(g).all():
            if on_nonfinite == "raise":
                raise NonFiniteGradient(name, t)
            stopped = t
            break
        updates, state = rule.update({name: g}, state, params)
        x += updates[name]
        points.append(x.copy())
        if record_state:
            states.append(_to_host(state))
    return Trajectory(np.array(points), states, stopped)
