"""Linear conjugate gradients for H x = b (Sec. 3.5.6.1, Eqs. 3.49-3.50).

Solving H x = b with H symmetric positive definite is minimizing the quadratic bowl
L(x) = 1/2 x^T H x - b^T x, whose gradient is H x - b = -r (r the residual).  Each
iteration moves along a direction q_t by the exact minimizing step, then builds the next
direction from the new steepest-descent direction r_{t+1} and q_t alone (Eq. 3.49), with
the coefficient chosen to make q_{t+1} H-conjugate to q_t (Eq. 3.50).  For a quadratic
Eq. 3.50's beta equals r_{t+1}^T r_{t+1} / r_t^T r_t, which needs no extra product with
H; that is the form used here (the tests check the two agree).  Conjugacy means no later
step undoes an earlier one, so at most d steps are needed, and exactly k when H has k
distinct eigenvalues (in exact arithmetic).

H is only touched through products H v, so a finite-difference or R-operator product
(Eq. 3.51) drives the same loop: the Hessian-free setting.  For that use the solver can
stop at the first direction of non-positive curvature q^T H q <= 0 and keeps all its
iterates so that a caller can backtrack to an earlier, better one.

Precision: products are requested with vectors in b's dtype (float32 stays float32);
the recurrences themselves run in float64 and ``x`` is returned in b's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import check_int, check_positive

REASONS = ("converged", "maxiter", "negative_curvature", "progress")

#: Martens (2010) keeps the CG iterates of iterations ceil(1.3^j) for backtracking
GEOMETRIC_RATIO = 1.3


@dataclass
class LinearCGResult:
    """What ``linear_cg`` found.

    ``x`` (d,): the last iterate (on negative curvature: the iterate before the offending
    direction); ``residuals`` (nit + 1,): ||b - H x_t|| for t = 0..nit from the
    recurrence; ``nit``: iterations (products with H, not counting one for a nonzero
    x0); ``reason``: one of "converged", "maxiter", "negative_curvature"; ``success``:
    reason == "converged"; ``negative_curvature``: True if some q^T H q <= 0 was met, and
    ``negative_curvature_direction`` that q; ``iterates`` (nit + 1, d) and ``directions``
    (nit, d) when ``keep_iterates``; ``curvatures`` (nit,): q_t^T H q_t; ``message``.
    """

    x: np.ndarray
    residuals: np.ndarray
    nit: int
    reason: str
    success: bool
    message: str
    negative_curvature: bool = False
    negative_curvature_direction: np.ndarray | None = None
    curvatures: np.ndarray = field(default_factory=lambda: np.zeros(0))
    iterates: np.ndarray | None = None
    directions: np.ndarray | None = None
    iterate_steps: np.ndarray | None = None
    quadratic: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _geometric_steps(maxiter, ratio=GEOMETRIC_RATIO):
    """{ceil(ratio^j)} up to maxiter: the iterations whose iterates Martens keeps."""
    steps, j = set(), 0
    while True:
        k = int(np.ceil(ratio ** j))
        if k > maxiter:
            return steps
        steps.add(k)
        j += 1


def _as_operator(H, n, dtype):
    """H as a function v (float64) -> H v (float64); checks a matrix is square and symmetric."""
    if callable(H):
        def product(v):
            out = np.asarray(H(v.astype(dtype, copy=False)), dtype=np.float64).reshape(-1)
            if out.size != n:
                raise ValueError(f"the product H(v) returned {out.size} entries, expected {n}")
            return out
        return product
    A = np.asarray(H)
    if A.dtype.kind not in "iuf":
        raise TypeError(f"H must be a real matrix or a function v -> H v, got dtype {A.dtype}")
    if A.shape != (n, n):
        raise ValueError(f"H must have shape {(n, n)} to match b, got {A.shape}")
    A = A.astype(np.float64)
    if not np.isfinite(A).all():
        raise ValueError("H contains non-finite values")
    asym = float(np.max(np.abs(A - A.T), initial=0.0))
    scale = float(np.max(np.abs(A), initial=0.0))
    if asym > np.sqrt(np.finfo(dtype).eps) * scale:
        raise ValueError(f"H must be symmetric: max |H - H^T| = {asym:.3g} (max |H| = "
                         f"{scale:.3g}); conjugate gradients needs a symmetric matrix")
    return lambda v: A @ v


def _as_preconditioner(M, n, dtype):
    if M is None:
        return None
    if callable(M):
        return lambda r: np.asarray(M(r.astype(dtype, copy=False)),
                                    dtype=np.float64).reshape(-1)
    A = np.asarray(M, dtype=np.float64)
    if A.shape == (n,):
        if not (np.isfinite(A).all() and (A > 0).all()):
            raise ValueError("M as a diagonal (approximating the diagonal of H^-1) must be "
                             "finite and positive")
        return lambda r: A * r
    if A.shape == (n, n):
        return lambda r: A @ r
    raise ValueError(f"M must be a function, a diagonal of shape {(n,)} or a matrix of shape "
                     f"{(n, n)}, got shape {A.shape}")


def linear_cg(H, b, x0=None, *, tol=1e-5, atol=0.0, maxiter=None, M=None,
              on_negative_curvature="stop", keep_iterates=True, callback=None,
              progress_tol=None):
    """Solve H x = b by (preconditioned) conjugate gradients (Eqs. 3.49-3.50).

    ``H``: a symmetric (d, d) matrix or a function v -> H v; ``b``: (d,); ``x0``: start
    (zeros by default).  Stops when ||b - H x|| <= max(tol ||b||, atol), after
    ``maxiter`` iterations (default 10 d) or at a direction with q^T H q <= 0:
    ``on_negative_curvature="stop"`` returns (reason "negative_curvature"), ``"raise"``
    raises ValueError (H is not positive definite).  ``M`` approximates H^-1 as in scipy:
    a function r -> M r, a matrix, or the diagonal of M (so Jacobi preconditioning is
    ``M=1/np.diag(H)``).  ``callback(x_t)`` runs after every iteration.

    Truncation for Hessian-free (Martens 2010, Sec. 4.4): ``progress_tol`` stops (reason
    "progress") at iteration i > k, k = max(10, ceil(i / 10)), once the quadratic
    phi = 1/2 x^T H x - b^T x (negative while CG makes progress) improved by less than a
    fraction k progress_tol over the last k iterations:
    (phi_i - phi_{i-k}) / phi_i < k progress_tol.  ``keep_iterates="geometric"`` keeps
    only the iterates Martens backtracks over (iterations ceil(1.3^j) and the last), so
    that a large network's CG run does not store every iterate.

    >>> H = np.array([[4.0, 1.0], [1.0, 3.0]])
    >>> r = linear_cg(H, np.array([1.0, 2.0]), tol=1e-12)
    >>> r.nit, np.round(r.x, 6)        # d = 2 steps solve a 2-D bowl
    (2, array([0.090909, 0.636364]))
    """
    b_arr = np.asarray(b)
    if b_arr.dtype.kind not in "iuf" or b_arr.ndim != 1 or b_arr.size == 0:
        raise ValueError(f"b must be a non-empty 1-D real vector, got shape {b_arr.shape} "
                         f"and dtype {b_arr.dtype}")
    dtype = b_arr.dtype if b_arr.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    n = b_arr.size
    bvec = b_arr.astype(np.float64)
    if not np.isfinite(bvec).all():
        raise ValueError("b contains non-finite values")
    tol = check_positive("tol", tol, allow_zero=True)
    atol = check_positive("atol", atol, allow_zero=True)
    maxiter = 10 * n if maxiter is None else check_int("maxiter", maxiter, minimum=0)
    if keep_iterates not in (True, False, "geometric"):
        raise ValueError(f"keep_iterates must be True, False or 'geometric', got {keep_iterates!r}")
    if progress_tol is not None:
        progress_tol = check_positive("progress_tol", progress_tol)
    if on_negative_curvature not in ("stop", "raise"):
        raise ValueError("on_negative_curvature must be 'stop' or 'raise', got "
                         f"{on_negative_curvature!r}")
    matvec = _as_operator(H, n, dtype)
    precond = _as_preconditioner(M, n, dtype)

    if x0 is None:
        x = np.zeros(n)
        r = bvec.copy()
    else:
        x = np.asarray(x0, dtype=np.float64).reshape(-1)
        if x.size != n or not np.isfinite(x).all():
            raise ValueError(f"x0 must be a finite vector of {n} entries")
        x = x.copy()
        r = bvec - matvec(x)
    threshold = max(tol * float(np.linalg.norm(bvec)), atol)
    z = precond(r) if precond else r
    p = z.copy()
    rz = float(r @ z)
    residuals = [float(np.linalg.norm(r))]
    geometric = keep_iterates == "geometric"
    keep_at = _geometric_steps(maxiter) if geometric else None
    iterates = [x.copy()] if keep_iterates else None
    steps_kept = [0]
    directions = [] if keep_iterates is True else None
    curvatures = []
    phis = [-0.5 * float(x @ (bvec + r))]   # phi(x) = 1/2 x^T H x - b^T x, with H x = b - r
    reason, nc_dir = "maxiter", None

    for it in range(maxiter + 1):
        if residuals[-1] <= threshold:
            reason = "converged"
            break
        if it == maxiter:
            break
        Hp = matvec(p)
        curv = float(p @ Hp)
        if not np.isfinite(curv):
            raise ValueError(f"the product H q is non-finite at iteration {it + 1}")
        curvatures.append(curv)
        if curv <= 0:
            if on_negative_curvature == "raise":
                raise ValueError(
                    f"H is not positive definite: the direction q at iteration {it + 1} has "
                    f"curvature q^T H q = {curv:.6g} <= 0 (conjugate gradients needs an SPD "
                    "H; pass on_negative_curvature='stop' to keep the iterates so far)")
            reason, nc_dir = "negative_curvature", p.copy()
            break
        alpha = rz / curv                 # exact minimizing step along q
        x += alpha * p
        r -= alpha * Hp
        z = precond(r) if precond else r
        rz_new = float(r @ z)
        beta = rz_new / rz                # Eq. 3.50 for a quadratic (see module docstring)
        if keep_iterates is True:
            directions.append(p.copy())
            iterates.append(x.copy())
            steps_kept.append(it + 1)
        elif geometric and it + 1 in keep_at:
            iterates.append(x.copy())
            steps_kept.append(it + 1)
        p = z + beta * p                  # Eq. 3.49: new steepest direction plus beta q_t
        rz = rz_new
        residuals.append(float(np.linalg.norm(r)))
        phis.append(-0.5 * float(x @ (bvec + r)))
        if callback is not None:
            callback(x.astype(dtype))
        i = it + 1
        k = max(10, int(np.ceil(0.1 * i)))
        if (progress_tol is not None and i > k and phis[-1] < 0
                and (phis[-1] - phis[-1 - k]) / phis[-1] < k * progress_tol):
            reason = "progress"
            break
    if geometric and steps_kept[-1] != len(residuals) - 1:
        iterates.append(x.copy())
        steps_kept.append(len(residuals) - 1)

    nit = len(residuals) - 1
    messages = {
        "converged": f"converged: ||r|| = {residuals[-1]:.3g} <= {threshold:.3g} after {nit} "
                     "iterations",
        "maxiter": f"maxiter = {maxiter} iterations reached with ||r|| = {residuals[-1]:.3g} "
                   f"> {threshold:.3g}",
        "negative_curvature": f"stopped at iteration {nit + 1}: direction of non-positive "
                              f"curvature q^T H q = {curvatures[-1]:.3g} (H is not positive "
                              "definite); x is the iterate before it" if curvatures else "",
        "progress": f"truncated after {nit} iterations: the quadratic improved by less than "
                    f"{progress_tol} per iteration over the last ones (Martens' rule)",
    }
    return LinearCGResult(
        x=x.astype(dtype), residuals=np.array(residuals), nit=nit, reason=reason,
        success=reason == "converged", message=messages[reason],
        negative_curvature=reason == "negative_curvature",
        negative_curvature_direction=None if nc_dir is None else nc_dir.astype(dtype),
        curvatures=np.array(curvatures),
        iterates=None if iterates is None else np.array(iterates, dtype=dtype),
        directions=None if directions is None else np.array(directions, dtype=dtype).reshape(-1, n),
        iterate_steps=None if iterates is None else np.array(steps_kept),
        quadratic=np.array(phis),
    )
