"""HashedLinear (HashedNets): the virtual matrix is sign * w[bucket] by the committed hash,
the layer equals a Linear holding that matrix, its gradients pass the chapter's check on
every backend, and the hash gives the same buckets on every run and machine."""

import numpy as np
import pytest

import ddlib
from ddlib.compress import hashed
from ddlib.gradcheck import check_model
from ddlib.layers import Linear, Sequential, Tanh
from ddlib.losses import SoftmaxCrossEntropy
from tests.conftest import SIMULATOR, assert_product_close

RHO = 1e-7


def test_the_hash_gives_the_committed_buckets_and_signs():
    # Fixtures computed once and committed: a change in the hash (constants, key
    # packing, the modulus, the sign bit) breaks every saved HashedLinear and fails here.
    b, s = hashed.bucket_and_sign(3, 4, 10, seed=0)
    assert b.tolist() == [[5, 6, 0, 5], [7, 3, 1, 9], [2, 6, 9, 9]]
    assert s.astype(int).tolist() == [[1, 1, -1, -1], [-1, 1, -1, 1], [1, 1, -1, -1]]
    b1, s1 = hashed.bucket_and_sign(3, 4, 10, seed=1)
    assert b1.tolist() == [[0, 9, 1, 9], [7, 7, 6, 0], [2, 1, 3, 4]]
    assert s1.astype(int).tolist() == [[-1, -1, 1, 1], [1, 1, 1, 1], [-1, -1, -1, -1]]
    assert int(hashed.hash_positions(0, 0)[()]) == 16294208416658607535
    assert int(hashed.hash_positions(3, 7, seed=5)[()]) == 8138724096067149509


def test_a_position_hashes_alike_in_any_matrix_shape():
    # the bucket of (i, j) depends on i, j, K and the seed only, not on the matrix's size
    b_small, s_small = hashed.bucket_and_sign(3, 4, 10)
    b_big, s_big = hashed.bucket_and_sign(30, 50, 10)
    np.testing.assert_array_equal(b_big[:3, :4], b_small)
    np.testing.assert_array_equal(s_big[:3, :4], s_small)


def test_buckets_spread_evenly_and_signs_balance():
    b, s = hashed.bucket_and_sign(300, 100, 3000)
    counts = np.bincount(b.ravel(), minlength=3000)
    assert b.min() >= 0 and b.max() < 3000
    # 30000 positions over 3000 buckets: Poisson(10) counts, a few empty at most
    assert abs(counts.mean() - 10) < 1e-12 and 2.0 < counts.std() < 4.5
    assert (counts == 0).sum() < 10
    assert abs(s.mean()) < 0.03 and set(np.unique(s)) == {-1.0, 1.0}


def test_layer_is_a_linear_with_the_virtual_matrix(backend, dtype):
    layer = hashed.HashedLinear(7, 5, n_buckets=9, rng=0, dtype=dtype)
    layer.params["b"][...] = np.arange(5, dtype=dtype)
    want_V = layer.sign * layer.params["w"][layer.bucket]
    layer.to(backend.name)
    np.testing.assert_array_equal(layer.virtual_weights(), want_V)
    x = np.random.default_rng(1).normal(size=(4, 7)).astype(dtype)
    got = backend.to_numpy(layer(backend.asarray(x)))
    assert got.dtype == dtype
    assert_product_close(got, x @ want_V + np.arange(5, dtype=dtype), x, want_V,
                         bias=np.arange(5, dtype=dtype))
    assert layer.storage_fraction == 9 / 35


def test_backward_is_a_dense_layers_backward_summed_per_bucket():
    layer = hashed.HashedLinear(3, 2, n_buckets=4, rng=0)
    x = np.random.default_rng(2).normal(size=(5, 3))
    g = np.random.default_rng(3).normal(size=(5, 2))
    layer(x)
    dx = layer.backward(g)
    dense = Linear(3, 2, rng=0)
    dense.params["W"][...] = layer.virtual_weights()
    dense(x)
    np.testing.assert_allclose(dx, dense.backward(g), rtol=1e-12)
    gV = x.T @ g
    want = np.bincount(layer.bucket.ravel(), weights=(layer.sign * gV).ravel(), minlength=4)
    np.testing.assert_allclose(layer.grads["w"], want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.grads["b"], g.sum(axis=0), rtol=1e-12)


def _hashed_net(seed, bias=True):
    d = 2 if SIMULATOR else 5
    return Sequential(hashed.HashedLinear(d, 4, n_buckets=5, bias=bias, seed=seed, rng=seed),
                      Tanh(),
                      hashed.HashedLinear(4, 3, n_buckets=4, bias=bias, seed=seed + 1,
                                          rng=seed + 1)), d


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gradcheck_on_every_backend(backend, bias):
    if SIMULATOR and not bias:
        pytest.skip("one variant on the simulator")
    net, d = _hashed_net(3, bias)
    net.to(backend.name)
    rng = np.random.default_rng(4)
    n = 2 if SIMULATOR else 6
    x, y = rng.normal(size=(n, d)), rng.integers(0, 3, n)
    report = check_model(net, SoftmaxCrossEntropy(), x, y, eps=1e-5, check_input=True,
                         atol=3e-10)  # 30x the differences' rounding noise (~1e-11)
    assert report.passed and report.worst_rho < RHO, report
    # the real weights really are shared: fewer than the virtual positions
    assert report.n_checked == (5 + 4) + (bias * (4 + 3)) + n * d


def test_the_check_catches_a_reduction_without_signs():
    net, d = _hashed_net(5)
    layer = net.layers[0]
    layer._host_index = (layer.bucket, np.ones_like(layer.sign))  # backward ignores signs
    layer._index_on.clear()
    real_sign = hashed.bucket_and_sign(d, 4, 5, seed=5)[1]

    def forward(x, train=True, layer=layer):  # forward keeps the true signs
        with ddlib.use_backend("numpy"):
            V = real_sign * layer.params["w"][layer.bucket]
            layer._cache = (x, V)
            return x @ V + layer.params["b"]

    layer.forward = forward
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(6, d)), rng.integers(0, 3, 6)
    with ddlib.use_backend("numpy"):
        report = check_model(net, SoftmaxCrossEntropy(), x, y, eps=1e-5)
    assert not report.passed and report.where.startswith("0.w")


def test_layer_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"n_buckets must be an integer in \[1, d_in \* d_out"):
        hashed.HashedLinear(3, 4, n_buckets=13)
    with pytest.raises(ValueError, match=r"n_buckets must be an integer"):
        hashed.HashedLinear(3, 4, n_buckets=0)
    with pytest.raises(ValueError, match=r"n_buckets must be an integer"):
        hashed.HashedLinear(3, 4, n_buckets=2.5)
    with pytest.raises(ValueError, match=r"seed \(the hash's\) must be an integer >= 0"):
        hashed.HashedLinear(3, 4, n_buckets=2, seed=-1)
    with pytest.raises(ValueError, match=r"d_in"):
        hashed.HashedLinear(0, 4, n_buckets=1)
    layer = hashed.HashedLinear(3, 4, n_buckets=5)
    with pytest.raises(ValueError, match=r"input has 2 features per row"):
        layer(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"hash_positions: i and j must be integers >= 0"):
        hashed.hash_positions(-1, 0)
    assert "5 buckets" in repr(layer)
