"""Core kernels as equations: matmul, bias add, activations (Sec. 3.2.5), softmax (Eq. 3.20-3.22).

Shapes: a batch ``x`` is (n, d), one row per example; a weight matrix ``W`` is
(d_in, d_out); a bias ``b`` is (d_out,); labels are integer class indices of shape (n,).
"""

import numpy as np

from .. import checks as ck

__all__ = [
    "ACTIVATIONS",
    "matmul",
    "matmul_tn",
    "matmul_nt",
    "bias_add",
    "linear",
    "act_forward",
    "act_backward",
    "act_deriv",
    "linear_act",
    "act_backward_colsum",
    "softmax",
    "softmax_xent",
    "softmax_xent_backward",
    "col_sum",
    "fill",
    "mse",
]

#: Activation names every backend implements; ``alpha`` is leaky ReLU's slope for x < 0.
ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "hardtanh")

#: The code each compiled kernel (cpu, cuda) branches on: the activation's position in
#: ``ACTIVATIONS``.  Kernels compare against these names, never against bare integers.
IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, HARDTANH = range(len(ACTIVATIONS))


def activation_code(kind) -> int:
    """The kernel code of the activation named ``kind`` (ValueError for unknown names)."""
    try:
        return ACTIVATIONS.index(kind)
    except ValueError:
        raise ValueError(f"kind={kind!r}: expected one of {ACTIVATIONS}") from None


def matmul(a, b, out=None):
    """``a @ b`` for 2-D arrays (n, k) x (k, m) -> (n, m)."""
    ck.need_matmul("matmul", a, b, out)
    return np.matmul(a, b, out=out)


def matmul_tn(a, b, out=None):
    """``a.T @ b`` for a (k, n), b (k, m) -> (n, m): the weight gradient x^T g."""
    ck.need_matmul("matmul_tn", a, b, out, trans_a=True)
    return np.matmul(a.T, b, out=out)


def matmul_nt(a, b, out=None):
    """``a @ b.T`` for a (n, k), b (m, k) -> (n, m): the input gradient g W^T."""
    ck.need_matmul("matmul_nt", a, b, out, trans_b=True)
    return np.matmul(a, b.T, out=out)


def bias_add(x, b, out=None):
    """``x + b`` with ``b`` (m,) added to every row of ``x`` (n, m)."""
    ck.need_2d("bias_add", "x", x)
    ck.need_shape("bias_add", "b", b, (x.shape[1],), " (one entry per column of x)")
    ck.need_same_shape("bias_add", "x", x, out=out)
    return np.add(x, b[None, :], out=out)


def linear(x, W, b, out=None):
    """The linear layer ``x W + b``: (n, d_in) x (d_in, d_out) + (d_out,)."""
    ck.need_matmul("linear", x, W, out, names=("x", "W"))
    ck.need_shape("linear", "b", b, (W.shape[1],), " (one entry per column of W)")
    return x @ W + b[None, :] if out is None else np.add(x @ W, b, out=out)


# f and f' of each activation, side by side (Sec. 3.2.5); x is the input, alpha leaky
# ReLU's slope.  The derivatives are written in terms of x here; the compiled kernels
# read sigmoid's and tanh's from the output o instead (o (1 - o), 1 - o^2): the same values.
def _sigmoid(x, alpha):
    return 1.0 / (1.0 + np.exp(-x))


def _sigmoid_d(x, alpha):
    s = _sigmoid(x, alpha)
    return s * (1 - s)


_RULES = {
    "identity": (lambda x, a: x.copy(), lambda x, a: np.ones_like(x)),
    "sigmoid": (_sigmoid, _sigmoid_d),
    "tanh": (lambda x, a: np.tanh(x), lambda x, a: 1 - np.tanh(x) ** 2),
    "relu": (lambda x, a: np.maximum(x, 0), lambda x, a: (x > 0) * x.dtype.type(1)),
    "leaky_relu": (lambda x, a: np.where(x > 0, x, a * x),
                   lambda x, a: np.where(x > 0, x.dtype.type(1), x.dtype.type(a))),
    "hardtanh": (lambda x, a: np.clip(x, -1, 1),
                 lambda x, a: ((x > -1) & (x < 1)) * x.dtype.type(1)),
}
assert tuple(_RULES) == ACTIVATIONS


def _rule(kind):
    return _RULES[ACTIVATIONS[activation_code(kind)]]


def act_forward(kind, x, alpha=0.01, out=None):
    """y = f(x) elementwise for the activation named ``kind``."""
    ck.need_same_shape("act_forward", "x", x, out=out)
    y = _rule(kind)[0](x, alpha).astype(x.dtype, copy=False)
    if out is not None:
        out[...] = y
        return out
    return y


def act_deriv(kind, x, alpha=0.01):
    """f'(x) elementwise (Sec. 3.2.5): sigmoid o(1-o), tanh 1-o^2, ReLU/hard-tanh indicators."""
    return _rule(kind)[1](x, alpha).astype(x.dtype, copy=False)


def act_backward(kind, x, y, g, alpha=0.01, out=None):
    """The backward rule g * f'(x); ``y = f(x)`` is passed so kernels may reuse it."""
    ck.need_same_shape("act_backward", "the forward input x", x, y=y, g=g, out=out)
    r = (g * act_deriv(kind, x, alpha)).astype(g.dtype, copy=False)
    if out is not None:
        out[...] = r
        return out
    return r


def linear_act(kind, x, W, b, alpha=0.01):
    """A linear layer and the activation after it in one call.

    Returns ``(z, y)`` with ``z = x W + b`` and ``y = f(z)``: what the two layers' forward
    passes return and keep for their backward passes.  Fused kernels save a pass over
    memory; the numbers are those of ``linear`` followed by ``act_forward``.
    """
    ck.need_matmul("linear_act", x, W, names=("x", "W"))
    ck.need_shape("linear_act", "b", b, (W.shape[1],), " (one entry per column of W)")
    z = linear(x, W, b)
    return z, act_forward(kind, z, alpha)


def act_backward_colsum(kind, x, y, g, alpha=0.01, db=None):
    """The activation's backward rule and the bias gradient after it in one call.

    Returns ``(dz, db)`` with ``dz = g * f'(x)`` and ``db`` its column sums (written into
    ``db`` when given): ``act_backward`` followed by ``col_sum``.
    """
    ck.need_2d("act_backward_colsum", "x", x)
    ck.need_same_shape("act_backward_colsum", "the forward input x", x, y=y, g=g)
    ck.need_shape("act_backward_colsum", "db", db, (x.shape[1],), " (one entry per column)")
    dz = act_backward(kind, x, y, g, alpha)
    return dz, col_sum(dz, out=db)


def softmax(x):
    """Row-wise softmax (Eq. 3.20), shifted by the row maximum for stability."""
    ck.need_2d("softmax", "x", x)
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def softmax_xent(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels (Eq. 3.21).

    Returns ``(loss, probs)``: the loss as a Python float and the (n, k) probabilities.
    """
    ck.need_2d("softmax_xent", "logits", logits)
    labels = np.asarray(labels)
    ck.need_labels("softmax_xent", labels, logits.shape[0], logits.shape[1])
    p = softmax(logits)
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(n), labels].mean()
    return float(loss), p


def softmax_xent_backward(probs, labels):
    """Gradient of the mean loss w.r.t. the logits: (p - y) / n (Eq. 3.22)."""
    ck.need_2d("softmax_xent_backward", "probs", probs)
    labels = np.asarray(labels)
    ck.need_labels("softmax_xent_backward", labels, probs.shape[0], probs.shape[1])
    n = probs.shape[0]
    y = np.zeros_like(probs)
    y[np.arange(n), labels] = 1
    return (probs - y) / probs.dtype.type(n)


def col_sum(x, out=None):
    """Sum over rows: the bias gradient from an (n, m) upstream gradient."""
    ck.need_2d("col_sum", "x", x)
    ck.need_shape("col_sum", "out", out, (x.shape[1],), " (one entry per column of x)")
    return np.sum(x, axis=0, out=out)


def fill(x, value):
    """Set every element of ``x`` to ``value`` in place."""
    x[...] = value
    return x


def mse(scores, targets):
    """Squared error 0.5 ||s - t||^2 averaged over the n rows; returns (loss, (s - t) / n)."""
    ck.need_2d("mse", "scores", scores)
    ck.need_same_shape("mse", "scores", scores, targets=targets)
    diff = scores - targets
    n = scores.shape[0]
    return float(0.5 * np.sum(diff * diff) / n), diff / scores.dtype.type(n)
