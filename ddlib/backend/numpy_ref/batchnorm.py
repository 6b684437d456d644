"""Batch normalization kernels as equations (Sec. 3.6, Eqs. 3.58-3.65).

Shapes: a batch ``x`` is (m, d), one row per example and one column per unit i; the
learned scale ``gamma`` and shift ``beta`` and every statistic (mean, var) are (d,).
``var`` is always the *biased* batch variance (divided by m) without epsilon; the
kernels add ``eps`` themselves, so sigma_i^2 = var_i + eps as in Eq. 3.59.

Two backward kernels compute the same gradient two ways:

* ``batchnorm_backward_recursive`` follows the chapter step by step: dL/dv_hat
  (Eq. 3.64), then dL/dsigma^2 and dL/dmu (mu and sigma^2 are functions of the batch),
  then Eq. 3.65 for each example.
* ``batchnorm_backward`` is the compact closed form obtained by substituting those
  per-unit terms into Eq. 3.65 and simplifying (the derivation is in its docstring).
"""

import numpy as np

__all__ = [
    "batchnorm_stats",
    "batchnorm_forward",
    "batchnorm_infer",
    "batchnorm_backward",
    "batchnorm_backward_recursive",
    "batchnorm_running_update",
]


def batchnorm_stats(x):
    """Per-unit batch mean (Eq. 3.58) and biased variance (Eq. 3.59 without eps).

    x (m, d) -> (mean (d,), var (d,)).

    >>> batchnorm_stats(np.array([[1.0, 0.0], [3.0, 0.0]]))
    (array([2., 0.]), array([1., 0.]))
    """
    _check(x)
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    return mean, var


def batchnorm_forward(x, gamma, beta, eps, out=None):
    """Training-mode forward pass, Eqs. 3.58-3.61; returns (out, mean, var).

    mu_i = mean_r v_i^(r)                       (3.58)
    sigma_i^2 = mean_r (v_i^(r) - mu_i)^2 + eps  (3.59)
    v_hat = (v - mu) / sigma                     (3.60)
    a = gamma * v_hat + beta                     (3.61)

    x (m, d), gamma and beta (d,) -> out (m, d), mean (d,), var (d,) (biased, no eps).

    >>> out, mu, var = batchnorm_forward(np.array([[1.0], [3.0]]), np.ones(1), np.zeros(1), 0.0)
    >>> out.ravel()
    array([-1.,  1.])
    """
    _check(x, gamma=gamma, beta=beta)
    mean, var = batchnorm_stats(x)
    sigma = np.sqrt(var + eps)
    v_hat = (x - mean) / sigma
    a = gamma * v_hat + beta
    if out is None:
        return a, mean, var
    out[...] = a
    return out, mean, var


def batchnorm_infer(x, gamma, beta, mean, var, eps, out=None):
    """Inference-mode forward pass: Eqs. 3.60-3.61 with fixed population statistics.

    With mu and sigma frozen the layer is the affine map a = gamma (x - mu) / sigma + beta,
    so it works on any batch size, a single example included.
    x (m, d); gamma, beta, mean, var (d,) -> (m, d).
    """
    _check(x, gamma=gamma, beta=beta, mean=mean, var=var)
    a = gamma * (x - mean) / np.sqrt(var + eps) + beta
    if out is None:
        return a
    out[...] = a
    return out


def batchnorm_backward_recursive(g, x, gamma, mean, var, eps, dx=None, dgamma=None,
                                 dbeta=None):
    """Backward pass by the chapter's recursion (Eqs. 3.62-3.65); returns (dx, dgamma, dbeta).

    g = dL/da (m, d); x the forward input (m, d); gamma, mean, var (d,).
    dL/dbeta_i = sum_r dL/da_i^(r);  dL/dgamma_i = sum_r dL/da_i^(r) v_hat_i^(r).
    dL/dv is assembled from three paths (Eq. 3.62): through v_hat, through mu and
    through sigma^2, each of which depends on every example of the batch.
    """
    _check(x, g, gamma=gamma, mean=mean, var=var)
    m = x.shape[0]
    sigma2 = var + eps  # Eq. 3.59 includes eps
    sigma = np.sqrt(sigma2)
    centered = x - mean
    v_hat = centered / sigma
    d_beta = g.sum(axis=0)
    d_gamma = (g * v_hat).sum(axis=0)
    d_vhat = g * gamma  # Eq. 3.64
    # sigma^2 = mean_r (v^(r) - mu)^2 + eps, and v_hat = (v - mu) (sigma^2)^(-1/2)
    d_sigma2 = (d_vhat * centered).sum(axis=0) * (-0.5) * sigma2 ** -1.5
    # mu reaches the loss directly through every v_hat and through sigma^2
    d_mu = (d_vhat * (-1.0 / sigma)).sum(axis=0) + d_sigma2 * (-2.0 / m) * centered.sum(axis=0)
    d_v = d_vhat / sigma + d_mu / m + d_sigma2 * 2.0 * centered / m  # Eq. 3.65
    return _store(dx, d_v), _store(dgamma, d_gamma), _store(dbeta, d_beta)


def batchnorm_backward(g, x, gamma, mean, var, eps, dx=None, dgamma=None, dbeta=None):
    """Backward pass in closed form; returns (dx, dgamma, dbeta), equal to the recursion.

    Substituting dL/dsigma^2 = -(1/2) sigma^-3 gamma sum_q g^(q) (v^(q) - mu)
    = -gamma dgamma / (2 sigma^2) and dL/dmu = -(gamma/sigma) dbeta (the second term
    of dL/dmu vanishes because the centred values sum to zero) into Eq. 3.65 gives

        dL/dv^(r) = (gamma / (m sigma)) (m g^(r) - dbeta - v_hat^(r) dgamma).

    Shapes as in ``batchnorm_backward_recursive``.
    """
    _check(x, g, gamma=gamma, mean=mean, var=var)
    m = x.shape[0]
    inv_sigma = 1.0 / np.sqrt(var + eps)
    v_hat = (x - mean) * inv_sigma
    d_beta = g.sum(axis=0)
    d_gamma = (g * v_hat).sum(axis=0)
    d_v = (gamma * inv_sigma / m) * (m * g - d_beta - v_hat * d_gamma)
    return _store(dx, d_v), _store(dgamma, d_gamma), _store(dbeta, d_beta)


def batchnorm_running_update(run_mean, run_var, mean, var, momentum, m):
    """Exponential running averages of the batch statistics, updated in place.

    run_mean <- (1 - momentum) run_mean + momentum mean
    run_var  <- (1 - momentum) run_var  + momentum var m / (m - 1)

    The batch variance is rescaled by m / (m - 1) so that the running value estimates
    the population variance without bias.  ``momentum`` is the weight of the newest batch
    (PyTorch's convention; Keras calls 1 - momentum its momentum).  Returns None.
    """
    keep = 1.0 - momentum
    run_mean[...] = keep * run_mean + momentum * mean
    run_var[...] = keep * run_var + momentum * var * (m / (m - 1.0))


def _check(x, g=None, **vectors):
    """Clear errors for a batch that is not 2-D or per-unit vectors of the wrong length."""
    if np.ndim(x) != 2:
        raise ValueError(f"x must be a 2-D batch (m, d), got shape {np.shape(x)}")
    if g is not None and np.shape(g) != np.shape(x):
        raise ValueError(f"g has shape {np.shape(g)} but the forward input x has shape "
                         f"{np.shape(x)}")
    d = np.shape(x)[1]
    for name, v in vectors.items():
        if np.shape(v) != (d,):
            raise ValueError(f"{name} must have shape ({d},) to match the batch's {d} units, "
                             f"got shape {np.shape(v)}")


def _store(buf, value):
    if buf is None:
        return value
    buf[...] = value
    return buf
