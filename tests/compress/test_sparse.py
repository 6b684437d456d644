"""CSR storage and sparse inference: the container round-trips, SparseLinear gives the
dense layer's outputs on every backend, and sparsify converts exactly the pruned layers."""

import numpy as np
import pytest

import ddlib
from ddlib.compress import prune
from ddlib.compress import sparse as sp
from ddlib.layers import Linear, ReLU, Sequential, mlp
from tests.conftest import SIMULATOR, assert_product_close


def pruned_linear(d_in, d_out, amount, dtype=np.float64, seed=0):
    layer = Linear(d_in, d_out, rng=seed, dtype=dtype)
    layer.params["b"][...] = np.random.default_rng(seed + 1).normal(size=d_out)
    prune.l1_unstructured(layer, "W", amount=amount)
    return layer


def test_csr_round_trips_and_counts():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(7, 9)) * (rng.random((7, 9)) < 0.3)
    A[2] = 0.0
    c = sp.CSR.from_dense(A)
    np.testing.assert_array_equal(c.to_dense(), A)
    assert c.nnz == int((A != 0).sum()) and c.shape == (7, 9)
    assert c.density == pytest.approx(c.nnz / 63)
    assert c.indices.dtype == np.int32 and c.indptr.dtype == np.int32
    assert c.nbytes == c.nnz * 8 + c.nnz * 4 + 8 * 4
    assert c.indptr[3] == c.indptr[2]  # the empty row
    # the mask decides the structure: a kept zero is stored
    mask = A != 0
    mask[0, 0] = True
    kept = sp.CSR.from_dense(A, mask=mask)
    assert kept.nnz == c.nnz + (A[0, 0] == 0)
    np.testing.assert_array_equal(kept.to_dense(), A)
    assert kept.astype(np.float32).data.dtype == np.float32


def test_csr_from_linear_is_the_transposed_masked_weight():
    layer = pruned_linear(6, 4, 0.75)
    c = sp.CSR.from_linear(layer)
    assert c.shape == (4, 6) and c.nnz == int(layer.masks["W"].sum()) == 6
    np.testing.assert_array_equal(c.to_dense(), layer.params["W"].T)


def test_csr_refuses_bad_arrays():
    with pytest.raises(ValueError, match=r"CSR: indptr must have rows \+ 1 = 3 entries"):
        sp.CSR([0, 1], [0], [1.0], (2, 2))
    with pytest.raises(ValueError, match=r"CSR: .*indices must lie in \[0, 2\)"):
        sp.CSR([0, 1, 1], [2], [1.0], (2, 2))
    with pytest.raises(ValueError, match=r"CSR: indptr must be non-decreasing"):
        sp.CSR([0, 1, 0, 1], [0], [1.0], (3, 2))
    with pytest.raises(ValueError, match=r"CSR: indptr must start at 0 and end at len\(data\)"):
        sp.CSR([0, 1, 2], [0], [1.0], (2, 2))
    with pytest.raises(TypeError, match=r"CSR: data must be a 1-D float32 or float64"):
        sp.CSR([0, 1, 1], [0], [1], (2, 2))
    with pytest.raises(TypeError, match=r"CSR: indices must be a 1-D integer array"):
        sp.CSR([0, 1, 1], [0.0], [1.0], (2, 2))
    with pytest.raises(ValueError, match=r"CSR: shape must be a \(rows, cols\) tuple"):
        sp.CSR([0], [], np.zeros(0), [0, 0])
    with pytest.raises(ValueError, match=r"CSR.from_dense: mask must be a boolean array"):
        sp.CSR.from_dense(np.ones((2, 2)), mask=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"CSR.from_dense: A must be a 2-D array"):
        sp.CSR.from_dense(np.ones(3))


@pytest.mark.parametrize("batch", [1, 5, 64])
@pytest.mark.parametrize("amount", [0.0, 0.5, 0.9, 1.0])
def test_sparse_linear_matches_the_dense_layer(backend, dtype, amount, batch):
    if SIMULATOR and (batch == 64 or amount in (0.0, 1.0)):
        pytest.skip("two sparsities and two batch sizes on the simulator")
    layer = pruned_linear(12, 7, amount, dtype, seed=3)
    x = np.random.default_rng(4).normal(size=(batch, 12)).astype(dtype)
    want = x @ layer.params["W"] + layer.params["b"]
    sl = sp.SparseLinear.from_linear(layer)
    assert sl.csr.nnz == 84 - int(round(amount * 84))
    got = sl(backend.asarray(x))
    assert backend.is_native(got)
    got = backend.to_numpy(got)
    assert got.dtype == dtype and got.shape == (batch, 7)
    assert_product_close(got, want, x, layer.params["W"], bias=layer.params["b"])


def test_sparse_linear_without_bias_and_storage():
    layer = Linear(10, 6, bias=False, rng=1)
    prune.l1_unstructured(layer, "W", amount=0.8)
    sl = sp.SparseLinear.from_linear(layer)
    x = np.random.default_rng(2).normal(size=(3, 10))
    np.testing.assert_allclose(sl(x), x @ layer.params["W"], rtol=1e-12, atol=1e-13)
    assert sl.b is None and sl.params == {}
    assert sl.nbytes == sl.csr.nbytes == 12 * 8 + 12 * 4 + 7 * 4
    assert "nnz=12" in repr(sl)


def test_sparse_linear_is_inference_only_and_checks_its_input():
    sl = sp.SparseLinear.from_linear(pruned_linear(4, 3, 0.5))
    x = np.ones((2, 4))
    sl(x)
    with pytest.raises(RuntimeError, match=r"is an inference layer .* no backward pass"):
        sl.backward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"input has 5 features per row"):
        sl(np.ones((2, 5)))
    with pytest.raises(TypeError, match=r"input batch has dtype float32 but the layer's "
                                        r"weights are float64"):
        sl(np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match=r"from_linear: expected a Linear layer"):
        sp.SparseLinear.from_linear(ReLU())
    with pytest.raises(ValueError, match=r"SparseLinear: b must have shape \(3,\)"):
        sp.SparseLinear(sl.csr, np.ones(4))


def test_sparsify_converts_the_pruned_layers_and_keeps_the_outputs(backend):
    net = mlp([8, 16, 12, 3], activation="relu", rng=5)
    rng = np.random.default_rng(6)
    for layer, _ in prune.weight_layers(net):
        layer.params["b"][...] = rng.normal(size=layer.params["b"].shape)
    pruned = prune.weight_layers(net)[:2]
    for layer, name in pruned:
        prune.l1_unstructured(layer, name, amount=0.8)
    x = rng.normal(size=(9, 8))
    with ddlib.use_backend("numpy"):
        want = net(x)
    snet = sp.sparsify(net)
    kinds = [type(m).__name__ for m in snet.layers]
    assert kinds == ["SparseLinear", "ReLU", "SparseLinear", "ReLU", "Linear"]
    assert snet.layers[0].check_finite and not snet.layers[2].check_finite
    got = backend.to_numpy(snet.to(backend.name)(backend.asarray(x)))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # the original keeps its dense, masked layers for retraining
    assert [type(m).__name__ for m in net.layers][0] == "Linear"
    assert net.layers[0].masks["W"].sum() == round(0.2 * 128)
    every = sp.sparsify(net, only_pruned=False)
    assert type(every.layers[4]).__name__ == "SparseLinear"
    got = backend.to_numpy(every.to(backend.name)(backend.asarray(x)))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_sparsify_refuses_a_model_with_nothing_to_convert():
    with pytest.raises(ValueError, match=r"sparsify: the model has no pruned Linear layer"):
        sp.sparsify(mlp([4, 3, 2], rng=0))
    with pytest.raises(TypeError, match=r"sparsify: model must be a Layer"):
        sp.sparsify([Linear(2, 2)])
    nested = Sequential(Sequential(pruned_linear(4, 3, 0.5), ReLU()), Linear(3, 2, rng=1))
    out = sp.sparsify(nested)
    assert type(out.layers[0].layers[0]).__name__ == "SparseLinear"


@pytest.mark.parametrize("batch", [1, 2, 9])
def test_sparse_chain_runs_the_whole_pruned_net_in_one_call(backend, dtype, batch):
    net = mlp([8, 16, 12, 3], activation="tanh", rng=7, dtype=dtype)
    rng = np.random.default_rng(8)
    for layer, _ in prune.weight_layers(net):
        layer.params["b"][...] = rng.normal(size=layer.params["b"].shape)
    prune.prune_model(net, 0.7)
    x = rng.normal(size=(batch, 8)).astype(dtype)
    with ddlib.use_backend("numpy"):
        want = net(x)
    chain = sp.sparsify(net, fuse=True)
    assert isinstance(chain, sp.SparseChain)
    assert repr(chain) == f"SparseChain(8 -> 16 tanh -> 12 tanh -> 3, nnz={chain.nnz})"
    assert chain.nnz == sum(int(layer.masks["W"].sum()) for layer, _ in prune.weight_layers(net))
    assert chain.params == {} and chain.nbytes == sum(
        sp.SparseLinear.from_linear(layer).nbytes for layer, _ in prune.weight_layers(net))
    got = backend.to_numpy(chain.to(backend.name)(backend.asarray(x)))
    rtol = 2e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    # the same outputs as the layer-by-layer sparse copy
    per_layer = backend.to_numpy(sp.sparsify(net).to(backend.name)(backend.asarray(x)))
    np.testing.assert_allclose(got, per_layer, rtol=rtol, atol=rtol)


def test_sparse_chain_takes_plain_chains_only_and_is_inference_only():
    from ddlib.layers import BatchNorm, LeakyReLU

    net = Sequential(Sequential(pruned_linear(4, 6, 0.5), LeakyReLU(0.3)), pruned_linear(6, 2, 0.5))
    chain = sp.SparseChain.from_model(net)  # nested containers are flattened
    assert chain.kinds == ("leaky_relu", "identity")
    assert chain.packed[4].alphas.tolist() == [0.3, 0.01]
    x = np.random.default_rng(0).normal(size=(1, 4))
    np.testing.assert_allclose(chain(x), net(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="BatchNorm.*neither a linear layer nor a plain"):
        sp.SparseChain.from_model(Sequential(pruned_linear(4, 3, 0.5), BatchNorm(3)))
    with pytest.raises(ValueError, match="must follow a linear layer directly"):
        sp.SparseChain.from_model(Sequential(pruned_linear(4, 3, 0.5), ReLU(), ReLU()))
    with pytest.raises(RuntimeError, match="no backward pass"):
        chain.backward(np.ones((1, 2)))
    with pytest.raises(ValueError, match="expects 4"):
        chain(np.ones((1, 5)))
    with pytest.raises(TypeError, match="dtype float32 but the chain's weights are float64"):
        chain(np.ones((1, 4), np.float32))
    bad = np.ones((1, 4))
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        chain(bad)
    with pytest.raises(ValueError, match="sparsify: the model has no pruned Linear"):
        sp.sparsify(mlp([4, 3, 2], rng=0), fuse=True)
