"""Check a numeric answer to an exercise of Sec. 3.10 without being shown the solution.

``check(n, answer, **inputs)`` computes exercise n's answer with ddlib at call time (nothing
is typed in), compares it with ``answer`` and returns a ``Verdict`` that says right or not
and never prints the expected numbers.  ``EXERCISES[n]`` says what to pass as the answer and
which keyword inputs the exercise takes (their defaults are the numbers the chapter uses).

>>> check(2, (15.0, 10.0))
Verdict(exercise 2: right (2 numbers agree within rtol=1e-06))
>>> bool(check(2, (10.0, 15.0)))
False

The proofs (7, 8, 11, 12) are paired with a number that the proof predicts: a rank, a
vector, or a matrix whose off-diagonal entries the proof says vanish.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from .backend import get_backend
from .init import as_rng

__all__ = ["EXERCISES", "Verdict", "check", "spd_matrix", "cg_directions",
           "conjugate_from"]

#: what each exercise's answer is, and the inputs ``check`` accepts (with defaults)
EXERCISES = {
    1: "d x_{t+2} / d x_t for f(x, y) = x y, g(x, y) = x + y at (x_t, y_t) = (x, y); x=1, y=2",
    2: "(dL/dx1, dL/dx2) for o = x1 x2; x1=2, x2=3, dLdo=5",
    3: "(dL/dx1, ..., dL/dx4) for o = sum of the six pairwise products; x=(1,2,3,4), dLdo=2",
    4: "the same with o = max of the six products; ties='split' or 'first'",
    5: "the Jacobian matrix of the elementwise sigmoid at v; v=(-1, 0, 2)",
    6: "the point (x, y) after `steps` steepest-descent steps on x^2 + y^10; "
       "start=(0.5, 0.5), lr=0.1, steps=10",
    7: "the rank of the d CG directions of a random SPD matrix; d=5, seed=0",
    8: "the vector v whose dot product with every column of a random invertible V is 0; "
       "d=4, seed=0",
    9: "dL/da (pre-activation) from dL/dh (post-activation) for h = activation(a); "
       "a=(0.5, -1.0), dLdh=(2.0, 3.0), activation='tanh'",
    10: "part='a': the softmax Jacobian do_i/dv_j at v; part='b': dL/dv for cross-entropy "
        "with class `label`; v=(1, 2, 3), label=0",
    11: "rows q_0..q_{d-1}: H-conjugate directions from the rows of V with q_0 = v_0 "
        "(Gram-Schmidt under H); d=4, seed=0 (or pass H and V)",
    12: "the matrix Q H Q^T for the rows Q of CG's directions on a random SPD H; d=5, seed=0",
}


@dataclass
class Verdict:
    """The outcome of ``check``: truthy when right; ``message`` says why, without answers."""

    exercise: int
    correct: bool
    message: str

    def __bool__(self):
        return self.correct

    def __repr__(self):
        return f"Verdict(exercise {self.exercise}: {self.message})"


# ------------------------------------------------------------------- shared builders


def spd_matrix(d, seed=0, condition=10.0):
    """A random symmetric positive definite (d, d) matrix, eigenvalues spread over [1, condition]."""
    rng = as_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (Q * np.linspace(1.0, condition, d)) @ Q.T


def cg_directions(H, b):
    """The d search directions (rows) of ``linear_cg`` run for exactly d = len(b) steps."""
    from .optim.second_order import linear_cg

    d = len(b)
    res = linear_cg(H, b, tol=0.0, maxiter=d)
    return np.asarray(res.directions)


def conjugate_from(H, V):
    """H-conjugate directions from the rows of V (exercise 11): q_0 = v_0 and
    q_{t+1} = v_{t+1} + sum_{i <= t} beta_{ti} q_i, beta_{ti} = -q_i^T H v_{t+1} / q_i^T H q_i.

    Step t costs t + 1 products with H's q_i (kept) and dot products: O(d^2) numbers to
    store and O(d^3) work for all d, against O(d) storage and one product per step for CG.
    """
    H, V = np.asarray(H, dtype=float), np.asarray(V, dtype=float)
    Q, HQ = [], []
    for v in V:
        q = v.copy()
        for qi, Hqi in zip(Q, HQ):
            q -= (Hqi @ v) / (qi @ Hqi) * qi
        Q.append(q)
        HQ.append(H @ q)
    return np.array(Q)


# -------------------------------------------------------------------- the answers


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _ex1(x=1.0, y=2.0):
    # f = x y, g = x + y: f_x = y, f_y = x, g_x = 1; x_{t+2} = f(x_{t+1}, y_{t+1})
    x1, y1 = x * y, x + y
    return y1 * y + x1 * 1.0


def _ex2(x1=2.0, x2=3.0, dLdo=5.0):
    return np.array([dLdo * x2, dLdo * x1])


def _pairs(x):
    return list(combinations(range(len(x)), 2))


def _ex3(x=(1.0, 2.0, 3.0, 4.0), dLdo=2.0):
    x = np.asarray(x, dtype=float)
    g = np.zeros_like(x)
    for i, j in _pairs(x):
        g[i] += dLdo * x[j]
        g[j] += dLdo * x[i]
    return g


def _ex4(x=(1.0, 2.0, 3.0, 4.0), dLdo=2.0, ties="split"):
    x = np.asarray(x, dtype=float)
    pairs = _pairs(x)
    prods = np.array([x[i] * x[j] for i, j in pairs])
    win = np.flatnonzero(prods == prods.max())
    if ties == "first":
        win = win[:1]
    elif ties != "split":
        raise ValueError(f"ties must be 'split' or 'first', got {ties!r}")
    g = np.zeros_like(x)
    for k in win:
        i, j = pairs[k]
        g[i] += dLdo * x[j] / len(win)
        g[j] += dLdo * x[i] / len(win)
    return g


def _ex5(v=(-1.0, 0.0, 2.0)):
    s = _sigmoid(np.asarray(v, dtype=float))
    return np.diag(s * (1 - s))


def _ex6(start=(0.5, 0.5), lr=0.1, steps=10):
    p = np.array(start, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(int(steps)):
            p = p - lr * np.array([2 * p[0], 10 * p[1] ** 9])
    return p


def _ex7(d=5, seed=0):
    H = spd_matrix(d, seed)
    b = as_rng(seed + 1).standard_normal(d)
    return float(np.linalg.matrix_rank(cg_directions(H, b)))


def _ex8(d=4, seed=0):
    V = as_rng(seed).standard_normal((d, d))
    return np.linalg.solve(V.T, np.zeros(d))


def _ex9(a=(0.5, -1.0), dLdh=(2.0, 3.0), activation="tanh"):
    from .layers.activations import activation_backward, activation_forward

    be = get_backend("numpy")
    a = np.asarray(a, dtype=float)
    _, cache = activation_forward(activation, a, be=be)
    return np.asarray(activation_backward(activation, np.asarray(dLdh, float), cache, be=be))


def _ex10(v=(1.0, 2.0, 3.0), label=0, part="a"):
    v = np.asarray(v, dtype=float)
    if part == "a":
        o = np.exp(v - v.max())
        o /= o.sum()
        return np.diag(o) - np.outer(o, o)
    if part == "b":
        from .backend import use_backend
        from .losses import SoftmaxCrossEntropy

        with use_backend("numpy"):
            loss = SoftmaxCrossEntropy()
            loss(v[None, :], np.array([label]))
            return np.asarray(loss.backward())[0]
    raise ValueError(f"part must be 'a' or 'b', got {part!r}")


def _ex11(d=4, seed=0, H=None, V=None):
    H = spd_matrix(d, seed) if H is None else np.asarray(H, dtype=float)
    V = as_rng(seed + 1).standard_normal(H.shape) if V is None else np.asarray(V, dtype=float)
    return conjugate_from(H, V)


def _ex12(d=5, seed=0):
    H = spd_matrix(d, seed)
    Q = cg_directions(H, as_rng(seed + 1).standard_normal(d))
    return Q @ H @ Q.T


_ANSWERS = {1: _ex1, 2: _ex2, 3: _ex3, 4: _ex4, 5: _ex5, 6: _ex6, 7: _ex7, 8: _ex8,
            9: _ex9, 10: _ex10, 11: _ex11, 12: _ex12}


def check(n, answer, rtol=1e-6, atol=1e-8, **inputs):
    """Is ``answer`` right for exercise ``n`` (1-12) with these ``inputs``?

    The expected value is computed now by ddlib; entries are compared with
    |answer - expected| <= atol + rtol |expected| (``atol`` is scaled by the largest
    expected entry for the matrices of exercises 11 and 12, whose zeros are rounding-level).
    The returned ``Verdict`` says right, or how many entries are off, never what they
    should be.  ``EXERCISES[n]`` describes the answer and the inputs.

    >>> check(4, [0, 0, 8, 6]).correct
    True
    >>> check(3, [1, 2, 3])
    Verdict(exercise 3: expected 4 numbers, got 3)
    """
    if n not in _ANSWERS:
        raise ValueError(f"n must be an exercise number 1-12, got {n!r}")
    try:
        expected = np.asarray(_ANSWERS[n](**inputs), dtype=float)
    except TypeError as err:
        raise TypeError(f"exercise {n} takes: {EXERCISES[n]} ({err})") from None
    try:
        got = np.asarray(answer, dtype=float)
    except (TypeError, ValueError):
        return Verdict(n, False, "the answer must be a number or an array of numbers")
    if got.size != expected.size:
        return Verdict(n, False, f"expected {expected.size} numbers, got {got.size}")
    if got.shape != expected.shape and got.ndim > 1:
        return Verdict(n, False, f"expected shape {expected.shape}, got {got.shape}")
    got = got.reshape(expected.shape)
    if n in (11, 12):
        atol = atol * max(1.0, float(np.nanmax(np.abs(expected))))
    close = np.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    close |= np.isinf(expected) & (got == expected)
    bad = int(close.size - close.sum())
    if bad == 0:
        noun = "number" if expected.size == 1 else "numbers"
        return Verdict(n, True, f"right ({expected.size} {noun} agree within rtol={rtol:g})")
    return Verdict(n, False, f"not yet: {bad} of {expected.size} numbers differ")
