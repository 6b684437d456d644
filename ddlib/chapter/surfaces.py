"""2-D loss surfaces for pictures of Sec. 3.5, with exact gradients and Hessians.

Each ``Surface`` knows its value, gradient and Hessian in closed form, a plotting box, a
default starting point and its minima.  ``run(surface, rule, start, steps)`` lets any
``ddlib.optim`` rule walk on it and returns a ``Trajectory`` (points and losses); a run
that blows up is stopped and reported with its step and loss, never continued into NaN.

Registry (``SURFACES``, ``get(name, **options)``):

=================  ===========================================  ==================
name               formula                                      chapter
=================  ===========================================  ==================
``bowl``           x^2 + y^2                                    Fig. 3.9(a)
``ellipse``        x^2 + 4 y^2 (``ratio`` sets the 4)           Fig. 3.9(b), 3.11
``rosenbrock``     (1 - x)^2 + 100 (y - x^2)^2                  narrow curving valley
``cliff``          gentle slope ending in a sigmoid step        Fig. 3.13
``local_minima``   weak bowl minus a shallow and a deep well    Fig. 3.12
``saddle``         x^2 - y^2                                    Fig. 3.17(b)
``degenerate``     x^3 + y^3                                    Sec. 3.5.6.3
``x2_y10``         x^2 + y^10                                   Exercise 6
=================  ===========================================  ==================

Example::

    from ddlib import optim
    from ddlib.chapter import surfaces
    path = surfaces.run("ellipse", optim.momentum(0.1, 0.5), start=(-1.8, 0.9), steps=50)
    path.points.shape, path.losses[-1]    # (51, 2), a loss near 0
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import DivergenceError, check_int, check_positive
from ..optim.run import Trajectory

__all__ = [
    "SURFACES", "Surface", "Trajectory", "QuadraticBowl", "get", "run", "bowl", "ellipse", "rosenbrock",
    "cliff", "local_minima", "saddle", "degenerate", "x2_y10", "loss_along_line",
]


class Surface:
    """A 2-D loss L(x, y) with closed-form gradient and Hessian.

    ``f(x, y)``, ``g(x, y) -> (dL/dx, dL/dy)`` and ``h(x, y) -> (Lxx, Lxy, Lyy)`` work
    elementwise on arrays.  The public methods take points ``w`` of shape (..., 2):
    ``value(w)`` has shape (...), ``grad(w)`` (..., 2), ``hessian(w)`` (..., 2, 2).
    ``minima`` lists known minima (global first); ``floor`` is the lowest loss, or None
    for surfaces unbounded below (the saddle, the degenerate cubic).

    Example::

        s = get("ellipse")
        s.grad([1.0, 1.0])      # array([2., 8.])
        s.hessian([0.0, 0.0])   # diag(2, 8)
    """

    def __init__(self, name, formula, f, g, h, xlim, ylim, start, minima=(), floor=None,
                 log_levels=False, figure=""):
        self.name = name
        self.formula = formula
        self._f, self._g, self._h = f, g, h
        self.xlim = tuple(float(v) for v in xlim)
        self.ylim = tuple(float(v) for v in ylim)
        self.start = np.array(start, dtype=np.float64)
        self.minima = tuple(np.array(m, dtype=np.float64) for m in minima)
        self.floor = floor
        self.log_levels = log_levels
        self.figure = figure

    # ---------------------------------------------------------------- evaluation
    @staticmethod
    def _split(w):
        w = np.asarray(w, dtype=np.float64)
        if w.shape[-1:] != (2,):
            raise ValueError(f"a surface point must have a last axis of length 2, got shape "
                             f"{w.shape}")
        return w[..., 0], w[..., 1]

    def value(self, w):
        """L at points w, shape (..., 2) -> (...); a single point gives a float."""
        out = self._f(*self._split(w))
        return float(out) if np.ndim(out) == 0 else out

    __call__ = value

    def grad(self, w):
        """The gradient (dL/dx, dL/dy) at w, shape (..., 2)."""
        gx, gy = self._g(*self._split(w))
        return np.stack(np.broadcast_arrays(gx, gy), axis=-1)

    def hessian(self, w):
        """The 2x2 Hessian [[Lxx, Lxy], [Lxy, Lyy]] at w, shape (..., 2, 2)."""
        hxx, hxy, hyy = np.broadcast_arrays(*self._h(*self._split(w)))
        return np.stack([np.stack([hxx, hxy], -1), np.stack([hxy, hyy], -1)], -2)

    def grid(self, n=120, xlim=None, ylim=None):
        """(X, Y, Z) on an n x n grid over the box (for contour plots)."""
        n = check_int("n", n, minimum=2)
        xlim = self.xlim if xlim is None else xlim
        ylim = self.ylim if ylim is None else ylim
        X, Y = np.meshgrid(np.linspace(*xlim, n), np.linspace(*ylim, n))
        with np.errstate(over="ignore", invalid="ignore"):
            Z = self._f(X, Y)
        return X, Y, Z

    def levels(self, Z, n=18):
        """Contour levels suited to Z: log-spaced above the floor for steep valleys."""
        Z = Z[np.isfinite(Z)]
        lo, hi = float(Z.min()), float(Z.max())
        if self.log_levels and self.floor is not None:
            gap = np.geomspace(max(lo - self.floor, 1e-3 * (hi - self.floor)), hi - self.floor, n)
            return self.floor + gap
        return np.linspace(lo, hi, n + 2)[1:-1]

    def contour(self, ax, n=120, xlim=None, ylim=None, levels=18, cmap="viridis"):
        """Draw the contour lines of L on a matplotlib axis; marks the known minima."""
        X, Y, Z = self.grid(n, xlim, ylim)
        ax.contour(X, Y, Z, levels=self.levels(Z, levels), cmap=cmap, linewidths=0.7)
        for m in self.minima:
            ax.plot(*m, marker="*", color="k", ms=9, ls="none")
        ax.set_xlim(*(self.xlim if xlim is None else xlim))
        ax.set_ylim(*(self.ylim if ylim is None else ylim))
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        return ax

    def __repr__(self):
        return f"Surface({self.name!r}: L = {self.formula})"


# ---------------------------------------------------------------- the surfaces
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

    def surface(self, name=None, start=(-1.8, 0.9), figure=""):
        """This 2-D bowl as a ``Surface`` (contours, Hessian, and ``run`` of any rule)."""
        if self.c.size != 2:
            raise ValueError(f"surface is for 2-D bowls, got {self.c.size} coefficients")
        a, b = (float(v) for v in self.c)
        formula = " + ".join(v if c == 1 else f"{c:g} {v}" for c, v in ((a, "x^2"), (b, "y^2")))
        return Surface(
            name or "bowl", formula,
            lambda x, y: a * x * x + b * y * y,
            lambda x, y: (2 * a * x, 2 * b * y),
            lambda x, y: (2 * a + 0 * x, 0 * x, 2 * b + 0 * y),
            (-2, 2), (-2, 2) if a == b else (-1.2, 1.2), start, minima=[(0, 0)], floor=0.0,
            figure=figure)

    def grid(self, extent=2.0, n=101):
        """(X, Y, Z) for a contour plot of a 2-D bowl over [-extent, extent]^2."""
        if self.c.size != 2:
            raise ValueError("grid is for 2-D bowls")
        g = np.linspace(-extent, extent, n)
        X, Y = np.meshgrid(g, g)
        return X, Y, self.c[0] * X ** 2 + self.c[1] * Y ** 2


def bowl():
    """The circular bowl L = x^2 + y^2 (Fig. 3.9a): the gradient points at the minimum."""
    return QuadraticBowl([1.0, 1.0]).surface("bowl", start=(-1.5, 1.0), figure="3.9(a)")


def ellipse(ratio=4.0):
    """The elliptical bowl L = x^2 + ratio y^2 (Fig. 3.9b; the chapter's ratio is 4).

    The larger ``ratio``, the more gradient descent zigzags across the narrow direction.
    """
    r = check_positive("ratio", ratio)
    return QuadraticBowl([1.0, r]).surface("ellipse", figure="3.9(b)")


def rosenbrock(a=1.0, b=100.0):
    """Rosenbrock's valley L = (a - x)^2 + b (y - x^2)^2: narrow, curving, minimum (a, a^2)."""
    a = float(a)
    b = check_positive("b", b)
    return Surface(
        "rosenbrock", f"({a:g} - x)^2 + {b:g} (y - x^2)^2",
        lambda x, y: (a - x) ** 2 + b * (y - x * x) ** 2,
        lambda x, y: (-2 * (a - x) - 4 * b * x * (y - x * x), 2 * b * (y - x * x)),
        lambda x, y: (2 - 4 * b * (y - x * x) + 8 * b * x * x, -4 * b * x, 2 * b + 0 * y),
        (-2, 2), (-1, 3), (-1.5, 2.0), minima=[(a, a * a)], floor=0.0, log_levels=True,
        figure="valley (cf. 3.15)")


def _sig_neg(z):
    """sigma(-z) = 1 / (1 + e^z), computed without overflow."""
    return np.exp(-np.logaddexp(0.0, z))


def cliff(height=5.0, sharpness=50.0, slope=0.1, width=1.0):
    """A gentle slope that ends in a cliff (Fig. 3.13).

    L = height * sigma(-sharpness x) + slope/2 (x - 1)^2 + width/2 y^2.
    For x < 0 the loss sits on a high terrace that falls gently towards the cliff at x = 0;
    the cliff face drops by ``height`` over a width of about 4/sharpness, and the minimum lies
    just past its foot at (1, 0).  The slope felt on the terrace is about ``slope`` per unit,
    but on the face it reaches height * sharpness / 4 (62.5 by default): a fixed rate that is
    sensible on the terrace throws the point far past the minimum from there.
    """
    H = check_positive("height", height)
    k = check_positive("sharpness", sharpness)
    q = check_positive("slope", slope)
    r = check_positive("width", width)

    def f(x, y):
        return H * _sig_neg(k * x) + 0.5 * q * (x - 1) ** 2 + 0.5 * r * y * y

    def g(x, y):
        s = _sig_neg(k * x)
        return -H * k * s * (1 - s) + q * (x - 1), r * y

    def h(x, y):
        s = _sig_neg(k * x)
        return H * k * k * s * (1 - s) * (1 - 2 * s) + q, 0 * x, r + 0 * y

    m = _newton(g, h, (1.0, 0.0))
    return Surface("cliff", f"{H:g} sigmoid(-{k:g} x) + {q / 2:g} (x - 1)^2 + {r / 2:g} y^2",
                   f, g, h, (-4, 4), (-2, 2), (-3.0, 1.0), minima=[m],
                   floor=float(f(*m)), figure="3.13")


def _wells(centers, depths, widths, bowl_k):
    """L = bowl_k/2 |w|^2 - sum_i depth_i exp(-|w - c_i|^2 / (2 width_i^2)), with derivatives."""
    C = [(float(cx), float(cy)) for cx, cy in centers]

    def f(x, y):
        out = 0.5 * bowl_k * (x * x + y * y)
        for (cx, cy), A, s in zip(C, depths, widths):
            out = out - A * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
        return out

    def g(x, y):
        gx, gy = bowl_k * x, bowl_k * y
        for (cx, cy), A, s in zip(C, depths, widths):
            e = A * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s)) / (s * s)
            gx = gx + e * (x - cx)
            gy = gy + e * (y - cy)
        return gx, gy

    def h(x, y):
        hxx = bowl_k + 0 * x
        hyy = bowl_k + 0 * y
        hxy = 0 * x
        for (cx, cy), A, s in zip(C, depths, widths):
            e = A * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s)) / (s * s)
            dx, dy = (x - cx) / s, (y - cy) / s
            hxx = hxx + e * (1 - dx * dx)
            hyy = hyy + e * (1 - dy * dy)
            hxy = hxy - e * dx * dy
        return hxx, hxy, hyy

    return f, g, h


def local_minima():
    """A weak bowl with a shallow local well, a plateau and a deep global well (Fig. 3.12).

    L = 0.04 (x^2 + y^2) - 0.4 exp(-|w - (-2, 0)|^2 / 0.72) - 2 exp(-|w - (2.5, 0)|^2 / 2).
    From the default start (-4.5, 0.5), plain gradient descent settles in the shallow well
    near (-1.9, 0); a marble with momentum (beta = 0.9) rolls through it, across the nearly
    flat middle, into the deep well near (2.5, 0).
    """
    f, g, h = _wells([(-2.0, 0.0), (2.5, 0.0)], [0.4, 2.0], [0.6, 1.0], 0.08)
    glob = _newton(g, h, (2.5, 0.0))
    loc = _newton(g, h, (-2.0, 0.0))
    return Surface("local_minima",
                   "0.04 |w|^2 - 0.4 exp(-|w-(-2,0)|^2/0.72) - 2 exp(-|w-(2.5,0)|^2/2)",
                   f, g, h, (-5, 5), (-2.5, 2.5), (-4.5, 0.5), minima=[glob, loc],
                   floor=float(f(*glob)), figure="3.12")


def saddle():
    """The saddle L = x^2 - y^2 (Fig. 3.17b): stationary at (0, 0) but not a minimum."""
    return Surface(
        "saddle", "x^2 - y^2",
        lambda x, y: x * x - y * y,
        lambda x, y: (2 * x, -2 * y),
        lambda x, y: (2.0 + 0 * x, 0 * x, -2.0 + 0 * y),
        (-2, 2), (-2, 2), (-1.5, 0.01), minima=(), floor=None, figure="3.17(b)")


def degenerate():
    """h(x, y) = x^3 + y^3 (Sec. 3.5.6.3): gradient and Hessian both vanish at (0, 0)."""
    return Surface(
        "degenerate", "x^3 + y^3",
        lambda x, y: x ** 3 + y ** 3,
        lambda x, y: (3 * x * x, 3 * y * y),
        lambda x, y: (6 * x, 0 * x, 6 * y),
        (-1.5, 1.5), (-1.5, 1.5), (1.0, 0.8), minima=(), floor=None, figure="Sec. 3.5.6.3")


def x2_y10():
    """Exercise 6's L = x^2 + y^10: flat in y near 0, explosively steep in y beyond |y| = 1."""
    return Surface(
        "x2_y10", "x^2 + y^10",
        lambda x, y: x * x + y ** 10,
        lambda x, y: (2 * x, 10 * y ** 9),
        lambda x, y: (2.0 + 0 * x, 0 * x, 90 * y ** 8),
        (-2.5, 2.5), (-2.5, 2.5), (0.5, 0.5), minima=[(0, 0)], floor=0.0, log_levels=True,
        figure="Exercise 6")


def _newton(g, h, w0, iters=50):
    """Refine a stationary point with Newton steps on the closed-form g and h."""
    w = np.array(w0, dtype=np.float64)
    for _ in range(iters):
        gx, gy = g(w[0], w[1])
        hxx, hxy, hyy = h(w[0], w[1])
        step = np.linalg.solve([[hxx, hxy], [hxy, hyy]], [gx, gy])
        w = w - step
        if np.abs(step).max() < 1e-14:
            break
    return w


SURFACES: dict[str, Callable[..., Surface]] = {
    "bowl": bowl,
    "ellipse": ellipse,
    "rosenbrock": rosenbrock,
    "cliff": cliff,
    "local_minima": local_minima,
    "saddle": saddle,
    "degenerate": degenerate,
    "x2_y10": x2_y10,
}


def get(name, **options):
    """The surface registered as ``name`` (see ``SURFACES``), built with ``options``.

    Example: ``get("ellipse", ratio=10)``.  An unknown name raises ValueError listing the
    known ones; a Surface passes through unchanged.
    """
    if isinstance(name, Surface):
        if options:
            raise TypeError("options apply only when a surface is named, not passed in")
        return name
    if name not in SURFACES:
        raise ValueError(f"unknown surface {name!r}; expected one of {sorted(SURFACES)}")
    return SURFACES[name](**options)


# ---------------------------------------------------------------- running a rule
def run(surface, rule, start=None, steps=100, record_state=False, on_divergence="raise",
        max_loss=1e6):
    """Walk ``steps`` steps of ``rule`` (a ddlib.optim Transform) on ``surface``.

    ``surface`` is a Surface or a registered name; ``start`` defaults to the surface's own.
    The parameters are the dict {"w": array of 2} that ``ddlib.optim.trajectory`` updates
    with the rule's ``init``/``update`` (and its ``lookahead``, so Nesterov-type rules see the
    gradient at W + beta V).  The run has diverged at the first step whose loss is not finite
    or exceeds ``max_loss`` in size; ``on_divergence='raise'`` then raises DivergenceError
    (naming the step and the loss), ``'record'`` returns the path up to there with
    ``diverged_at`` set.

    Example::

        path = run("rosenbrock", optim.adam(0.05), steps=300)
        path.losses[-1] < path.losses[0]    # True
    """
    from .. import optim

    s = get(surface)
    if not isinstance(rule, optim.Transform):
        raise TypeError(f"rule must be a ddlib.optim Transform, got {type(rule).__name__}")
    steps = check_int("steps", steps, minimum=0)
    if on_divergence not in ("raise", "record"):
        raise ValueError(f"on_divergence must be 'raise' or 'record', got {on_divergence!r}")
    max_loss = check_positive("max_loss", max_loss)
    x0 = s.start if start is None else np.asarray(start, dtype=np.float64)
    if x0.shape != (2,) or not np.isfinite(x0).all():
        raise ValueError(f"start must be 2 finite numbers (x, y), got {start!r}")

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        path = optim.trajectory(rule, s.grad, x0, steps, record_state=record_state,
                                on_nonfinite="stop", value=s.value, max_loss=max_loss,
                                label=s.name)
    if path.diverged and on_divergence == "raise":
        raise DivergenceError(path.diverged_at, path.diverged_loss,
                              where=f"{rule.name} on the {s.name} surface")
    return path


# ---------------------------------------------------------------- a slice of a real loss
def loss_along_line(model, loss, start, end, data, alphas=None):
    """Loss of ``model`` at the weights (1 - a) start + a end, for each a in ``alphas``.

    ``start``/``end`` map parameter names (``model.named_parameters()``) to arrays, e.g.
    two trained solutions (Sec. 3.5.8).  ``data`` maps a label to (X, y), e.g.
    {"train": (Xtr, ytr), "test": (Xte, yte)}.  Returns {label: array of losses}; the
    model's own weights are restored afterwards.

    Example: ``loss_along_line(net, SoftmaxCrossEntropy(), w_a, w_b, {"test": (X, y)})``.
    """
    from ..train import evaluate

    alphas = np.linspace(-0.25, 1.25, 31) if alphas is None else np.asarray(alphas, float)
    named = model.named_parameters()
    names = [n for n, _, _ in named]
    for label, d in (("start", start), ("end", end)):
        missing = [n for n in names if n not in d]
        if missing:
            raise ValueError(f"{label} lacks parameters {missing}; expected keys {names}")
    saved = {n: np.array(layer.params[k], copy=True) for n, layer, k in named}
    out = {label: np.empty(len(alphas)) for label in data}
    try:
        for i, a in enumerate(alphas):
            for n, layer, k in named:
                layer.params[k][...] = (1 - a) * start[n] + a * end[n]
            for label, (X, y) in data.items():
                out[label][i] = evaluate(model, loss, X, y)[0]
    finally:
        for n, layer, k in named:
            layer.params[k][...] = saved[n]
    return out
