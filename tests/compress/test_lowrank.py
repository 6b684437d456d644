"""Low-rank factorization (Sec. 3.7.3): truncated SVD factors, the chapter's parameter
ratio, factorized models that compute the rank-k approximation, and their retraining."""

import copy
import doctest

import numpy as np
import pytest

from ddlib import optim
from ddlib.compress import lowrank
from ddlib.data import load_digits
from ddlib.layers import Linear, ReLU, Sequential, mlp
from ddlib.losses import SoftmaxCrossEntropy
from ddlib.train import evaluate, fit


def test_doctests():
    assert doctest.testmod(lowrank).failed == 0


def test_svd_factor_is_the_truncated_svd():
    W = np.random.default_rng(0).normal(size=(12, 7))
    s = np.linalg.svd(W, compute_uv=False)
    for k in (1, 3, 7):
        U, V = lowrank.svd_factor(W, k)
        assert U.shape == (12, k) and V.shape == (7, k)
        approx = U @ V.T
        assert np.linalg.matrix_rank(approx) == k
        # Eckart-Young: the Frobenius error is the root of the dropped s_i^2 ...
        assert np.linalg.norm(W - approx) == pytest.approx(np.sqrt(np.sum(s[k:] ** 2)),
                                                          rel=1e-10, abs=1e-12)
        # ... and the spectral error the first dropped singular value
        if k < 7:
            assert np.linalg.norm(W - approx, 2) == pytest.approx(s[k], rel=1e-10)
        # the singular values are split evenly: U^T U = V^T V = diag(s_k)
        np.testing.assert_allclose(U.T @ U, np.diag(s[:k]), atol=1e-12)
        np.testing.assert_allclose(V.T @ V, np.diag(s[:k]), atol=1e-12)
    U, V = lowrank.svd_factor(W, 7)
    np.testing.assert_allclose(U @ V.T, W, atol=1e-12)


def test_svd_factor_beats_other_rank_k_matrices():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(10, 8))
    U, V = lowrank.svd_factor(W, 3)
    best = np.linalg.norm(W - U @ V.T)
    for _ in range(20):   # nearby rank-3 matrices are all farther from W
        A = (U + 0.05 * rng.normal(size=U.shape)) @ (V + 0.05 * rng.normal(size=V.shape)).T
        assert np.linalg.norm(W - A) > best


def test_svd_factor_dtype_and_errors():
    W32 = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    U, V = lowrank.svd_factor(W32, 2)
    assert U.dtype == np.float32 and V.dtype == np.float32
    for bad in (0, 5, -1):
        with pytest.raises(ValueError, match="rank"):
            lowrank.svd_factor(W32, bad)
    with pytest.raises(TypeError, match="rank"):
        lowrank.svd_factor(W32, 2.0)
    with pytest.raises(ValueError, match="W"):
        lowrank.svd_factor(np.ones(4), 1)
    bad = W32.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lowrank.svd_factor(bad, 1)


def test_param_ratio_is_the_chapters_formula():
    assert lowrank.param_ratio(300, 100, 10) == pytest.approx(7.5)
    for m1, m2, k in [(64, 300, 5), (300, 100, 30), (100, 10, 3), (7, 7, 7)]:
        hm = 2 * m1 * m2 / (m1 + m2)
        r = lowrank.param_ratio(m1, m2, k)
        assert r == pytest.approx(m1 * m2 / (k * (m1 + m2)))
        assert r == pytest.approx(hm / (2 * k))
        # the factors save storage exactly when k < HARMONIC-MEAN / 2
        assert (r > 1) == (k < hm / 2)
    with pytest.raises(ValueError, match="k"):
        lowrank.param_ratio(10, 20, 11)
    with pytest.raises(ValueError, match="k"):
        lowrank.param_ratio(10, 20, 0)
    with pytest.raises(ValueError, match="m1"):
        lowrank.param_ratio(0, 20, 1)
    with pytest.raises(TypeError, match="m2"):
        lowrank.param_ratio(10, 2.5, 1)


def _with_truncated_weights(model, ranks):
    """A copy of ``model`` whose dense W's are replaced by their rank-k reconstructions."""
    ref = copy.deepcopy(model)
    for layer, k in zip(lowrank.dense_layers(ref), ranks):
        if k is not None:
            U, V = lowrank.svd_factor(layer.params["W"], k)
            layer.params["W"][...] = U @ V.T
    return ref


def test_factorized_model_computes_the_rank_k_approximation():
    net = mlp([20, 16, 12, 5], rng=3)
    for layer in lowrank.dense_layers(net):   # nonzero biases, so that their place matters
        layer.params["b"][...] = np.random.default_rng(4).normal(size=layer.d_out)
    x = np.random.default_rng(5).normal(size=(30, 20))
    before = net(x).copy()
    for ranks in ([4, None, 2], [16, 12, 5], [1, 1, 1]):
        small = lowrank.factorize(net, ranks)
        np.testing.assert_allclose(small(x), _with_truncated_weights(net, ranks)(x),
                                   rtol=1e-12, atol=1e-12)
        n_dense = sum(k is None for k in ranks)
        assert len(lowrank.dense_layers(small)) == 2 * len(ranks) - n_dense
    np.testing.assert_array_equal(net(x), before)   # the original is untouched
    # full rank everywhere reproduces the dense net (up to rounding)
    np.testing.assert_allclose(lowrank.factorize(net, [16, 12, 5])(x), before, atol=1e-10)


def test_factorized_layer_structure_and_bias():
    net = mlp([8, 6, 3], rng=0)
    small = lowrank.factorize(net, 2)
    first, second = small.layers[0], small.layers[1]
    assert (first.d_in, first.d_out, second.d_in, second.d_out) == (8, 2, 2, 6)
    assert not first.use_bias and "b" not in first.params
    np.testing.assert_array_equal(second.params["b"], net.layers[0].params["b"])
    assert isinstance(small.layers[2], ReLU)
    assert small.layers[2] is not net.layers[1]          # copies, not shared layers
    kept = lowrank.factorize(net, [None, None])
    assert kept.layers[0] is not net.layers[0]
    np.testing.assert_array_equal(kept.layers[0].params["W"], net.layers[0].params["W"])
    # a layer without bias (as before batch norm) gives a pair without bias
    nobias = Sequential(Linear(5, 4, bias=False, rng=0))
    pair = lowrank.factorize(nobias, 2)
    assert [layer.use_bias for layer in pair.layers] == [False, False]
    # a single Linear is accepted as a one-layer model
    assert len(lowrank.factorize(Linear(5, 4, rng=0), 3).layers) == 2
    # float32 nets stay float32
    net32 = mlp([8, 6, 3], rng=0, dtype=np.float32)
    assert all(v.dtype == np.float32 for v in lowrank.factorize(net32, 2).params.values())


def test_factorize_rank_errors_name_rank():
    net = mlp([8, 6, 3], rng=0)
    with pytest.raises(ValueError, match=r"rank\[1\]=4"):
        lowrank.factorize(net, 4)              # the 6 x 3 output layer allows at most 3
    with pytest.raises(ValueError, match=r"rank\[0\]"):
        lowrank.factorize(net, [0, None])
    with pytest.raises(ValueError, match="rank lists 3 entries"):
        lowrank.factorize(net, [2, 2, 2])
    with pytest.raises(TypeError, match="rank"):
        lowrank.factorize(net, None)
    with pytest.raises(TypeError, match=r"rank\[0\]"):
        lowrank.factorize(net, [2.5, None])
    with pytest.raises(TypeError, match="model"):
        lowrank.factorize(ReLU(), 1)


def test_parameter_counts_and_report():
    net = mlp([64, 300, 100, 10], rng=0)
    ranks = [10, 20, None]
    small = lowrank.factorize(net, ranks)
    rows = lowrank.rank_report(net, ranks)
    assert lowrank.n_params(net) == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert lowrank.n_params(net) - lowrank.n_params(small) == sum(
        r.params_before - r.params_after for r in rows)
    assert [r.rank for r in rows] == ranks
    assert rows[0].params_after == 10 * (64 + 300)
    assert rows[1].ratio == pytest.approx(lowrank.param_ratio(300, 100, 20))
    assert rows[2].ratio == 1.0 and rows[2].rel_error == 0.0
    for row, layer, k in zip(rows, lowrank.dense_layers(net), ranks):
        if k is None:
            continue
        W = layer.params["W"]
        U, V = lowrank.svd_factor(W, k)
        assert row.rel_error == pytest.approx(np.linalg.norm(W - U @ V.T) / np.linalg.norm(W))


def test_singular_values_per_layer():
    net = mlp([10, 7, 4], rng=1)
    sv = lowrank.singular_values(net)
    assert [s.shape for s in sv] == [(7,), (4,)]
    for s, layer in zip(sv, lowrank.dense_layers(net)):
        np.testing.assert_allclose(s, np.linalg.svd(layer.params["W"], compute_uv=False))
        assert np.all(np.diff(s) <= 0)


def test_retraining_the_factors_recovers_accuracy():
    d = load_digits(seed=0)
    loss = SoftmaxCrossEntropy()
    for seed in range(3):
        net = mlp([64, 64, 10], rng=seed)
        fit(net, loss, optim.Optimizer(net, optim.adam(1e-2)), d.X_train, d.y_train,
            epochs=6, batch_size=64, seed=seed)
        dense_acc = evaluate(net, loss, d.X_test, d.y_test)[1]
        small = lowrank.factorize(net, [3, None])   # 64 x 64 hidden weights at rank 3
        U0 = small.layers[0].params["W"].copy()
        V0 = small.layers[1].params["W"].copy()
        truncated = evaluate(small, loss, d.X_test, d.y_test)[1]
        fit(small, loss, optim.Optimizer(small, optim.adam(1e-2)), d.X_train, d.y_train,
            epochs=3, batch_size=64, seed=seed)
        retrained = evaluate(small, loss, d.X_test, d.y_test)[1]
        # rank 3 costs accuracy, and retraining U and V wins a good part of it back
        # (seen on seeds 0-4: from 0.49-0.57 to 0.78-0.84, dense 0.93-0.96)
        assert truncated < dense_acc - 0.2
        assert retrained > truncated + 0.2
        assert not np.array_equal(small.layers[0].params["W"], U0)
        assert not np.array_equal(small.layers[1].params["W"], V0)


def test_retraining_only_V_keeps_U_fixed():
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(64, 10)), rng.integers(0, 3, size=64)
    small = lowrank.factorize(mlp([10, 8, 3], rng=0), [2, None])
    U0, V0 = small.layers[0].params["W"].copy(), small.layers[1].params["W"].copy()
    loss = SoftmaxCrossEntropy()
    before = evaluate(small, loss, X, y)[0]
    fit(small, loss, optim.Optimizer(small.layers[1], optim.sgd(0.1)), X, y, epochs=3,
        batch_size=16, seed=0)
    np.testing.assert_array_equal(small.layers[0].params["W"], U0)
    assert not np.array_equal(small.layers[1].params["W"], V0)
    assert evaluate(small, loss, X, y)[0] < before
