"""Gradient checking (Sec. 3.2.10): finite differences against backpropagation.

The forward difference (Eq. 3.33) perturbs one weight by eps; the central difference
(L(w+eps) - L(w-eps)) / 2eps is one order more accurate and the default here.  In the
chapter's notation G_e is the derivative backpropagation computes and G_a its
finite-difference approximation; Eq. 3.34 compares them by the ratio

    rho = |G_e - G_a| / |G_e + G_a|

which should stay below about 1e-6 for smooth functions (1e-3 near ReLU's kink).
``relative_error`` is the one implementation of that ratio in ddlib: the layer-level
``check_model`` here and the chapter's hand-written recursions
(``ddlib.chapter.backprop.finite_difference_check``) both use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backend import get_backend
from .backend.arrays import is_device
from .backend.arrays import to_host as _host
from .errors import check_int, check_positive
from .init import as_rng

SMOOTH_THRESHOLD = 1e-6
KINK_THRESHOLD = 1e-3


def relative_error(g_backprop, g_estimate, floor=1e-12):
    """Eq. 3.34 elementwise: |G_e - G_a| / max(|G_e + G_a|, floor).

    ``g_backprop`` is G_e (backpropagation's value), ``g_estimate`` G_a (the finite
    difference).  The ratio is symmetric in the two.  ``floor`` keeps the denominator away
    from zero: where both gradients are smaller than it, the ratio measures their absolute
    difference in units of ``floor`` (a central difference in float64 carries a rounding
    error of about 1e-11, so a floor near 1e-4 judges tiny gradients fairly).  Equal
    values give 0, including two zeros.

    >>> float(relative_error(1.0, 1.0 + 2e-6))
    9.99999...e-07
    """
    ge = np.asarray(g_backprop, dtype=np.float64)
    ga = np.asarray(g_estimate, dtype=np.float64)
    num = np.abs(ge - ga)
    return np.where(num == 0, 0.0, num / np.maximum(np.abs(ge + ga), floor))


def default_eps(method):
    """Step that balances truncation and rounding error in float64: about the cube root of
    machine epsilon for central differences (1e-5) and its square root for forward ones."""
    return 1e-5 if method == "central" else 1e-7


def _check_eps(eps, method):
    """eps defaults to ``default_eps(method)``; otherwise a finite number > 0."""
    return default_eps(method) if eps is None else check_positive("eps", eps)


def numerical_gradient(f, x, eps=None, method="central", index=None):
    """Finite-difference gradient of the scalar ``f()`` w.r.t. the host array ``x``.

    ``x`` is perturbed in place and restored; ``eps`` (a finite number > 0) defaults to
    ``default_eps(method)``.  ``index`` (a list of flat indices, in C order) limits the
    estimate to those entries; the rest of the result is NaN.  ``x`` may have any layout
    (a transposed or sliced view is perturbed where it lives, not in a copy); it must be
    a writable float array: an integer array cannot be moved by eps, and is refused.

    >>> x = np.arange(6.0).reshape(2, 3).T          # a non-contiguous view
    >>> g = numerical_gradient(lambda: float((x * x).sum()), x)
    >>> bool(np.allclose(g, 2 * x))
    True
    """
    if method not in ("central", "forward"):
        raise ValueError(f"method must be 'central' or 'forward', got {method!r}")
    eps = _check_eps(eps, method)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a NumPy array (perturbed in place), got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}: an integer "
                        "(or boolean or complex) array cannot be perturbed by eps; convert "
                        "it with x.astype(np.float64)")
    if not x.flags.writeable:
        raise ValueError("x must be writable: numerical_gradient perturbs it in place")
    grad = np.full(x.size, np.nan)
    if index is None:
        idx = range(x.size)
    else:
        idx = [int(i) for i in index]
        bad = [i for i in idx if not 0 <= i < x.size]
        if bad:
            raise ValueError(f"index must hold flat indices in [0, {x.size}), got {bad[0]}")
    base = f() if method == "forward" else None
    for i in idx:
        # the multi-index of C-order position i, so that x itself (whatever its strides)
        # is written, never a copy made by reshape
        at = np.unravel_index(i, x.shape) if x.ndim else ()
        old = x[at]
        x[at] = old + eps
        up = f()
        if method == "central":
            x[at] = old - eps
            down = f()
            grad[i] = (up - down) / (2 * eps)
        else:
            grad[i] = (up - base) / eps
        x[at] = old
    return grad.reshape(x.shape)


@dataclass
class GradcheckReport:
    """Worst ratio found, where, and how many entries were checked."""

    worst_rho: float
    where: str
    n_checked: int
    threshold: float
    per_param: dict = field(default_factory=dict)

    @property
    def passed(self):
        return self.worst_rho < self.threshold

    def __repr__(self):
        verdict = "PASS" if self.passed else "FAIL"
        return (f"GradcheckReport({verdict}: worst rho = {self.worst_rho:.2e} at {self.where}, "
                f"{self.n_checked} entries checked, threshold {self.threshold:.0e})")


def check_model(model, loss, x, y, eps=None, method="central", n_samples=None, seed=0,
                threshold=SMOOTH_THRESHOLD, check_input=False, atol=0.0):
    """Compare backprop's gradients of ``loss(model(x), y)`` with finite differences.

    Checks every parameter entry, or ``n_samples`` random entries per parameter.  With
    ``check_input`` the input batch's gradient is checked as well.  Works on the current
    backend; perturbations are made on host copies and copied back.

    Eq. 3.34 divides by the gradient's own size, so an entry whose true gradient is as
    small as the finite difference's rounding noise (about 1e-11 here) gets a large rho
    even when backprop is right.  ``atol`` declares that level: entries whose two
    estimates differ by at most ``atol`` count as agreeing (rho 0).  The default 0 keeps
    the chapter's plain ratio.

    ``n_samples`` (when given) must be an integer >= 1 and ``eps`` a finite number > 0.
    Every parameter (and, with ``check_input``, the batch ``x``) must be a float array:
    integer arrays cannot be perturbed by eps and are refused with a TypeError.
    """
    if method not in ("central", "forward"):
        raise ValueError(f"method must be 'central' or 'forward', got {method!r}")
    eps = _check_eps(eps, method)
    if n_samples is not None:
        n_samples = check_int("n_samples", n_samples, minimum=1)
    be = get_backend()
    rng = as_rng(seed)
    xb = be.asarray(x)
    named = model.named_parameters()
    for n, layer, k in named:
        dt = layer.params[k].dtype
        if np.dtype(dt).kind != "f":
            raise TypeError(f"parameter {n} has dtype {dt}: an integer (or boolean or "
                            "complex) parameter cannot be perturbed by eps; build the "
                            "model with dtype=np.float64")
    if check_input and np.dtype(xb.dtype).kind != "f":
        raise TypeError(f"x has dtype {xb.dtype}: with check_input=True the batch is "
                        "perturbed by eps, so it must be a float array "
                        "(x.astype(np.float64))")

    model.zero_grad() if hasattr(model, "zero_grad") else None
    out = model.forward(xb, train=True)
    loss.forward(out, y)
    dx = model.backward(loss.backward(), need_dx=True)
    analytic = {n: np.array(_host(layer.grads[k]), dtype=np.float64) for n, layer, k in named}
    if check_input:
        analytic["input"] = np.array(_host(dx), dtype=np.float64)

    hx = np.array(_host(xb))

    def objective():
        return loss.forward(model.forward(be.asarray(hx) if check_input else xb, train=True), y)

    report = GradcheckReport(0.0, "-", 0, threshold)
    targets = list(named) + ([("input", None, None)] if check_input else [])
    for n, layer, k in targets:
        if layer is None:
            host, push = hx, None
        elif is_device(layer.params[k]):
            # device parameters: perturb a host copy and copy it back before each evaluation
            host = _host(layer.params[k])

            def push(layer=layer, k=k, host=host):
                layer.params[k] = be.asarray(host)

        else:
            host, push = layer.params[k], None

        def f(push=push):
            if push is not None:
                push()
            return objective()

        size = host.size
        if n_samples is None or n_samples >= size:
            index = list(range(size))
        else:
            index = [int(i) for i in rng.choice(size, size=n_samples, replace=False)]
        est = numerical_gradient(f, host, eps=eps, method=method, index=index)
        if push is not None:
            push()
        # G_e: what backpropagation gave; G_a: the finite-difference estimate (Eq. 3.34)
        g_e, g_a = analytic[n].reshape(-1)[index], est.reshape(-1)[index]
        rho = relative_error(g_e, g_a)
        if atol > 0:
            rho = np.where(np.abs(g_e - g_a) <= atol, 0.0, rho)
        worst = float(rho.max()) if rho.size else 0.0
        report.per_param[n] = worst
        report.n_checked += len(index)
        if worst >= report.worst_rho:
            report.worst_rho = worst
            report.where = f"{n}[{index[int(rho.argmax())]}]" if rho.size else n
    return report
