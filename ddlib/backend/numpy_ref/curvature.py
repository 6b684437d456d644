"""Kernels for curvature products: the pieces of Pearlmutter's R-operator that are not
matrix products (Sec. 3.5.6.1, where Hessian-free needs H v without forming H).

The R-operator R{.} is the directional derivative d/dr (.)(w + r v) at r = 0.  Pushing it
through a network's forward pass and then through its backward pass gives H v exactly,
for about the cost of a second gradient (Pearlmutter 1994).  Through linear layers it only
needs matrix products, which every backend already has.  These kernels handle the other
parts: an activation's second derivative, the softmax cross-entropy's Hessian with
respect to the scores, and batch normalization's two passes.

Shapes: a batch is (n, d); per-unit vectors (gamma, mean, var) are (d,).  Every kernel
returns arrays in the dtype of its batch arguments.
"""

import numpy as np

from .. import checks as ck
from .core import ACTIVATIONS, activation_code

__all__ = [
    "act_second",
    "softmax_xent_hvp",
    "batchnorm_rforward",
    "batchnorm_rbackward",
]


def _act_second_deriv(kind, y, alpha):
    """f''(x) written in terms of the output y = f(x); zero for the piecewise-linear ones."""
    name = ACTIVATIONS[activation_code(kind)]
    if name == "sigmoid":
        return y * (1 - y) * (1 - 2 * y)
    if name == "tanh":
        return -2 * y * (1 - y * y)
    return np.zeros_like(y)  # identity, relu, leaky_relu, hardtanh: f'' = 0 almost everywhere


def act_second(kind, x, y, g, r, alpha=0.01, out=None):
    """g * f''(x) * r elementwise: the extra term of an activation's R-backward pass.

    With z the activation's input and g the gradient at its output, the backward rule is
    dz = g f'(z); its R-derivative is R{dz} = R{g} f'(z) + g f''(z) R{z}.  The first term
    is ``act_backward`` applied to R{g}; this kernel gives the second.  ``y = f(x)`` is
    passed because sigmoid's and tanh's f'' are cheapest in terms of it.

    >>> y = np.array([[0.5]])                           # sigmoid(0) = 1/2, f''(0) = 0
    >>> act_second("sigmoid", np.zeros((1, 1)), y, np.ones((1, 1)), np.ones((1, 1)))
    array([[0.]])
    """
    ck.need_same_shape("act_second", "the forward input x", x, y=y, g=g, r=r, out=out)
    ck.need_float("act_second", x=x, y=y, g=g, r=r)
    res = (g * r * _act_second_deriv(kind, y, alpha)).astype(g.dtype, copy=False)
    if out is not None:
        out[...] = res
        return out
    return res


def softmax_xent_hvp(probs, r, out=None):
    """The Hessian of the mean softmax cross-entropy with respect to the scores, times r.

    For one example with probabilities p the Hessian is diag(p) - p p^T; averaged over
    the n rows of the batch, row i of the product is (p_i * r_i - p_i (p_i . r_i)) / n.
    It is positive semidefinite (each block is a covariance matrix), which is why the
    Gauss-Newton product built from it is too.

    probs (n, k): the softmax output of the forward pass; r (n, k): the R-derivative of
    the scores.

    >>> softmax_xent_hvp(np.full((1, 2), 0.5), np.array([[1.0, -1.0]]))
    array([[ 0.5, -0.5]])
    """
    ck.need_2d("softmax_xent_hvp", "probs", probs)
    ck.need_same_shape("softmax_xent_hvp", "probs", probs, r=r, out=out)
    ck.need_float("softmax_xent_hvp", probs=probs, r=r)
    n = probs.shape[0]
    pr = probs * r
    res = ((pr - probs * pr.sum(axis=1, keepdims=True)) / n).astype(probs.dtype, copy=False)
    if out is not None:
        out[...] = res
        return out
    return res


def _bn_parts(x, mean, var, eps):
    sigma = np.sqrt(var + eps)
    return sigma, (x - mean) / sigma


def batchnorm_rforward(rx, x, gamma, mean, var, eps, vgamma, vbeta):
    """R{out} of training-mode batch normalization (Eqs. 3.58-3.61).

    With sigma = sqrt(var + eps) and x_hat = (x - mean) / sigma, the derivatives of the
    batch statistics along the input direction rx are R{mean} = mean_r(rx) and, because
    x_hat has mean zero over the batch, R{sigma} = mean_r(x_hat rx).  Then

        R{x_hat} = (rx - R{mean} - x_hat R{sigma}) / sigma
        R{out}   = gamma R{x_hat} + vgamma x_hat + vbeta

    where (vgamma, vbeta) is the direction's part for this layer's parameters.  ``rx``
    may be None for a layer whose input does not depend on the parameters (the first
    layer).  Returns (R{out}, R{x_hat}, R{sigma}); the backward R-pass needs the last two.

    >>> x = np.array([[1.0], [3.0]])
    >>> ro, _, _ = batchnorm_rforward(None, x, np.ones(1), np.full(1, 2.0), np.ones(1),
    ...                               0.0, np.ones(1), np.zeros(1))
    >>> ro.ravel()                                      # vgamma times x_hat
    array([-1.,  1.])
    """
    ck.need_2d("batchnorm_rforward", "x", x)
    ck.need_float("batchnorm_rforward", x=x, gamma=gamma, vgamma=vgamma, vbeta=vbeta)
    d = x.shape[1]
    for name, a in (("gamma", gamma), ("mean", mean), ("var", var), ("vgamma", vgamma),
                    ("vbeta", vbeta)):
        ck.need_shape("batchnorm_rforward", name, a, (d,), " (one entry per unit)")
    if rx is not None:
        ck.need_same_shape("batchnorm_rforward", "x", x, rx=rx)
    sigma, xhat = _bn_parts(x, mean, var, eps)
    if rx is None:
        rxhat = np.zeros_like(x)
        rsigma = np.zeros_like(sigma)
    else:
        rmean = rx.mean(axis=0)
        rsigma = (xhat * rx).mean(axis=0)
        rxhat = (rx - rmean - xhat * rsigma) / sigma
    rout = gamma * rxhat + vgamma * xhat + vbeta
    dt = x.dtype
    return (rout.astype(dt, copy=False), rxhat.astype(dt, copy=False),
            rsigma.astype(dt, copy=False))


def batchnorm_rbackward(g, rg, rxhat, rsigma, x, gamma, mean, var, eps, vgamma,
                        rdgamma=None, rdbeta=None):
    """R-derivatives of batch normalization's gradients: returns (R{dx}, R{dgamma}, R{dbeta}).

    The compact backward pass (``batchnorm_backward``) is

        dbeta = sum_r g,   dgamma = sum_r g x_hat,
        dx = c (m g - dbeta - x_hat dgamma)   with c = gamma / (m sigma).

    Differentiating each line along the direction, with R{g} = rg and R{x_hat}, R{sigma}
    from ``batchnorm_rforward`` and R{gamma} = vgamma:

        R{dbeta}  = sum_r rg
        R{dgamma} = sum_r (rg x_hat + g R{x_hat})
        R{c}      = vgamma / (m sigma) - gamma R{sigma} / (m sigma^2)
        R{dx}     = R{c} (m g - dbeta - x_hat dgamma)
                    + c (m rg - R{dbeta} - R{x_hat} dgamma - x_hat R{dgamma})

    ``rdgamma`` and ``rdbeta`` may be (d,) buffers to fill.

    >>> x = np.array([[1.0], [3.0]]); z = np.zeros((2, 1))
    >>> _, rdg, rdb = batchnorm_rbackward(np.ones((2, 1)), z, z, np.zeros(1), x, np.ones(1),
    ...                                   np.full(1, 2.0), np.ones(1), 0.0, np.zeros(1))
    >>> rdg, rdb                                       # nothing moves: all zero
    (array([0.]), array([0.]))
    """
    ck.need_2d("batchnorm_rbackward", "x", x)
    ck.need_same_shape("batchnorm_rbackward", "x", x, g=g, rg=rg, rxhat=rxhat)
    ck.need_float("batchnorm_rbackward", x=x, g=g, rg=rg, rxhat=rxhat, gamma=gamma,
                  vgamma=vgamma)
    d = x.shape[1]
    for name, a in (("rsigma", rsigma), ("gamma", gamma), ("mean", mean), ("var", var),
                    ("vgamma", vgamma), ("rdgamma", rdgamma), ("rdbeta", rdbeta)):
        if a is None and name not in ("rdgamma", "rdbeta"):
            raise ValueError(f"batchnorm_rbackward: {name} is required (an array of shape ({d},))")
        if a is not None:
            ck.need_shape("batchnorm_rbackward", name, a, (d,), " (one entry per unit)")
    m = x.shape[0]
    sigma, xhat = _bn_parts(x, mean, var, eps)
    dbeta = g.sum(axis=0)
    dgamma = (g * xhat).sum(axis=0)
    r_dbeta = rg.sum(axis=0)
    r_dgamma = (rg * xhat + g * rxhat).sum(axis=0)
    c = gamma / (m * sigma)
    r_c = vgamma / (m * sigma) - gamma * rsigma / (m * sigma * sigma)
    r_dx = (r_c * (m * g - dbeta - xhat * dgamma)
            + c * (m * rg - r_dbeta - rxhat * dgamma - xhat * r_dgamma))
    dt = x.dtype
    if rdgamma is not None:
        rdgamma[...] = r_dgamma
    else:
        rdgamma = r_dgamma.astype(dt, copy=False)
    if rdbeta is not None:
        rdbeta[...] = r_dbeta
    else:
        rdbeta = r_dbeta.astype(dt, copy=False)
    return r_dx.astype(dt, copy=False), rdgamma, rdbeta
