"""Three ways to backpropagate through a fully connected net (Secs. 3.2.3-3.2.6).

A ``Network`` is a list of weight matrices W_r (d_{r-1}, d_r), biases b_r (d_r,) and one
activation name per layer (``identity`` for a linear output).  With rows as examples the
forward pass is a_r = h_{r-1} W_r + b_r, h_r = Phi_r(a_r), h_0 = X.  Given the gradient of
the loss at the output, each recursion returns the gradients of every W_r and b_r:

* ``post_activation_backprop`` carries Delta_r = dL/dh_r (Eqs. 3.10-3.13): the activation
  derivative Phi'(a) travels with the edge into the later layer.
* ``pre_activation_backprop`` carries delta_r = dL/da_r (Eqs. 3.16-3.19): the activation
  derivative sits outside the sum, at the earlier node.
* ``decoupled_backprop`` treats Linear and activation as separate ``ddlib.layers`` layers
  (Sec. 3.2.6, Table 3.1) and runs their backward passes in turn.

All three use the current backend's kernels (``linear``, ``matmul``, ``act_backward``,
``act_deriv``, ``col_sum``), so they run on numpy, cpu and cuda alike; they give the same
gradients (Exercise 9), which the tests and the 3.2.6 notebook check.

>>> import numpy as np
>>> net = Network.random([3, 4, 2], ["tanh", "identity"], seed=0)
>>> X, y = np.ones((5, 3)), np.array([0, 1, 0, 1, 1])
>>> post = post_activation_backprop(net, X, y)
>>> pre = pre_activation_backprop(net, X, y)
>>> bool(np.allclose(post.dW[0], pre.dW[0]))
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..backend import get_backend
from ..backend.arrays import is_device
from ..backend.arrays import to_host as _host
from ..backend.numpy_ref.core import ACTIVATIONS
from ..errors import check_finite
from ..init import as_rng
from ..losses import SoftmaxCrossEntropy

__all__ = [
    "Network",
    "Trace",
    "Gradients",
    "forward",
    "activation_derivatives",
    "post_activation_backprop",
    "pre_activation_backprop",
    "decoupled_backprop",
    "RECURSIONS",
    "all_recursions",
    "max_difference",
    "finite_difference_gradients",
    "finite_difference_check",
    "draw_decoupled",
    "table_3_1",
]


@dataclass
class Network:
    """Weights W_r (d_{r-1}, d_r), biases b_r (d_r,) and activation names, one per layer.

    Shapes must chain (W_r's rows = W_{r-1}'s columns) and every activation must be one of
    ``ACTIVATIONS``; otherwise a ValueError names the layer and the shapes.
    """

    weights: list
    biases: list
    activations: list
    alpha: float = 0.01  # leaky ReLU slope

    def __post_init__(self):
        L = len(self.weights)
        if L == 0 or len(self.biases) != L or len(self.activations) != L:
            raise ValueError(
                f"Network needs as many biases and activations as weight matrices; got "
                f"{L} weights, {len(self.biases)} biases, {len(self.activations)} activations"
            )
        self.weights = [np.asarray(W) for W in self.weights]
        self.biases = [np.asarray(b) for b in self.biases]
        for r, (W, b, act) in enumerate(zip(self.weights, self.biases, self.activations), 1):
            if W.ndim != 2:
                raise ValueError(f"layer {r}: W must be 2-D (d_in, d_out), got shape {W.shape}")
            if b.shape != (W.shape[1],):
                raise ValueError(
                    f"layer {r}: bias has shape {b.shape} but W has shape {W.shape}; "
                    f"expected ({W.shape[1]},)"
                )
            if r > 1 and W.shape[0] != self.weights[r - 2].shape[1]:
                raise ValueError(
                    f"layer {r}: W has shape {W.shape} but layer {r - 1} outputs "
                    f"{self.weights[r - 2].shape[1]} values (W_{r - 1} shape "
                    f"{self.weights[r - 2].shape})"
                )
            if act not in ACTIVATIONS:
                raise ValueError(f"layer {r}: activation {act!r} is not one of {ACTIVATIONS}")

    @classmethod
    def random(cls, sizes, activations, seed=None, dtype=np.float64, scale=1.0, alpha=0.01):
        """Weights ~ N(0, scale^2 / d_in), biases ~ N(0, 0.1^2) for layer widths ``sizes``.

        ``activations`` is one name for every hidden layer (the output gets ``identity``)
        or a list with one name per layer.
        """
        rng = as_rng(seed)
        if len(sizes) < 2:
            raise ValueError(f"sizes must list an input and an output width, got {sizes}")
        L = len(sizes) - 1
        if isinstance(activations, str):
            activations = [activations] * (L - 1) + ["identity"]
        Ws = [(rng.standard_normal((a, b)) * scale / np.sqrt(a)).astype(dtype)
              for a, b in zip(sizes[:-1], sizes[1:])]
        bs = [(0.1 * rng.standard_normal(b)).astype(dtype) for b in sizes[1:]]
        return cls(Ws, bs, list(activations), alpha)

    @property
    def n_layers(self):
        return len(self.weights)

    def to_sequential(self, backend=None):
        """The decoupled form (Sec. 3.2.6): Linear, activation, Linear, ... sharing copies of
        the weights, as a ``ddlib.layers.Sequential`` on ``backend`` (default: current)."""
        from ..layers import ACTIVATION_LAYERS, Linear, Sequential

        be = get_backend(backend)
        seq = []
        for r, (W, b, act) in enumerate(zip(self.weights, self.biases, self.activations), 1):
            lin = Linear(W.shape[0], W.shape[1], init="zeros", dtype=W.dtype, name=f"Linear{r}")
            lin.params["W"], lin.params["b"] = W.copy(), b.astype(W.dtype)
            seq.append(lin)
            cls = ACTIVATION_LAYERS[act]
            layer = cls(alpha=self.alpha) if act == "leaky_relu" else cls()
            layer.name = f"{type(layer).__name__}{r}"
            seq.append(layer)
        return Sequential(seq).to(be.name)


@dataclass
class Trace:
    """The forward pass's intermediate values: h[0] = X, a[r-1] and h[r] for layer r."""

    h: list
    a: list


@dataclass
class Gradients:
    """dL/dW_r and dL/db_r as host arrays, the loss, and the recursion's carried values."""

    dW: list
    db: list
    loss: float
    carried: list = field(default_factory=list, repr=False)
    name: str = ""


def _check_batch(net, X):
    X = X if is_device(X) else np.asarray(X)
    if len(X.shape) != 2 or X.shape[1] != net.weights[0].shape[0]:
        raise ValueError(
            f"input X has shape {tuple(X.shape)} but layer 1 expects (n, "
            f"{net.weights[0].shape[0]}) (W_1 shape {net.weights[0].shape})"
        )
    return check_finite("X", X)


def forward(net, X, be=None):
    """Forward pass: a_r = h_{r-1} W_r + b_r and h_r = Phi_r(a_r) (Fig. 3.6's two values).

    X (n, d_0) -> ``Trace`` with h (L + 1 arrays) and a (L arrays) as backend arrays.
    """
    be = be or get_backend()
    X = _check_batch(net, X)
    h, a = [be.asarray(X)], []
    for W, b, act in zip(net.weights, net.biases, net.activations):
        a.append(be.linear(h[-1], be.asarray(W), be.asarray(b)))
        h.append(be.act_forward(act, a[-1], net.alpha))
    return Trace(h, a)


def activation_derivatives(net, trace, be=None):
    """Phi_r'(a_r) for every layer, as host arrays (the local derivatives of Sec. 3.2.5)."""
    be = be or get_backend()
    return [_host(be.act_deriv(act, a, net.alpha)) for act, a in zip(net.activations, trace.a)]


def _start(net, X, y, loss, be):
    trace = forward(net, X, be)
    loss = loss or SoftmaxCrossEntropy()
    value = loss.forward(trace.h[-1], y)
    return trace, value, be.asarray(loss.backward())


def post_activation_backprop(net, X, y, loss=None):
    """Gradients by the post-activation recursion (Eqs. 3.10-3.13).

    Delta_L = dL/do from the loss.  Going backwards, layer r's error at its pre-activation
    is E_r = Phi'(a_r) * Delta_r (the factor Phi'(a_h) of Eq. 3.11 that belongs to the edge
    into h); then dW_r = h_{r-1}^T E_r (Eq. 3.13, summed over the batch), db_r = sum of E_r,
    and Delta_{r-1} = E_r W_r^T (Eq. 3.12).  ``carried`` is [Delta_0, ..., Delta_L].
    ``loss`` defaults to softmax cross-entropy on integer labels y.
    """
    be = get_backend()
    trace, value, Delta = _start(net, X, y, loss, be)
    dW, db, carried = [None] * net.n_layers, [None] * net.n_layers, [Delta]
    for r in range(net.n_layers, 0, -1):
        act, a, h = net.activations[r - 1], trace.a[r - 1], trace.h[r]
        E = be.act_backward(act, a, h, Delta, net.alpha)  # Phi'(a_h) on the edge into h
        dW[r - 1] = _host(be.matmul_tn(trace.h[r - 1], E))
        db[r - 1] = _host(be.col_sum(E))
        Delta = be.matmul_nt(E, be.asarray(net.weights[r - 1]))
        carried.insert(0, Delta)
    return Gradients(dW, db, value, [_host(c) for c in carried], "post-activation")


def pre_activation_backprop(net, X, y, loss=None):
    """Gradients by the pre-activation recursion (Eqs. 3.16-3.19).

    delta_L = Phi'(a_L) * dL/do (step 2 of the chapter's summary).  Going backwards,
    dW_r = h_{r-1}^T delta_r (Eq. 3.19), db_r = sum of delta_r, and
    delta_{r-1} = Phi'(a_{r-1}) * (delta_r W_r^T) (Eq. 3.18: the derivative outside the sum).
    ``carried`` is [delta_1, ..., delta_L].
    """
    be = get_backend()
    trace, value, dout = _start(net, X, y, loss, be)
    L = net.n_layers
    delta = be.act_backward(net.activations[-1], trace.a[-1], trace.h[-1], dout, net.alpha)
    dW, db, carried = [None] * L, [None] * L, [delta]
    for r in range(L, 0, -1):
        dW[r - 1] = _host(be.matmul_tn(trace.h[r - 1], delta))
        db[r - 1] = _host(be.col_sum(delta))
        if r > 1:
            summed = be.matmul_nt(delta, be.asarray(net.weights[r - 1]))  # sum_h w delta(h)
            delta = be.act_backward(net.activations[r - 2], trace.a[r - 2], trace.h[r - 1],
                                    summed, net.alpha)
            carried.insert(0, delta)
    return Gradients(dW, db, value, [_host(c) for c in carried], "pre-activation")


def decoupled_backprop(net, X, y, loss=None):
    """Gradients by the decoupled view (Sec. 3.2.6): Linear and activation as separate layers.

    Builds ``net.to_sequential()`` and runs each layer's backward rule of Table 3.1 in
    turn: g_i = g_{i+1} * Phi'(z_i) through an activation, g_i = g_{i+1} W^T through a
    linear layer, whose weight gradient is z_i^T g_{i+1}.  ``carried`` holds the gradient
    at every layer boundary, input first (2L + 1 arrays).
    """
    be = get_backend()
    X = _check_batch(net, X)
    model = net.to_sequential(be.name)
    loss = loss or SoftmaxCrossEntropy()
    value = loss.forward(model.forward(be.asarray(X)), y)
    g = be.asarray(loss.backward())
    carried = [g]
    for layer in reversed(model.layers):
        g = layer.backward(g, need_dx=True)
        carried.insert(0, g)
    dW = [_host(model.layers[2 * r].grads["W"]) for r in range(net.n_layers)]
    db = [_host(model.layers[2 * r].grads["b"]) for r in range(net.n_layers)]
    return Gradients(dW, db, value, [_host(c) for c in carried], "decoupled")


RECURSIONS = {
    "post-activation": post_activation_backprop,
    "pre-activation": pre_activation_backprop,
    "decoupled": decoupled_backprop,
}


def all_recursions(net, X, y, loss=None):
    """Run the three recursions on the same batch: {name: Gradients}."""
    return {name: fn(net, X, y, loss) for name, fn in RECURSIONS.items()}


def max_difference(a, b):
    """Largest |difference| between two ``Gradients`` over every dW and db entry."""
    return max(float(np.max(np.abs(x - y), initial=0.0))
               for x, y in zip(a.dW + a.db, b.dW + b.db))


def finite_difference_gradients(net, X, y, loss=None, eps=1e-5):
    """Every dL/dW_r and dL/db_r by central differences (Sec. 3.2.10), as ``Gradients``.

    Two forward passes per parameter, so only for small nets; it is the yardstick the
    recursions are measured against.
    """
    from ..gradcheck import numerical_gradient

    loss = loss or SoftmaxCrossEntropy()
    be = get_backend()

    def objective():
        return loss.forward(forward(net, X, be).h[-1], y)

    dW = [numerical_gradient(objective, W, eps=eps) for W in net.weights]
    db = [numerical_gradient(objective, b, eps=eps) for b in net.biases]
    return Gradients(dW, db, objective(), [], "finite differences")


def finite_difference_check(net, X, y, grads, loss=None, eps=1e-5, floor=1e-4, n_samples=None,
                            seed=0):
    """Worst relative error (Eq. 3.34) of ``grads`` against central differences, per array.

    Perturbs host copies of each W_r and b_r (all entries, or ``n_samples`` random ones
    per array) and re-runs the forward pass.  The ratio is ``ddlib.gradcheck.relative_error``
    with ``floor``: a central difference in float64 carries an absolute rounding error near
    1e-11, which would swamp the plain ratio for gradients of size 1e-6, so entries below
    ``floor`` are in effect judged by their absolute error.  Returns {"W1": rho, ...}.
    """
    from ..gradcheck import numerical_gradient, relative_error

    loss = loss or SoftmaxCrossEntropy()
    rng = as_rng(seed)
    be = get_backend()

    def objective():
        return loss.forward(forward(net, X, be).h[-1], y)

    out = {}
    for r in range(net.n_layers):
        for kind, arr, g in (("W", net.weights[r], grads.dW[r]), ("b", net.biases[r], grads.db[r])):
            if n_samples is None or n_samples >= arr.size:
                index = list(range(arr.size))
            else:
                index = [int(i) for i in rng.choice(arr.size, n_samples, replace=False)]
            est = numerical_gradient(objective, arr, eps=eps, index=index).reshape(-1)[index]
            ge = np.asarray(g, dtype=np.float64).reshape(-1)[index]
            out[f"{kind}{r + 1}"] = float(relative_error(ge, est, floor=floor).max())
    return out


def table_3_1(seed=0, n=4, d=6, finite_differences=True):
    """Table 3.1 from the layers themselves: each layer's backward rule checked three ways.

    For Linear, Sigmoid, Tanh, ReLU, HardTanh, Max and an arbitrary function (with its
    Jacobian), a random batch z_i (n, d) and upstream gradient g_{i+1} are drawn; the
    layer's ``backward`` is compared with the table's formula written out in NumPy and
    with central differences of sum(g_{i+1} * layer(z_i)) (skipped, rho = NaN, when
    ``finite_differences`` is False).  Returns a list of dicts with keys function, type,
    forward, backward, rule_error, rho.
    """
    from ..gradcheck import numerical_gradient, relative_error
    from ..layers import FunctionLayer, HardTanh, Linear, Max, ReLU, Sigmoid, Tanh

    rng = as_rng(seed)
    be = get_backend()

    def f_any(v):  # a many-to-many map that is not linear: products of neighbours
        return v * np.roll(v, 1)

    def jac_any(v):
        J = np.diag(np.roll(v, 1))
        k = np.arange(v.size)
        J[k, (k - 1) % v.size] += v
        return J

    lin = Linear(d, d, rng=rng, name="Linear")
    specs = [
        ("Linear", "many-many", "z_{i+1} = W^T z_i", "g_i = W g_{i+1}", lin,
         lambda z, out, g: g @ _host(lin.params["W"]).T),
        ("Sigmoid", "one-one", "z_{i+1} = sigmoid(z_i)", "g_i = g_{i+1} ⊙ z_{i+1} ⊙ (1 - z_{i+1})",
         Sigmoid(), lambda z, out, g: g * out * (1 - out)),
        ("Tanh", "one-one", "z_{i+1} = tanh(z_i)", "g_i = g_{i+1} ⊙ (1 - z_{i+1} ⊙ z_{i+1})",
         Tanh(), lambda z, out, g: g * (1 - out * out)),
        ("ReLU", "one-one", "z_{i+1} = z_i ⊙ I(z_i > 0)", "g_i = g_{i+1} ⊙ I(z_i > 0)",
         ReLU(), lambda z, out, g: g * (z > 0)),
        ("Hard tanh", "one-one", "clip z_i to [-1, 1]", "copy g_{i+1} inside (-1, 1), else 0",
         HardTanh(), lambda z, out, g: g * ((z > -1) & (z < 1))),
        ("Max", "many-one", "max of each group of 2", "copy to the maximal input, 0 elsewhere",
         Max(2), lambda z, out, g: np.repeat(g, 2, axis=1)
         * (z == np.repeat(out, 2, axis=1))),
        ("Arbitrary f", "anything", "z_{i+1}[k] = f_k(z_i)", "g_i = J^T g_{i+1} (Eq. 3.24)",
         FunctionLayer(f_any, jac_any), lambda z, out, g: np.stack(
             [jac_any(v).T @ gv for v, gv in zip(z, g)])),
    ]
    rows = []
    for name, kind, fwd, bwd, layer, rule in specs:
        layer.to(be.name)
        # keep inputs away from the kinks of ReLU / hard tanh so differences are clean
        z = rng.uniform(0.1, 1.8, (n, d)) * rng.choice([-1.0, 1.0], (n, d))
        out = _host(layer.forward(be.asarray(z)))
        g = rng.standard_normal(out.shape)
        dx = _host(layer.backward(be.asarray(g)))

        def objective(layer=layer, g=g, z=z):
            return float(np.sum(g * _host(layer.forward(be.asarray(z)))))

        rho = math.nan
        if finite_differences:
            rho = float(relative_error(dx, numerical_gradient(objective, z)).max())
        rows.append(dict(function=name, type=kind, forward=fwd, backward=bwd,
                         rule_error=float(np.max(np.abs(dx - rule(z, out, g)))), rho=rho))
    return rows


def draw_decoupled(net, ax=None, grads=None):
    """Fig. 3.7 for ``net``: Linear and activation boxes in a row, forward rule above each
    arrow, backward rule below; with ``grads`` (a decoupled ``Gradients``) each boundary is
    labelled with the mean |g_i| found there.  Returns the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 2.2))
    boxes = []
    for r, act in enumerate(net.activations, 1):
        boxes += [(f"Linear {r}\nW{r}", "z W", "g Wᵀ"), (f"{act}\nΦ", "Φ(z)", "g ⊙ Φ'")]
    for k, (label, fwd, bwd) in enumerate(boxes):
        x = 1.6 * k
        color = "#dbe9f6" if k % 2 == 0 else "#fde3c8"
        ax.add_patch(FancyBboxPatch((x - 0.55, -0.45), 1.1, 0.9, boxstyle="round,pad=0.05",
                                    facecolor=color, edgecolor="0.3"))
        ax.text(x, 0, label, ha="center", va="center", fontsize=8)
        ax.annotate("", xy=(x - 0.62, 0.25), xytext=(x - 1.0, 0.25),
                    arrowprops=dict(arrowstyle="->", color="tab:green"))
        ax.annotate("", xy=(x - 1.0, -0.25), xytext=(x - 0.62, -0.25),
                    arrowprops=dict(arrowstyle="->", color="tab:red"))
        if k == len(boxes) - 1:  # the output's arrows: o forward, dL/do backward
            ax.annotate("", xy=(x + 1.0, 0.25), xytext=(x + 0.62, 0.25),
                        arrowprops=dict(arrowstyle="->", color="tab:green"))
            ax.annotate("", xy=(x + 0.62, -0.25), xytext=(x + 1.0, -0.25),
                        arrowprops=dict(arrowstyle="->", color="tab:red"))
        ax.text(x, 0.7, fwd, ha="center", fontsize=7, color="tab:green")
        ax.text(x, -0.8, bwd, ha="center", fontsize=7, color="tab:red")
    if grads is not None:
        for k, g in enumerate(grads.carried):
            ax.text(1.6 * k - 0.8, -1.15, f"{np.mean(np.abs(g)):.2g}", ha="center", fontsize=7,
                    color="tab:red")
        ax.text(-1.4, -1.15, "mean |g|:", ha="right", fontsize=7, color="tab:red")
    ax.set_xlim(-2.6, 1.6 * len(boxes) + 0.2)
    ax.set_ylim(-1.4, 1.0)
    ax.axis("off")
    return ax
