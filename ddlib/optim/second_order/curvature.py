"""Curvature products for networks: exact H v (Pearlmutter's R-operator), the
Gauss-Newton product G v, and Eq. 3.51's finite difference, on every backend.

Hessian-free optimization (Sec. 3.5.6.1) needs the Hessian only through products with
vectors, and a network of a million weights has a Hessian of 10^12 entries that nobody
can store.  Three ways to get the product:

* **Finite differences (Eq. 3.51)**: two gradients at w +- delta v.  Cheap to write, but
  its accuracy is limited by the choice of delta (``fd_hvp``).
* **The R-operator** (Pearlmutter 1994): R{.} = d/dr (.)(w + r v) at r = 0 pushed through
  the forward pass (giving R{out} = J v) and then through the backward pass (giving
  R{grad} = H v).  Exact to rounding, for about the cost of one more forward and backward
  pass (``hvp``).  Each layer supplies ``r_forward``/``r_backward``; the loss supplies
  its Hessian with respect to the scores (``Loss.hvp_scores``).
* **Gauss-Newton** (Schraudolph 2002): G = J^T H_L J, where J is the Jacobian of the
  scores with respect to the weights and H_L the loss's Hessian with respect to the scores.
  For softmax cross-entropy or squared error H_L is positive semidefinite, so G is too,
  which is what conjugate gradients needs; the product is one R-forward pass and one
  ordinary backward pass (``gvp``).  Martens (2010) uses it for Hessian-free training.

``Curvature(model, loss, X, y)`` runs the forward and backward pass once and then gives
any number of products at that point (what conjugate gradients asks for), plus the loss
and the gradient.  ``hvp``/``gvp`` are the one-shot versions.  None of them changes the
model: parameters, gradient buffers and batch-norm running statistics are as they were.
Batch normalization is differentiated in training mode, with the batch statistics moving
with the weights (the loss that training minimizes).

A direction ``v`` is a dict keyed like ``model.params`` ('0.W', '0.b', ...) or a flat
vector (``Flattener`` order); products come back in the same form.

>>> import numpy as np
>>> from ddlib.layers import mlp
>>> from ddlib.losses import SoftmaxCrossEntropy
>>> net = mlp([3, 4, 2], activation="tanh", rng=0)
>>> X, y = np.random.default_rng(0).normal(size=(5, 3)), np.array([0, 1, 1, 0, 1])
>>> c = Curvature(net, SoftmaxCrossEntropy(), X, y)
>>> u, w = np.random.default_rng(1).normal(size=(2, c.size))
>>> bool(np.isclose(u @ c.hvp(w), w @ c.hvp(u)))       # H is symmetric
True
>>> bool(w @ c.gvp(w) >= 0)                            # G is positive semidefinite
True
"""

from __future__ import annotations

import contextlib

import numpy as np

from ...backend import get_backend
from ...backend.arrays import assign, copy, is_device, to_host
from ...layers.activations import Activation
from ...layers.base import Layer
from ...layers.containers import Sequential
from ...layers.linear import Linear, linear_backward
from .flat import Flattener
from .hessian_products import hessian_vector_product


def _leaves(model):
    """The leaf layers a batch flows through, checked to have R-operator passes."""
    if not isinstance(model, Layer):
        raise TypeError(f"model must be a ddlib Layer or Sequential, got {type(model).__name__}")
    leaves = []
    for m in model.modules():
        if m.children():
            if not isinstance(m, Sequential):
                raise NotImplementedError(
                    f"{m.name}: curvature products follow a batch through Sequential "
                    "containers only")
            continue
        if not (hasattr(m, "r_forward") and hasattr(m, "r_backward")):
            raise NotImplementedError(
                f"{m.name} ({type(m).__name__}) has no R-operator passes; curvature products "
                "support Linear, the activation layers and BatchNorm (use fd_hvp for others)")
        leaves.append(m)
    return leaves


def _batch_like(X, params, be):
    """The batch in the parameters' float dtype, on the backend's side."""
    if is_device(X):
        return X
    X = np.asarray(X)
    dtype = np.dtype(next(iter(params.values())).dtype)
    if X.dtype != dtype and X.dtype.kind in "fiu":
        X = X.astype(dtype)
    return be.asarray(np.ascontiguousarray(X)) if be.name == "cuda" else X


@contextlib.contextmanager
def _untouched(model, leaves):
    """Run a forward/backward pass without changing the model: gradient buffers are
    swapped for scratch ones and batch-norm statistics restored afterwards."""
    be = get_backend()
    saved_grads = [dict(leaf.grads) for leaf in leaves]
    for leaf in leaves:
        for k, g in leaf.grads.items():
            leaf.grads[k] = be.empty(tuple(g.shape), g.dtype)
    saved_buffers = [(leaf, {k: copy(b) for k, b in leaf.buffers.items()},
                      getattr(leaf, "batches_seen", None))
                     for leaf in leaves if getattr(leaf, "buffers", None)]
    try:
        yield
    finally:
        for leaf, grads in zip(leaves, saved_grads):
            leaf.grads.update(grads)
        for leaf, bufs, seen in saved_buffers:
            for k, b in bufs.items():
                assign(leaf.buffers[k], b)
            if seen is not None:
                leaf.batches_seen = seen


class Curvature:
    """Loss, gradient and curvature products of ``loss(model(X), y)`` at the current weights.

    model: a ``Sequential`` (nested ones too) of Linear, activation and BatchNorm layers
    loss:  a ddlib loss with ``hvp_scores`` (``SoftmaxCrossEntropy``, ``MSE``)
    X, y:  the batch; a host X is cast to the parameters' dtype (and moved, for cuda)
    exact: also run the backward pass that ``hvp`` needs (``gvp`` alone does not)

    Attributes: ``loss`` (float), ``grad`` (dict), ``size`` (number of weights),
    ``flattener``.  The products stay valid until the weights change.
    """

    def __init__(self, model, loss, X, y, exact=True):
        if not hasattr(loss, "hvp_scores"):
            raise TypeError(f"loss must be a ddlib loss with hvp_scores, got {type(loss).__name__}")
        self.model, self.lossfn = model, loss
        self.leaves = _leaves(model)
        self.flattener = Flattener(model.params)
        self.size = self.flattener.size
        be = get_backend()
        self._be = be
        X = _batch_like(X, model.params, be)
        # where each leaf's parameters sit in the model's qualified names
        owner = {}
        for qname, layer, key in model.named_parameters():
            owner.setdefault(id(layer), []).append((key, qname))
        self._names = [owner.get(id(leaf), []) for leaf in self.leaves]
        with _untouched(model, self.leaves):
            out = model.forward(X, train=True)
            self.loss = float(loss.forward(out, y))
            self._caches = [leaf._cache for leaf in self.leaves]
            self._gs = None
            g = loss.backward()
            if exact:
                self._gs = self._backward(g)
                # the scratch buffers the pass wrote into are ours to keep
                self.grad = {q: leaf.grads[k] for leaf, names in zip(self.leaves, self._names)
                             for k, q in names}
                self.grad = {n: self.grad[n] for n in model.params}
            else:
                self.grad = None
            self._loss_cache = loss._cache  # hvp_scores reads the loss's forward cache

    def _backward(self, g):
        """The ordinary backward pass, keeping the gradient at every leaf's output (the
        R-backward pass needs it).  A Linear followed by an activation shares one kernel
        for the activation's rule and the bias gradient, as in ``Sequential.backward``."""
        be, leaves = self._be, self.leaves
        gs = [None] * len(leaves)
        i = len(leaves) - 1
        while i >= 0:
            leaf = leaves[i]
            gs[i] = g
            prev = leaves[i - 1] if i > 0 else None
            if (isinstance(leaf, Activation) and type(prev) is Linear and prev.use_bias):
                z, y = self._caches[i]
                dz, _ = be.act_backward_colsum(leaf.kind, z, y, g, leaf.alpha,
                                               db=prev.grads["b"])
                gs[i - 1] = dz
                g, _, _ = linear_backward(dz, self._caches[i - 1], dW=prev.grads["W"],
                                          need_dx=i > 1, with_bias=False)
                i -= 2
            else:
                g = leaf.backward(g, need_dx=i > 0)
                i -= 1
        return gs

    # -- products ---------------------------------------------------------------------

    def hvp(self, v):
        """H v, exactly (R-operator).  ``v``: dict like ``model.params`` or a flat vector."""
        if self._gs is None:
            raise RuntimeError("this Curvature was built with exact=False; hvp needs exact=True")
        return self._product(v, gauss_newton=False)

    def gvp(self, v):
        """G v = J^T H_L J v, the Gauss-Newton product (positive semidefinite)."""
        return self._product(v, gauss_newton=True)

    def _direction(self, v):
        params = self.model.params
        if isinstance(v, dict):
            self.flattener.check_tree(v, "v")
            be = self._be
            tree = {}
            for n, p in params.items():
                a = v[n]
                if is_device(a) != is_device(p) or np.dtype(a.dtype) != np.dtype(p.dtype):
                    a = be.asarray(np.ascontiguousarray(to_host(a), dtype=p.dtype))
                tree[n] = a
            return tree, False
        vec = self.flattener.check_vector(v, "v")
        return self.flattener.unflatten(vec), True

    def _product(self, v, gauss_newton):
        tree, flat = self._direction(v)
        be = self._be
        for n, a in tree.items():
            # a sum is a quick test; only an overflowing one needs the entrywise look
            if not is_device(a) and not np.isfinite(a.sum()) and not np.isfinite(a).all():
                raise ValueError(f"v must be finite (v[{n!r}] holds NaN or inf)")
        leaves = self.leaves
        vs = [{k: tree[q] for k, q in names} for names in self._names]
        # R-forward: R{out} = J v
        rx, rcaches = None, []
        for leaf, cache, vl in zip(leaves, self._caches, vs):
            rx, rc = leaf.r_forward(cache, rx, vl)
            rcaches.append(rc)
        saved = self.lossfn._cache
        self.lossfn._cache = self._loss_cache
        try:
            if rx is None:
                raise ValueError("the model's output does not depend on its parameters")
            rg = self.lossfn.hvp_scores(rx)
        finally:
            self.lossfn._cache = saved
        # R-backward (exact) or the plain backward pass of R{g} (Gauss-Newton)
        hv = {}
        for i in range(len(leaves) - 1, -1, -1):
            leaf = leaves[i]
            out = {k: be.empty(tuple(leaf.params[k].shape), leaf.params[k].dtype)
                   for k, _ in self._names[i]}
            g = None if gauss_newton else self._gs[i]
            rg = leaf.r_backward(self._caches[i], rcaches[i], g, rg, vs[i], out,
                                 need_dx=i > 0, gauss_newton=gauss_newton)
            for k, q in self._names[i]:
                hv[q] = out[k]
        hv = {n: hv[n] for n in self.model.params}
        return self.flattener.flatten(hv) if flat else hv


def hvp(model, loss, X, y, v):
    """H v of the mean loss on the batch (X, y), exact, by Pearlmutter's R-operator.

    One forward, one backward, one R-forward and one R-backward pass; the model is left as
    it was.  ``v`` is a dict keyed like ``model.params`` or a flat vector, and the result
    has the same form.  For many products at one point build a ``Curvature`` instead.
    """
    return Curvature(model, loss, X, y).hvp(v)


def gvp(model, loss, X, y, v):
    """G v = J^T H_L J v, the Gauss-Newton product (one forward, one R-forward, one
    backward pass); positive semidefinite for softmax cross-entropy and squared error."""
    return Curvature(model, loss, X, y, exact=False).gvp(v)


def fd_hvp(model, loss, X, y, v, method="central", eps=None):
    """H v by finite differences of the gradient, Eq. 3.51 (``method`` "forward" or
    "central", step ``eps`` or ``default_delta``): the approximation the R-operator makes
    unnecessary, kept to compare against.  The weights are restored afterwards."""
    leaves = _leaves(model)
    flattener = Flattener(model.params)
    params = model.params
    w0 = flattener.flatten(params)
    flat = not isinstance(v, dict)
    vec = flattener.check_vector(v, "v") if flat else flattener.flatten(v)
    be = get_backend()
    X = _batch_like(X, params, be)

    def grad(w):
        flattener.assign(params, w)
        with _untouched(model, leaves):
            out = model.forward(X, train=True)
            loss.forward(out, y)
            model.backward(loss.backward(), need_dx=False)
            return flattener.flatten(model.grads)

    dtype = flattener.dtypes[0]
    try:
        hv = hessian_vector_product(grad, w0.astype(dtype), vec.astype(dtype), method=method,
                                    eps=eps)
    finally:
        flattener.assign(params, w0)
    hv = np.asarray(hv, dtype=np.float64)
    return hv if flat else flattener.unflatten(hv)
