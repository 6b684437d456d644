"""Run a rule on a function given by its gradient: the path an optimizer takes (Figs. 3.9-3.17).

``trajectory`` is the one loop every picture uses; it honours ``rule.lookahead`` so Nesterov
rules see the gradient at W + beta V, exactly as the chapter writes them.  ``Trajectory`` is
the one record of such a path in ddlib: ``ddlib.chapter.surfaces.run`` returns it too,
with the losses along the way filled in.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..backend.arrays import tree_to_host
from ..errors import check_int
from .base import NonFiniteGradient, Transform


class Trajectory(NamedTuple):
    """The path of one rule from one start.

    ``points`` (T + 1, *shape) holds W_0 ... W_T; ``losses`` (T + 1,) the loss at each when
    the loss is known (``trajectory(..., value=f)``), else None; ``states`` the rule's state
    after each step (host copies, when recorded).  A run that diverged ends at its last
    finite point: ``diverged_at`` is the step whose result blew up (a non-finite gradient
    there, or a loss that is not finite or too large) and ``diverged_loss`` the loss there
    (inf when the gradient already failed), else both are None.
    """

    points: np.ndarray
    losses: np.ndarray | None = None
    states: list = []
    diverged_at: int | None = None
    diverged_loss: float | None = None
    rule: str = ""
    surface: str = ""

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def status(self) -> str:
        """'ok' or a sentence naming the step and the loss where the run blew up."""
        if self.diverged_at is None:
            return "ok"
        return f"diverged at step {self.diverged_at} (loss {self.diverged_loss:.3g})"

    @property
    def step_sizes(self) -> np.ndarray:
        """|W_t - W_(t-1)| for t = 1..T (e.g. AdaGrad's shrinking steps)."""
        flat = self.points.reshape(len(self.points), -1)
        return np.linalg.norm(np.diff(flat, axis=0), axis=1)

    def steps_to(self, tol, floor=0.0):
        """First step t with loss_t - floor <= tol (and staying so after), else None."""
        if self.losses is None:
            raise ValueError("steps_to needs the losses: run trajectory(..., value=f)")
        gap = self.losses - floor
        bad = np.flatnonzero(~(gap <= tol))
        if len(bad) == 0:
            return 0
        t = int(bad[-1]) + 1
        return t if t < len(gap) and not self.diverged else None


def trajectory(rule, grad, x0, steps, record_state=False, on_nonfinite="raise", name="w",
               value=None, max_loss=math.inf, label=""):
    """Apply ``rule`` for ``steps`` steps from ``x0`` using ``grad(x) -> dL/dx``.

    ``x0`` is an array (e.g. shape (2,) for a 2-D surface), float64 by default.
    ``value(points) -> losses`` (optional, vectorized over the first axis) fills
    ``Trajectory.losses``; a point whose loss is not finite or exceeds ``max_loss`` in
    size ends the path there.  ``on_nonfinite='raise'`` raises NonFiniteGradient at the
    first non-finite gradient; ``'stop'`` ends the path at the last good point and
    records the step in ``Trajectory.diverged_at``.  ``label`` names the function in the
    result (``Trajectory.surface``).

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
    diverged_at, diverged_loss = None, None
    for t in range(steps):
        at = rule.lookahead(params, state)[name] if rule.lookahead is not None else x
        g = np.asarray(grad(at), dtype=x.dtype)
        if not np.isfinite(g).all():
            if on_nonfinite == "raise":
                raise NonFiniteGradient(name, t)
            diverged_at, diverged_loss = t + 1, math.inf
            break
        updates, state = rule.update({name: g}, state, params)
        x += updates[name]
        points.append(x.copy())
        if record_state:
            states.append(tree_to_host(state))
    points = np.array(points)
    losses = None
    if value is not None:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            losses = np.asarray(value(points), dtype=np.float64).reshape(len(points))
        finite_point = np.isfinite(points.reshape(len(points), -1)).all(axis=1)
        ok = np.isfinite(losses) & (np.abs(losses) <= max_loss) & finite_point
        if not ok.all():
            diverged_at = int(np.argmin(ok))
            diverged_loss = float(losses[diverged_at])
            points, losses = points[:diverged_at], losses[:diverged_at]
            states = states[:max(diverged_at - 1, 0)]
    return Trajectory(points, losses, states, diverged_at, diverged_loss, rule.name, label)
