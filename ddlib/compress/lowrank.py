"""Low-rank factorization of weight matrices (Sec. 3.7.3): W ~ U V^T by truncated SVD.

A trained ``Linear`` layer maps m1 inputs to m2 outputs through W (m1, m2) (ddlib's
layers compute x W + b).  Replacing W by U V^T with U (m1, k) and V (m2, k) turns the one
layer into two: an m1 -> k layer with weights U and no bias, then a k -> m2 layer with
weights V^T and the old bias.  The pair stores k (m1 + m2) numbers instead of m1 m2, a
saving by ``param_ratio(m1, m2, k)`` = m1 m2 / (k (m1 + m2)), which is the harmonic mean
of m1 and m2 divided by 2k: the factorization pays only while k is below half that mean.

The factors come from the truncated singular value decomposition, which by the
Eckart-Young theorem is the best rank-k approximation of W in both the Frobenius and the
spectral norm; its Frobenius error is the root of the sum of the discarded squared
singular values.  The factorization is meant for a net that has finished training (a
net built low-rank from scratch tends to co-adapt into an even lower rank); after it,
retraining U and V is ordinary ``ddlib.train.fit`` on the new model.  To keep U fixed
and learn only V (the variant the chapter mentions: for a fixed U of rank k, some V
still reaches any rank-k product), build the optimizer over the V layers alone, e.g.
``Optimizer(small.layers[1], rule)``: ``fit`` accepts an optimizer over part of a model.

>>> import numpy as np
>>> from ddlib.layers import mlp
>>> net = mlp([64, 32, 10], rng=0)
>>> small = factorize(net, [8, None])
>>> [type(layer).__name__ for layer in small.layers]
['Linear', 'Linear', 'ReLU', 'Linear']
>>> n_params(net), n_params(small)
(2410, 1130)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..backend.arrays import to_host
from ..errors import check_int
from ..layers.base import Layer
from ..layers.containers import Sequential
from ..layers.linear import Linear


def _check_rank(rank, m1, m2, who="rank"):
    rank = check_int(who, rank, minimum=1)
    if rank > min(m1, m2):
        raise ValueError(f"{who}={rank} must lie in [1, min(m1, m2)] = [1, {min(m1, m2)}] "
                         f"for a {m1} x {m2} weight matrix")
    return rank


def param_ratio(m1, m2, k):
    """Parameters of W over those of U and V: m1 m2 / (k (m1 + m2)) (Sec. 3.7.3).

    m1, m2: the widths of the two layers W connects; k: the rank, 1 <= k <= min(m1, m2).
    Equals HARMONIC-MEAN(m1, m2) / (2k); above 1 the factorization saves storage.

    >>> param_ratio(300, 100, 10)
    7.5
    """
    m1, m2 = check_int("m1", m1), check_int("m2", m2)
    k = _check_rank(k, m1, m2, who="k")
    return m1 * m2 / (k * (m1 + m2))


def _check_matrix(W, who="W"):
    if not isinstance(W, np.ndarray):
        W = to_host(W) if hasattr(W, "copy_to_host") else np.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"{who} must be a 2-D matrix, got shape {W.shape}")
    if W.dtype.kind not in "iuf":
        raise TypeError(f"{who} must hold real numbers, got dtype {W.dtype}")
    if not np.isfinite(W).all():
        raise ValueError(f"{who} contains NaN or inf")
    return W


def svd_factor(W, rank):
    """The rank-``rank`` truncated SVD of W (m1, m2) as (U, V), U (m1, k), V (m2, k).

    U V^T is the best rank-k approximation of W (Eckart-Young: no rank-k matrix is
    closer in the Frobenius or the spectral norm), computed with ``numpy.linalg.svd``.
    With W = P diag(s) Q^T, the k largest singular values are split evenly between the
    factors, U = P_k diag(sqrt s_k) and V = Q_k diag(sqrt s_k), so the two new layers
    start at the same scale, which suits retraining them together.  The factors keep
    W's float dtype (float64 for integer input).

    >>> W = np.outer([1.0, 2.0], [3.0, 0.0, 4.0])      # rank 1
    >>> U, V = svd_factor(W, 1)
    >>> bool(np.allclose(U @ V.T, W)), U.shape, V.shape
    (True, (2, 1), (3, 1))
    """
    W = _check_matrix(W)
    k = _check_rank(rank, *W.shape)
    dtype = W.dtype if W.dtype.kind == "f" else np.dtype(np.float64)
    P, s, Qt = np.linalg.svd(W.astype(np.float64, copy=False), full_matrices=False)
    root = np.sqrt(s[:k])
    U = (P[:, :k] * root).astype(dtype)
    V = (Qt[:k].T * root).astype(dtype)
    return U, V


def dense_layers(model):
    """The top-level ``Linear`` layers of ``model`` (a Sequential, or one Linear), in order:
    the layers ``factorize``'s list of ranks and ``singular_values`` refer to."""
    if isinstance(model, Linear):
        return [model]
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a Sequential or a Linear layer, got "
                        f"{type(model).__name__}")
    return [layer for layer in model.layers if isinstance(layer, Linear)]


def singular_values(model):
    """The singular values of each dense layer's W, largest first: a list of arrays in
    the order of ``dense_layers(model)`` (for plotting the spectrum against the rank)."""
    return [np.linalg.svd(_check_matrix(layer.params["W"], f"{layer.name}.W").astype(
        np.float64, copy=False), compute_uv=False) for layer in dense_layers(model)]


def _ranks(model, rank):
    layers = dense_layers(model)
    if rank is None:
        raise TypeError("rank must be an int (every dense layer) or a list with one int or "
                        "None per dense layer, got None")
    if isinstance(rank, (list, tuple)):
        if len(rank) != len(layers):
            raise ValueError(f"rank lists {len(rank)} entries but the model has "
                             f"{len(layers)} dense (Linear) layers; give one int or None "
                             "per layer")
        ranks = list(rank)
    else:
        ranks = [rank] * len(layers)
    out = []
    for i, (layer, k) in enumerate(zip(layers, ranks)):
        if k is not None:
            k = _check_rank(k, layer.d_in, layer.d_out, who=f"rank[{i}]")
        out.append(k)
    return layers, out


def _factor_layer(layer, k):
    """Two Linear layers whose composition computes x U V^T + b for ``layer``'s W, b."""
    W = _check_matrix(layer.params["W"], f"{layer.name}.W")
    U, V = svd_factor(W, k)
    first = Linear(layer.d_in, k, init="zeros", bias=False, dtype=W.dtype,
                   name=f"{layer.name}.U")
    # the old bias stays on the second layer: the factorized pair then differs from the
    # dense layer only by W - U V^T, and a bias-free first layer saves k numbers
    second = Linear(k, layer.d_out, init="zeros", bias=layer.use_bias, dtype=W.dtype,
                    name=f"{layer.name}.V")
    first.params["W"][...] = U
    second.params["W"][...] = V.T
    if layer.use_bias:
        second.params["b"][...] = to_host(layer.params["b"])
    return first, second


def factorize(model, rank):
    """A new Sequential in which each chosen dense layer is replaced by its rank-k pair.

    rank: an int (the same k for every top-level ``Linear``), or a list with one entry
    per dense layer (``dense_layers(model)``), each an int k or None to keep that layer
    dense.  Each k must lie in [1, min(d_in, d_out)] of its layer.

    A layer W (m1, m2) with bias b becomes ``Linear(m1, k, bias=False)`` with weights U,
    then ``Linear(k, m2)`` with weights V^T and bias b, (U, V) = ``svd_factor(W, k)``; so
    for every input the new model's output equals that of the original with each W
    replaced by its truncated SVD.  The first layer has no bias at all (a bias there
    would just be folded into b).  A layer built without bias gives a second layer
    without bias.  All other layers are deep copies; ``model`` is not changed.  The new
    model lives on the host (move it with ``.to(backend)``); pruning masks are not
    carried into factorized layers.
    """
    layers, ranks = _ranks(model, rank)
    todo = {id(layer): k for layer, k in zip(layers, ranks)}
    source = [model] if isinstance(model, Linear) else model.layers
    out = []
    for layer in source:
        k = todo.get(id(layer))
        if k is None:
            new = copy.deepcopy(layer)
            if isinstance(new, Layer):
                new.to("numpy")
            out.append(new)
        else:
            out.extend(_factor_layer(layer, k))
    return Sequential(out, fuse=getattr(model, "fuse", True))


def n_params(model):
    """The number of trained parameters (weights and biases) of ``model``."""
    return int(sum(int(np.prod(v.shape)) for v in model.params.values()))


@dataclass
class RankRow:
    """One dense layer under ``rank_report``: its shape, the rank, storage and error."""

    layer: int          # position in dense_layers(model)
    m1: int
    m2: int
    rank: int | None    # None: kept dense
    params_before: int  # m1 m2 (weights only; the bias is the same before and after)
    params_after: int   # k (m1 + m2), or m1 m2 when kept dense
    ratio: float        # params_before / params_after (param_ratio for a factored layer)
    rel_error: float    # ||W - U V^T||_F / ||W||_F (0 when kept dense)


def rank_report(model, rank):
    """Per dense layer: (m1, m2, k, weights before, after, ratio, relative Frobenius
    error of the truncation), for the ranks ``factorize(model, rank)`` would use."""
    layers, ranks = _ranks(model, rank)
    rows = []
    for i, (layer, k, s) in enumerate(zip(layers, ranks, singular_values(model))):
        m1, m2 = layer.d_in, layer.d_out
        if k is None:
            rows.append(RankRow(i, m1, m2, None, m1 * m2, m1 * m2, 1.0, 0.0))
            continue
        total = float(np.sum(s * s))
        err = float(np.sqrt(np.sum(s[k:] ** 2) / total)) if total > 0 else 0.0
        rows.append(RankRow(i, m1, m2, k, m1 * m2, k * (m1 + m2), param_ratio(m1, m2, k),
                            err))
    return rows
