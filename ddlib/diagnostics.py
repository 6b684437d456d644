"""Tools for Sec. 3.4: vanishing/exploding gradients, curvature ratios, dead units.

* ``chain_gradients``: the one-node-per-layer chain of Fig. 3.8 and the backward
  recursion of Eq. 3.38, for one chain or many random chains at once;
* ``QuadraticBowl``, ``steepest_descent_path``, ``steps_to_converge``: gradient descent
  on L = sum_i c_i x_i^2 (Fig. 3.9's x^2 + y^2 and x^2 + 4y^2);
* ``activation_derivative``: the curves of Fig. 3.10;
* ``StatsRecorder``: per-layer activation and gradient statistics of a ``Sequential``
  during training (mean, std, norm, fraction of dead units), gathered by wrapping each
  layer's ``forward``/``backward`` on the instance (the classes are not touched);
* ``least_squares_descent``: full-batch descent on raw vs. preprocessed features (3.3.2);
* ``dead_fraction``, ``layer_outputs``, ``backward_norms``, ``distinct_units``: one-shot
  measurements on a model and a data set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import get_backend
from .backend.numpy_ref.core import ACTIVATIONS, act_deriv, act_forward
from .errors import check_int, check_positive

__all__ = [
    "ChainResult",
    "chain_gradients",
    "sigmoid_bound",
    "QuadraticBowl",
    "steepest_descent_path",
    "steps_to_converge",
    "activation_derivative",
    "StatsRecorder",
    "STAT_NAMES",
    "batch_stats",
    "layer_outputs",
    "dead_fraction",
    "backward_norms",
    "distinct_units",
    "DescentResult",
    "least_squares_descent",
]


# --------------------------------------------------------------------------- Fig. 3.8


@dataclass
class ChainResult:
    """Forward values and backward derivatives of a one-node-per-layer chain.

    ``pre`` (.., m) are the pre-activations a_t = w_t h_{t-1} + b_t, ``h`` (.., m) the
    post-activations (h_m is the output o); ``dh`` (.., m) holds do/dh_t and ``dw``
    (.., m) do/dw_t, both with do/do = 1 (so ``dh[..., -1]`` is 1).
    """

    pre: np.ndarray
    h: np.ndarray
    dh: np.ndarray
    dw: np.ndarray

    @property
    def depth(self):
        return self.h.shape[-1]

    def by_distance(self):
        """|do/dh_t| indexed by r = m - t, the number of layers between h_t and the output."""
        return np.abs(self.dh[..., ::-1])


def chain_gradients(weights, x=1.0, activation="sigmoid", biases=None):
    """Forward and backward pass through the chain of Fig. 3.8 (Eq. 3.38).

    h_0 = x, h_t = Phi(w_t h_{t-1} + b_t) for t = 1..m, o = h_m, and backward
    do/dh_{t-1} = Phi'(a_t) w_t do/dh_t.  ``weights`` is (m,) for one chain or (trials, m)
    for many chains evaluated together; ``biases`` has the same shape (zero by default).

    >>> r = chain_gradients(np.ones(3), x=0.0)
    >>> bool(np.all(r.by_distance()[1:] <= 0.25 ** np.arange(1, 3)))
    True
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim not in (1, 2) or w.shape[-1] < 1:
        raise ValueError(f"weights must have shape (m,) or (trials, m) with m >= 1, got {w.shape}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r}: expected one of {ACTIVATIONS}")
    b = np.zeros_like(w) if biases is None else np.broadcast_to(
        np.asarray(biases, dtype=np.float64), w.shape)
    m = w.shape[-1]
    pre = np.empty_like(w)
    h = np.empty_like(w)
    prev = np.broadcast_to(np.asarray(x, dtype=np.float64), w.shape[:-1])
    for t in range(m):
        pre[..., t] = w[..., t] * prev + b[..., t]
        h[..., t] = act_forward(activation, pre[..., t:t + 1])[..., 0]
        prev = h[..., t]
    deriv = act_deriv(activation, pre)
    dh = np.empty_like(w)
    dw = np.empty_like(w)
    dh[..., m - 1] = 1.0
    for t in range(m - 1, -1, -1):
        da = deriv[..., t] * dh[..., t]  # do/da_t
        below = h[..., t - 1] if t > 0 else np.broadcast_to(np.asarray(x, float), w.shape[:-1])
        dw[..., t] = da * below
        if t > 0:
            dh[..., t - 1] = da * w[..., t]  # Eq. 3.38
    return ChainResult(pre, h, dh, dw)


def sigmoid_bound(r, weight_product=1.0):
    """The chapter's ceiling on |do/dh| after r sigmoid layers: 0.25^r times prod |w|."""
    return 0.25 ** np.asarray(r, dtype=float) * weight_product


# --------------------------------------------------------------------------- Fig. 3.9


class QuadraticBowl:
    """L(x) = sum_i c_i x_i^2, minimum 0 at the origin; Fig. 3.9 uses c = (1, 1) and (1, 4).

    The Hessian is diag(2 c), so the curvature ratio (condition number) is max c / min c.

    >>> bowl = QuadraticBowl([1.0, 4.0])
    >>> bowl(np.array([1.0, 1.0])), bowl.grad(np.array([1.0, 1.0]))
    (5.0, array([2., 8.]))
    """

    def __init__(self, coefficients):
        c = np.asarray(coefficients, dtype=np.float64)
        if c.ndim != 1 or c.size < 1:
            raise ValueError(f"coefficients must be a 1-D array, got shape {c.shape}")
        if not np.all(np.isfinite(c)) or np.any(c <= 0):
            raise ValueError(f"coefficients must be finite and > 0 (a bowl), got {c.tolist()}")
        self.c = c

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float64)
        return (x * x) @ self.c if x.ndim > 1 else float((x * x) @ self.c)

    def grad(self, x):
        return 2.0 * self.c * np.asarray(x, dtype=np.float64)

    @property
    def curvature_ratio(self):
        return float(self.c.max() / self.c.min())

    def best_lr(self):
        """The fixed step 2 / (lambda_min + lambda_max) of the Hessian, fastest worst case."""
        return float(2.0 / (2.0 * self.c.min() + 2.0 * self.c.max()))

    def grid(self, extent=2.0, n=101):
        """(X, Y, Z) for a contour plot of a 2-D bowl over [-extent, extent]^2."""
        if self.c.size != 2:
            raise ValueError("grid is for 2-D bowls")
        g = np.linspace(-extent, extent, n)
        X, Y = np.meshgrid(g, g)
        return X, Y, self.c[0] * X ** 2 + self.c[1] * Y ** 2


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


# --------------------------------------------------------------------------- Fig. 3.10


def activation_derivative(kind, v, alpha=0.01):
    """Phi'(v) for an activation of ``ddlib.backend`` (Fig. 3.10: sigmoid, tanh, ReLU, hard tanh)."""
    v = np.asarray(v, dtype=np.float64)
    return act_deriv(kind, v, alpha)


# --------------------------------------------------------------------------- statistics


STAT_NAMES = ("mean", "std", "norm", "dead")


def batch_stats(a, dead_tol=0.0):
    """mean, std, norm and dead fraction of a batch a (n, width).

    ``norm`` is the Frobenius norm divided by sqrt(n) (the root-mean-square per-example
    norm, so it does not grow with the batch); ``dead`` is the fraction of the columns that
    are zero (|a| <= dead_tol) on every row of the batch.
    """
    a = np.asarray(a, dtype=np.float64)
    n = max(a.shape[0], 1)
    dead = float(np.mean(np.all(np.abs(a) <= dead_tol, axis=0))) if a.size else 0.0
    return {"mean": float(a.mean()), "std": float(a.std()),
            "norm": float(np.linalg.norm(a) / np.sqrt(n)), "dead": dead}


def _host(x):
    be = get_backend()
    return be.to_numpy(x) if not isinstance(x, np.ndarray) else x


class StatsRecorder:
    """Record per-layer statistics of a ``Sequential`` on every training step.

    After each layer's ``forward`` (in training mode) the recorder stores ``batch_stats``
    of its output under ``'act'``; after each ``backward`` it stores those of the gradient
    arriving at the layer's output (dL/d output) under ``'grad'``, and the norm of the
    layer's weight gradient under ``'wgrad'`` when it has a ``W``.  It works by putting
    wrappers on the layer *instances*; ``detach()`` (or leaving a ``with`` block) removes
    them.  ``every`` records one step in that many.

    >>> from ddlib.layers import mlp
    >>> net = mlp([4, 5, 3], rng=0)
    >>> with StatsRecorder(net) as rec:
    ...     _ = net.forward(np.ones((2, 4)))
    >>> rec.series(1, "act", "dead").shape
    (1,)
    """

    def __init__(self, model, every=1, layers=None, dead_tol=0.0):
        if not hasattr(model, "layers"):
            raise TypeError(f"StatsRecorder needs a Sequential (with .layers), got "
                            f"{type(model).__name__}")
        self.model = model
        self.every = check_int("every", every)
        self.dead_tol = dead_tol
        idx = range(len(model.layers)) if layers is None else layers
        self.indices = [int(i) for i in idx]
        for i in self.indices:
            if not 0 <= i < len(model.layers):
                raise ValueError(f"layer index {i} out of range for a model of "
                                 f"{len(model.layers)} layers")
        self.records = {i: {"act": [], "grad": [], "wgrad": []} for i in self.indices}
        self.forward_calls = 0
        self.backward_calls = 0
        self._attached = False
        self.attach()

    def names(self):
        return {i: f"{i}:{type(self.model.layers[i]).__name__}" for i in self.indices}

    def attach(self):
        if self._attached:
            return self
        first, last = min(self.indices), max(self.indices)
        for i in self.indices:
            layer = self.model.layers[i]
            orig_f, orig_b = layer.forward, layer.backward

            def fwd(x, train=True, _i=i, _f=orig_f, _first=i == first):
                out = _f(x, train=train)
                if train:
                    if _first:
                        self.forward_calls += 1
                    if (self.forward_calls - 1) % self.every == 0:
                        self.records[_i]["act"].append(batch_stats(_host(out), self.dead_tol))
                return out

            def bwd(g, need_dx=True, _i=i, _b=orig_b, _layer=layer, _last=i == last):
                if _last:
                    self.backward_calls += 1
                if (self.backward_calls - 1) % self.every == 0:
                    self.records[_i]["grad"].append(batch_stats(_host(g), self.dead_tol))
                dx = _b(g, need_dx=need_dx)
                if (self.backward_calls - 1) % self.every == 0 and "W" in _layer.grads:
                    self.records[_i]["wgrad"].append(
                        float(np.linalg.norm(_host(_layer.grads["W"]))))
                return dx

            layer.forward, layer.backward = fwd, bwd
        self._attached = True
        return self

    def detach(self):
        """Remove the wrappers: the layers run their own class methods again."""
        for i in self.indices:
            layer = self.model.layers[i]
            layer.__dict__.pop("forward", None)
            layer.__dict__.pop("backward", None)
        self._attached = False
        return self

    def __enter__(self):
        return self.attach()

    def __exit__(self, *exc):
        self.detach()

    def series(self, layer, kind="act", stat="std"):
        """One statistic over the recorded steps, e.g. ``series(3, 'grad', 'norm')``."""
        if layer not in self.records:
            raise KeyError(f"layer {layer} is not recorded; recorded: {self.indices}")
        if kind not in ("act", "grad", "wgrad"):
            raise ValueError(f"kind must be 'act', 'grad' or 'wgrad', got {kind!r}")
        rows = self.records[layer][kind]
        if kind == "wgrad":
            return np.array(rows, dtype=float)
        if stat not in STAT_NAMES:
            raise ValueError(f"stat must be one of {STAT_NAMES}, got {stat!r}")
        return np.array([r[stat] for r in rows], dtype=float)

    def table(self, step=-1, kind="act"):
        """Text table of every recorded layer's statistics at one recorded step."""
        lines = [f"{'layer':>14} " + " ".join(f"{s:>10}" for s in STAT_NAMES)]
        for i in self.indices:
            rows = self.records[i][kind]
            if not rows:
                continue
            r = rows[step]
            lines.append(f"{self.names()[i]:>14} " + " ".join(f"{r[s]:10.3g}" for s in STAT_NAMES))
        return "\n".join(lines)


def layer_outputs(model, X, train=False):
    """The output of every layer of a Sequential for the batch X (host arrays)."""
    be = get_backend()
    outs = []
    x = be.asarray(X)
    for layer in model.layers:
        x = layer.forward(x, train=train)
        outs.append(_host(x))
    return outs


def dead_fraction(model, X, kinds=("relu", "leaky_relu"), tol=0.0):
    """Fraction of dead units in each ReLU-type layer over the whole data set X.

    A unit is dead when its output is never positive (h <= tol) on any row of X.  For a
    ReLU that means it outputs zero everywhere and no example sends a gradient through it
    (Sec. 3.4.3); a leaky ReLU unit in that state still passes alpha times the gradient and
    can recover.  Returns {layer index: fraction} for the layers whose activation ``kind``
    is listed in ``kinds``.
    """
    outs = layer_outputs(model, X)
    res = {}
    for i, (layer, h) in enumerate(zip(model.layers, outs)):
        if getattr(layer, "kind", None) in kinds:
            res[i] = float(np.mean(np.all(h <= tol, axis=0)))
    return res


def backward_norms(model, loss, X, y):
    """Norm of dL/dW for every Linear-type layer after one forward/backward pass on (X, y).

    Returns (indices, norms): the layer indices holding a ``W`` and the Frobenius norms of
    their weight gradients, from the input side to the output side.
    """
    be = get_backend()
    model.zero_grad()
    out = model.forward(be.asarray(X), train=True)
    loss.forward(out, y)
    model.backward(loss.backward(), need_dx=False)
    idx = [i for i, layer in enumerate(model.layers) if "W" in layer.grads]
    return idx, np.array([np.linalg.norm(_host(model.layers[i].grads["W"])) for i in idx])


def distinct_units(W, tol=1e-12):
    """Number of distinct hidden units (columns of W), up to ``tol``: 1 means full symmetry."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D (fan_in, units), got shape {W.shape}")
    reps = []
    for j in range(W.shape[1]):
        if not any(np.max(np.abs(W[:, j] - r)) <= tol for r in reps):
            reps.append(W[:, j])
    return len(reps)


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
