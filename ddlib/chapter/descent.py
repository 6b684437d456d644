"""Gradient descent on quadratics (Fig. 3.9) and on least squares (Sec. 3.3.2).

* ``QuadraticBowl``: L = sum_i c_i x_i^2, Fig. 3.9's x^2 + y^2 and x^2 + 4y^2;
* ``steepest_descent_path``, ``steps_to_converge``: fixed-step descent on any gradient;
* ``least_squares_descent``: full-batch descent on raw vs. preprocessed features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import check_int, check_positive
from .surfaces import QuadraticBowl  # the one Fig. 3.9 bowl; re-exported here

__all__ = ["QuadraticBowl", "steepest_descent_path", "steps_to_converge", "DescentResult",
           "least_squares_descent"]


# --------------------------------------------------------------------------- Fig. 3.9


def steepest_descent_path(grad_fn, start, lr, steps):
    """Fixed-step steepest descent x <- x - lr * grad(x); returns all steps+1 points.

    ``grad_fn`` maps a point (d,) to its gradient (d,).  Shape of the result: (steps+1, d).

    >>> steepest_descent_path(QuadraticBowl([1, 1]).grad, [1.0, 2.0], lr=0.5, steps=1)
    array([[1., 2.],
           [0., 0.]])
    """
    check_positive("lr", lr)
    steps = check_int("steps", steps, minimum=0)
    x = np.array(start, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"start must be a 1-D point, got shape {x.shape}")
    path = np.empty((steps + 1, x.size))
    path[0] = x
    for k in range(steps):
        x = x - lr * np.asarray(grad_fn(x), dtype=np.float64)
        path[k + 1] = x
        if not np.all(np.isfinite(x)):
            path[k + 2:] = np.nan
            break
    return path


def steps_to_converge(grad_fn, start, lr, tol=1e-6, max_steps=100_000, optimum=None):
    """Number of descent steps until ||x - optimum|| <= tol * ||start - optimum||.

    ``optimum`` defaults to the origin.  Returns None when ``max_steps`` is not enough or
    the iteration diverges.
    """
    check_positive("lr", lr)
    check_positive("tol", tol)
    max_steps = check_int("max_steps", max_steps)
    x = np.array(start, dtype=np.float64)
    opt = np.zeros_like(x) if optimum is None else np.asarray(optimum, dtype=np.float64)
    goal = tol * np.linalg.norm(x - opt)
    for k in range(max_steps + 1):
        dist = np.linalg.norm(x - opt)
        if dist <= goal:
            return k
        if not np.isfinite(dist):
            return None
        x = x - lr * np.asarray(grad_fn(x), dtype=np.float64)
    return None


# --------------------------------------------------------------------------- Sec. 3.3.2


@dataclass
class DescentResult:
    """Full-batch gradient descent on least squares: the loss per iteration and the set-up."""

    losses: np.ndarray
    lr: float
    optimum: float
    condition_number: float

    def iterations_to(self, gap):
        """First iteration whose loss is within ``gap`` of the optimum (None if never)."""
        hit = np.flatnonzero(self.losses - self.optimum <= gap)
        return int(hit[0]) if hit.size else None


def least_squares_descent(X, Y, steps=1000, lr=None):
    """Gradient descent on L(W, b) = ||X W + b - Y||^2 / (2n), from W = 0, b = 0.

    The Hessian is H = [X 1]^T [X 1] / n; ``lr`` defaults to 1 / lambda_max(H), the
    largest safe constant step, so the number of iterations is governed by the condition
    number lambda_max / lambda_min (over the directions the data spans).  X (n, d),
    Y (n, k) or (n,).  Returns a ``DescentResult`` with ``steps + 1`` losses.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    steps = check_int("steps", steps, minimum=0)
    n = X.shape[0]
    A = np.c_[X, np.ones(n)]
    lam = np.linalg.eigvalsh(A.T @ A / n)
    lam_max = float(lam[-1])
    span = lam[lam > lam_max * 1e-10]
    lr = 1.0 / lam_max if lr is None else check_positive("lr", lr)
    sol = np.linalg.lstsq(A, Y, rcond=None)[0]
    optimum = float(0.5 * np.sum((A @ sol - Y) ** 2) / n)
    Wb = np.zeros((A.shape[1], Y.shape[1]))
    losses = np.empty(steps + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps + 1):
            R = A @ Wb - Y
            losses[t] = 0.5 * np.sum(R * R) / n
            Wb -= lr * (A.T @ R) / n
    return DescentResult(losses, lr, optimum, float(lam_max / span[0]))
