"""Batch normalization (Sec. 3.6): the layer, its two backward forms, and where it goes.

``batchnorm_forward``/``batchnorm_backward`` are the functional pair (CS231n style); the
``BatchNorm`` class wraps them, keeps running statistics for inference, and ``bn_mlp``
builds a multilayer network with a BN layer either before each activation
(Fig. 3.18(b), ``placement='pre'``) or after it (Fig. 3.18(a), ``placement='post'``).

Training mode normalizes with the statistics of the batch at hand (Eqs. 3.58-3.61), so
an example's output depends on which other examples share its batch.  Inference mode
uses fixed population statistics, estimated either by an exponential running average
kept during training (``momentum``) or by an exact pass over the training data
(``estimate_population_statistics``); there the layer is a fixed affine map per unit and
any batch size works, a single example included.

The measurements the Sec. 3.6 notebook makes live in ``ddlib.chapter.batchnorm_studies``.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..backend import backend_of, get_backend
from ..backend.arrays import to_host, tree_to_host
from ..errors import check_int, check_positive
from ..init import as_rng
from .activations import ACTIVATION_LAYERS
from .base import Layer, check_input
from .containers import Sequential, check_mlp_args
from .linear import Linear

BACKWARD_FORMS = ("compact", "recursive")
PLACEMENTS = ("pre", "post", "none")


# --- the functional pair ----------------------------------------------------------------


def batchnorm_forward(x, gamma, beta, eps=1e-5, be=None):
    """Training-mode BN, Eqs. 3.58-3.61; returns (out, cache).

    x (m, d) with m >= 2; gamma, beta (d,).  ``cache`` holds (x, gamma, mean, var, eps)
    with ``var`` the biased batch variance, so sigma^2 = var + eps (Eq. 3.59).

    >>> import numpy as np
    >>> out, _ = batchnorm_forward(np.array([[1.0, 2.0], [3.0, 6.0]]), np.ones(2), np.zeros(2))
    >>> np.round(out, 3)
    array([[-1., -1.],
           [ 1.,  1.]])
    """
    be = be or get_backend()
    out, mean, var = be.batchnorm_forward(x, gamma, beta, eps)
    return out, (x, gamma, mean, var, eps)


def batchnorm_backward(dout, cache, form="compact", be=None):
    """Gradients of BN: returns (dx, dgamma, dbeta).

    ``form='recursive'`` runs the chapter's recursion (Eqs. 3.62-3.65: through v_hat, mu
    and sigma^2, each a function of the whole batch); ``form='compact'`` the closed form
    dx = (gamma / (m sigma)) (m g - dbeta - v_hat dgamma).  The two are equal (tests).
    """
    be = be or get_backend()
    if form not in BACKWARD_FORMS:
        raise ValueError(f"form={form!r}: expected one of {BACKWARD_FORMS}")
    x, gamma, mean, var, eps = cache
    kernel = be.batchnorm_backward if form == "compact" else be.batchnorm_backward_recursive
    return kernel(dout, x, gamma, mean, var, eps)


# --- the layer ----------------------------------------------------------------------------


def _check_momentum(momentum):
    if momentum is None:
        return None
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise TypeError(f"momentum must be a number in (0, 1] or None, got "
                        f"{type(momentum).__name__} {momentum!r}")
    if not (0.0 < momentum <= 1.0):
        raise ValueError(f"momentum must lie in (0, 1] (the weight of the newest batch) or be "
                         f"None for an equal-weight average, got {momentum!r}")
    return float(momentum)


class BatchNorm(Layer):
    """Batch normalization of ``d`` units with learned scale gamma and shift beta (Sec. 3.6).

    Training (``forward(x, train=True)``) normalizes each unit by the mean and variance of
    the batch (Eqs. 3.58-3.61) and needs at least two examples.  Inference
    (``train=False``) uses ``running_mean``/``running_var``.

    ``momentum`` is the weight of the newest batch in the exponential running averages:
    running <- (1 - momentum) running + momentum batch_statistic (PyTorch's convention,
    default 0.1; Keras's ``momentum=0.99`` is 1 - 0.01 here).  The batch variance enters
    with the factor m / (m - 1), which makes it an unbiased estimate of the population
    variance.  ``momentum=None`` weights every batch seen equally (a cumulative average).
    ``backward`` selects the backward form ('compact' or 'recursive'); both give the same
    gradient.  gamma starts at 1 and beta at 0, so a new layer only standardizes.

    >>> import numpy as np
    >>> bn = BatchNorm(3)
    >>> bn(np.arange(12.0).reshape(4, 3)).std(axis=0).round(3)
    array([1., 1., 1.])
    >>> bn(np.ones((1, 3)), train=False).shape      # one example, population statistics
    (1, 3)
    """

    _no_cache_hint = " (it needs a forward pass in training mode first; inference mode keeps no cache)"

    def __init__(self, d, eps=1e-5, momentum=0.1, backward="compact", dtype=np.float64,
                 name=None):
        super().__init__(name)
        self.d = check_int("d", d)
        self.eps = check_positive("eps", eps)
        self.momentum = _check_momentum(momentum)
        if backward not in BACKWARD_FORMS:
            raise ValueError(f"backward={backward!r}: expected one of {BACKWARD_FORMS}")
        self.backward_form = backward
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        self.params["gamma"] = np.ones(d, dtype=dtype)
        self.params["beta"] = np.zeros(d, dtype=dtype)
        self.grads["gamma"] = np.zeros(d, dtype=dtype)
        self.grads["beta"] = np.zeros(d, dtype=dtype)
        # statistics, not parameters: the optimizer never sees them
        self.buffers = {"running_mean": np.zeros(d, dtype=dtype),
                        "running_var": np.ones(d, dtype=dtype)}
        self.batches_seen = 0
        self._cache = None
        self._collect = None  # a _Moments while estimate_population_statistics runs

    @property
    def running_mean(self):
        return self.buffers["running_mean"]

    @property
    def running_var(self):
        return self.buffers["running_var"]

    def forward(self, x, train=True):
        check_input(self, x, self.d)
        be = get_backend()
        if self._collect is not None:
            self._collect.add(be, x)
        if not train:
            self._cache = None
            return be.batchnorm_infer(x, self.params["gamma"], self.params["beta"],
                                      self.running_mean, self.running_var, self.eps)
        m = x.shape[0]
        if m < 2:
            raise ValueError(
                f"{self.name}: training mode needs a batch of at least 2 examples to "
                f"compute a variance (Eq. 3.59), got x of shape {tuple(x.shape)}; use "
                "forward(x, train=False) to normalize single examples with the population "
                "statistics")
        out, self._cache = batchnorm_forward(x, self.params["gamma"], self.params["beta"],
                                             self.eps, be)
        _, _, mean, var, _ = self._cache
        momentum = self.momentum if self.momentum is not None else 1.0 / (self.batches_seen + 1)
        be.batchnorm_running_update(self.running_mean, self.running_var, mean, var,
                                    momentum, m)
        self.batches_seen += 1
        return out

    def _backward(self, g, need_dx=True):
        x = self._cache[0]
        if tuple(g.shape) != tuple(x.shape):
            raise ValueError(f"{self.name}: gradient has shape {tuple(g.shape)} but the "
                             f"layer's output had shape {tuple(x.shape)}")
        be = get_backend()
        _, gamma, mean, var, eps = self._cache
        kernel = (be.batchnorm_backward if self.backward_form == "compact"
                  else be.batchnorm_backward_recursive)
        dx, _, _ = kernel(g, x, gamma, mean, var, eps, dgamma=self.grads["gamma"],
                          dbeta=self.grads["beta"])
        return dx if need_dx else None

    # R-operator passes (see ``Linear.r_forward``), with the batch statistics of the
    # forward pass in training mode

    def r_forward(self, cache, rx, v):
        """R{out} with the batch statistics moving with the input; see
        ``numpy_ref.curvature.batchnorm_rforward``."""
        x, gamma, mean, var, eps = cache
        rout, rxhat, rsigma = get_backend().batchnorm_rforward(rx, x, gamma, mean, var, eps,
                                                               v["gamma"], v["beta"])
        return rout, (rxhat, rsigma)

    def r_backward(self, cache, rcache, g, rg, v, hv, need_dx=True, gauss_newton=False):
        """R{dx}, with R{dgamma}, R{dbeta} written into ``hv``; for Gauss-Newton, the
        ordinary backward pass of R{g}."""
        be = get_backend()
        x, gamma, mean, var, eps = cache
        if gauss_newton:
            rdx, _, _ = be.batchnorm_backward(rg, x, gamma, mean, var, eps,
                                              dgamma=hv["gamma"], dbeta=hv["beta"])
        else:
            rxhat, rsigma = rcache
            rdx, _, _ = be.batchnorm_rbackward(g, rg, rxhat, rsigma, x, gamma, mean, var, eps,
                                               v["gamma"], rdgamma=hv["gamma"],
                                               rdbeta=hv["beta"])
        return rdx if need_dx else None

    def to(self, backend):
        super().to(backend)
        be = get_backend(backend)
        for k, v in self.buffers.items():
            self.buffers[k] = be.asarray(to_host(v))
        return self

    def reset_running_stats(self):
        """Forget the running statistics (mean 0, variance 1)."""
        be = get_backend()
        self.buffers["running_mean"] = be.asarray(np.zeros(self.d, self.params["gamma"].dtype))
        self.buffers["running_var"] = be.asarray(np.ones(self.d, self.params["gamma"].dtype))
        self.batches_seen = 0

    def set_running_stats(self, mean, var):
        """Install population statistics (host arrays of shape (d,), var > 0)."""
        mean = np.asarray(mean, dtype=np.float64)
        var = np.asarray(var, dtype=np.float64)
        for name, v in (("mean", mean), ("var", var)):
            if v.shape != (self.d,):
                raise ValueError(f"{self.name}: {name} must have shape ({self.d},), got {v.shape}")
        if not np.all(np.isfinite(mean)) or not np.all(np.isfinite(var)) or np.any(var < 0):
            raise ValueError(f"{self.name}: statistics must be finite with var >= 0")
        be = backend_of(self.params["gamma"])
        dt = self.params["gamma"].dtype
        self.buffers["running_mean"] = get_backend(be).asarray(mean.astype(dt))
        self.buffers["running_var"] = get_backend(be).asarray(var.astype(dt))

    def state_dict(self):
        """Host copies of gamma, beta and the running statistics."""
        out = {}
        for k, v in {**self.params, **self.buffers}.items():
            out[k] = tree_to_host(v)
        return out

    def counters(self):
        """The layer's integer counters (``batches_seen``, which weights the equal-weight
        average of ``momentum=None``); ``ddlib.checkpoint`` saves them beside
        ``state_dict``, which holds only arrays."""
        return {"batches_seen": int(self.batches_seen)}

    def load_counters(self, counters):
        """Restore ``counters()``; the keys and a non-negative integer are checked first."""
        if not isinstance(counters, dict) or set(counters) != {"batches_seen"}:
            got = sorted(counters) if isinstance(counters, dict) else type(counters).__name__
            raise ValueError(f"{self.name}: counters must have the key 'batches_seen', "
                             f"got {got}")
        n = counters["batches_seen"]
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{self.name}: batches_seen must be a non-negative integer, "
                             f"got {n!r}")
        self.batches_seen = int(n)

    def __repr__(self):
        return (f"{self.name}(d={self.d}, eps={self.eps:g}, momentum={self.momentum}, "
                f"backward={self.backward_form!r})")


# --- population statistics by a pass over the data ---------------------------------------


class _Moments:
    """Exact running mean and sum of squared deviations over batches (Chan et al.)."""

    def __init__(self, d):
        self.n = 0
        self.mean = np.zeros(d)
        self.m2 = np.zeros(d)

    def add(self, be, x):
        nb = x.shape[0]
        mean_b, var_b = (be.to_numpy(v).astype(np.float64) for v in be.batchnorm_stats(x))
        n = self.n + nb
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + var_b * nb + delta ** 2 * (self.n * nb / n)
        self.n = n


def estimate_population_statistics(model, X, batch_size=256):
    """Set every BatchNorm layer's statistics to those of the data ``X`` (Sec. 3.6).

    Layers are treated in network order: for each one the data flows through the network
    in inference mode, so the layers before it already use their population statistics,
    and the exact mean and unbiased variance of its input over all of ``X`` are
    accumulated batch by batch.  Costs one pass over ``X`` per BN layer.  Returns the
    list of BN layers it updated.
    """
    batch_size = check_int("batch_size", batch_size)
    if len(X) < 2:
        raise ValueError(f"X must hold at least 2 examples to estimate a variance, got {len(X)}")
    be = get_backend()
    layers = [layer for layer in model.modules() if isinstance(layer, BatchNorm)]
    for bn in layers:
        bn._collect = _Moments(bn.d)
        try:
            for i in range(0, len(X), batch_size):
                model.forward(be.asarray(X[i:i + batch_size]), train=False)
            acc = bn._collect
        finally:
            bn._collect = None
        bn.set_running_stats(acc.mean, acc.m2 / (acc.n - 1))
    return layers


# --- networks with BN before or after the activation (Fig. 3.18) --------------------------


def bn_mlp(sizes, activation="sigmoid", placement="pre", init=None, rng=None,
           dtype=np.float64, eps=1e-5, momentum=0.1, backward="compact"):
    """A fully connected network with a BatchNorm layer in every hidden layer.

    ``placement='pre'`` normalizes the linear output before the activation
    (Fig. 3.18(b): Linear -> BN -> activation; the linear layer's bias is dropped because
    beta takes its place); ``'post'`` normalizes after it (Fig. 3.18(a): Linear ->
    activation -> BN); ``'none'`` builds the same network without BN.  The output layer
    is a plain Linear layer producing scores.

    >>> net = bn_mlp([4, 8, 3], placement="pre", rng=0)
    >>> [type(layer).__name__ for layer in net.layers]
    ['Linear', 'BatchNorm', 'Sigmoid', 'Linear']
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"placement={placement!r}: expected one of {PLACEMENTS} "
                         "('pre' = before the activation, Fig. 3.18(b); 'post' = after it, "
                         "Fig. 3.18(a))")
    init = check_mlp_args(sizes, activation, init)
    sizes = [check_int(f"sizes[{i}]", s) for i, s in enumerate(sizes)]
    rng = as_rng(rng)
    layers = []
    last = len(sizes) - 2
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i == last:
            layers.append(Linear(a, b, init=init, rng=rng, dtype=dtype))
            break
        act = ACTIVATION_LAYERS[activation]()
        norm = BatchNorm(b, eps=eps, momentum=momentum, backward=backward, dtype=dtype)
        if placement == "pre":
            layers += [Linear(a, b, init=init, bias=False, rng=rng, dtype=dtype), norm, act]
        elif placement == "post":
            layers += [Linear(a, b, init=init, rng=rng, dtype=dtype), act, norm]
        else:
            layers += [Linear(a, b, init=init, rng=rng, dtype=dtype), act]
    return Sequential(layers)
