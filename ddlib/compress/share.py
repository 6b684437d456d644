"""Weight sharing (Sec. 3.7.3; Deep Compression's second stage): 1-D k-means per layer.

The surviving weights of a layer are clustered into K = 2^bits values; each weight then
stores a bits-wide index into the layer's codebook.  Initialization (Han, Mao and Dally
2016 compare three): ``linear`` spaces the centroids evenly over [min, max] (their best:
it keeps the rare large weights, which matter most), ``forgy`` picks K weights at random,
``density`` places them at evenly spaced quantiles.

The clustering is our own 1-D Lloyd iteration, not scikit-learn's ``KMeans``: in one
dimension the nearest centroid is found exactly by sorting the centroids and searching
the midpoints between them (O(n log K), no distance matrix), the result depends on
nothing but the data and the initialization (no threads, no n_init restarts), and it
keeps the library free of a scikit-learn dependency; the tests check that scikit-learn's
``KMeans`` started from the same centroids reaches the same within-cluster sum.

Centroid fine-tuning: every weight that shares centroid k moves with it, so the
gradient of k is the sum of the gradients of its weights (the shared-weight rule of
Sec. 3.2.9); ``finetune`` trains the centroids (and the biases) with any ``ddlib.optim``
rule through ``ddlib.train.fit``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import check_int
from ..init import as_rng
from ..layers.base import Layer
from .prune import get_mask, weight_layers

INITS = ("linear", "forgy", "density")


def kmeans_1d(values, k, init="linear", max_iter=100, seed=0):
    """Cluster the 1-D ``values`` into ``k`` centroids; returns (centroids, labels).

    Centroids come back sorted; a cluster that empties keeps its last centroid.

    >>> c, lab = kmeans_1d(np.array([0.0, 0.1, 1.0, 1.1]), 2)
    >>> c.round(2).tolist(), lab.tolist()
    ([0.05, 1.05], [0, 0, 1, 1])
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    k = check_int("k", k)
    if v.size == 0:
        raise ValueError("kmeans_1d: no values to cluster")
    if init == "linear":
        c = np.linspace(v.min(), v.max(), k)
    elif init == "forgy":
        c = as_rng(seed).choice(v, size=min(k, v.size), replace=False)
    elif init == "density":
        c = np.quantile(v, np.linspace(0.0, 1.0, k))
    else:
        raise ValueError(f"init={init!r}: expected one of {INITS}")
    c = np.sort(np.asarray(c, dtype=np.float64))
    labels = None
    for _ in range(max_iter):
        new = np.searchsorted((c[1:] + c[:-1]) / 2.0, v)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        sums = np.bincount(labels, weights=v, minlength=c.size)
        counts = np.bincount(labels, minlength=c.size)
        c = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        order = np.argsort(c, kind="stable")
        if np.any(order != np.arange(c.size)):   # keep them sorted for the midpoints
            c = c[order]
            labels = None
    labels = np.searchsorted((c[1:] + c[:-1]) / 2.0, v)
    return c, labels


class Codebook(NamedTuple):
    """A layer's shared weights: W[i, j] = centroids[index[i, j]], 0 where index is -1."""

    centroids: np.ndarray   # (K,), the weight's dtype
    index: np.ndarray       # int32, shaped like W; -1 marks a pruned entry

    @property
    def bits(self):
        return max(1, int(np.ceil(np.log2(self.centroids.size))))

    def weights(self, dtype=None):
        c = self.centroids if dtype is None else self.centroids.astype(dtype)
        return np.where(self.index >= 0, c[np.maximum(self.index, 0)], 0).astype(c.dtype)


def share_weights(model, bits=5, init="linear", seed=0):
    """Quantize every weight matrix of ``model`` to 2^bits shared values (in place).

    bits: an int for every layer, or a list with one per weight matrix.  The kept entries
    (the mask when the layer is pruned, else the non-zero ones) are clustered; pruned
    entries stay 0.  Each layer gets ``layer.codebook`` (a ``Codebook``); returns them.
    """
    pairs = weight_layers(model)
    per = list(bits) if isinstance(bits, (list, tuple)) else [bits] * len(pairs)
    if len(per) != len(pairs):
        raise ValueError(f"bits lists {len(per)} values for {len(pairs)} weight matrices")
    books = []
    for (layer, name), b in zip(pairs, per):
        b = check_int("bits", b)
        if b > 16:
            raise ValueError(f"bits must lie in [1, 16], got {b}")
        W = layer.params[name]
        mask = get_mask(layer, name)
        kept = (W != 0) if mask is None else mask
        c, lab = kmeans_1d(W[kept], 2 ** b, init=init, seed=seed)
        index = np.full(W.shape, -1, np.int32)
        index[kept] = lab
        book = Codebook(c.astype(W.dtype), index)
        W[...] = book.weights()
        layer.codebook = book
        books.append(book)
    return books


class _Centroids(Layer):
    """The trainable part of a shared-weight model: codebooks and biases, for an Optimizer."""

    def __init__(self, model):
        super().__init__("centroids")
        self.shared = []
        for i, (layer, name) in enumerate(weight_layers(model)):
            book = getattr(layer, "codebook", None)
            if book is None:
                raise ValueError(f"{layer.name} has no codebook: call share_weights first")
            self.params[f"{i}.c"] = book.centroids
            self.grads[f"{i}.c"] = np.zeros_like(book.centroids)
            if "b" in layer.params:
                self.params[f"{i}.b"] = layer.params["b"]
                self.grads[f"{i}.b"] = layer.grads["b"]
            kept = book.index >= 0
            self.shared.append((layer, name, f"{i}.c", kept, book.index[kept]))

    def pull(self):
        """Centroid gradients: each centroid sums the gradients of its weights."""
        for layer, name, key, kept, idx in self.shared:
            self.grads[key][...] = np.bincount(idx, weights=layer.grads[name][kept],
                                               minlength=self.grads[key].size)

    def push(self):
        for layer, name, key, kept, idx in self.shared:
            layer.params[name][kept] = self.params[key][idx]


def finetune(model, loss, rule, X, y, epochs=1, batch_size=32, seed=None, **fit_kwargs):
    """Train the codebooks (and biases) of a ``share_weights`` model; returns the History.

    ``rule`` is a ``ddlib.optim`` rule (e.g. ``optim.adam(1e-3)``); it steps the centroids
    with their summed gradients, and the weights are rewritten from them after each step.
    """
    from ..optim import Optimizer
    from ..train import fit

    holder = _Centroids(model)
    opt = Optimizer(holder, rule)

    def step_fn(xb, yb):
        out = model.forward(xb, train=True)
        value = loss.forward(out, yb)
        if not np.isfinite(value):
            from ..errors import DivergenceError
            raise DivergenceError(opt.steps, value)
        model.backward(loss.backward(), need_dx=False)
        holder.pull()
        opt.step()
        holder.push()
        return value

    return fit(model, loss, None, X, y, epochs=epochs, batch_size=batch_size, seed=seed,
               step_fn=step_fn, **fit_kwargs)
