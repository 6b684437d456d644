"""The sparse family: a CSR-times-dense product and the hashing trick's two index kernels.

The reference is held to its definitions (a dense product with the expanded matrix; the
adjoint identity between expansion and bucket sums); then every backend is compared with
the reference in float32 and float64, with and without output buffers, and every kernel
refuses bad arguments with an error naming the argument.
"""

import numpy as np
import pytest

from ddlib.backend.numpy_ref import sparse as ref
from tests.conftest import SIMULATOR, assert_product_close, tol

# (n, d, m): batch rows, inputs (columns of A), outputs (rows of A); the host-only larger
# ones cross the cpu kernels' thresholds (batched loop, threads)
CSR_SHAPES = ([(1, 5, 3), (6, 7, 4)] if SIMULATOR
              else [(1, 5, 3), (2, 9, 33), (6, 7, 4), (1, 300, 600), (256, 300, 100)])
HASH_SHAPES = [(3, 4, 5), (7, 9, 10)] if SIMULATOR else [(3, 4, 5), (7, 9, 10), (600, 500, 97)]


def rand(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def to_csr(A, index_dtype=np.int64):
    """(indptr, indices, data) of the nonzero entries of A, row by row."""
    mask = A != 0
    indptr = np.concatenate(([0], np.cumsum(mask.sum(axis=1)))).astype(index_dtype)
    rows, cols = np.nonzero(mask)
    return indptr, cols.astype(index_dtype), A[rows, cols]


def sparse_matrix(m, d, density, dtype, seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, d)) * (rng.random((m, d)) < density)
    A[min(1, m - 1)] = 0.0  # an empty row: its output is the bias alone
    return A.astype(dtype)


def hash_case(shape, dtype, seed, k=None):
    rng = np.random.default_rng(seed)
    k = k or max(2, shape[0] * shape[1] // 7)
    bucket = rng.integers(0, k, size=shape)
    sign = rng.choice([-1.0, 1.0], size=shape).astype(dtype)
    return k, bucket, sign


# --- the reference against its definitions ---------------------------------------------------


def test_reference_csr_matmul_is_the_dense_product():
    A = sparse_matrix(6, 8, 0.4, np.float64, 1)
    x, b = rand((5, 8), seed=2), rand(6, seed=3)
    indptr, indices, data = to_csr(A)
    assert data.size < A.size  # really sparse
    np.testing.assert_allclose(ref.csr_matmul(indptr, indices, data, x, b), x @ A.T + b,
                               rtol=1e-13, atol=1e-14)
    # a column listed twice in one row adds both weights, as a dense sum would
    got = ref.csr_matmul(np.array([0, 2]), np.array([1, 1]), np.array([2.0, 3.0]),
                         np.array([[0.0, 1.0]]))
    np.testing.assert_array_equal(got, [[5.0]])


def test_reference_hash_reduce_is_the_adjoint_of_hash_expand():
    k, bucket, sign = hash_case((6, 5), np.float64, 4)
    w, g = rand(k, seed=5), rand((6, 5), seed=6)
    V = ref.hash_expand(w, bucket, sign)
    np.testing.assert_array_equal(V, sign * w[bucket])
    gw = ref.hash_reduce(g, bucket, sign, k)
    # <gw, w> = <g, V> for every w: hash_reduce is the transpose of the linear map w -> V
    np.testing.assert_allclose(gw @ w, np.sum(g * V), rtol=1e-12)
    for q in range(k):
        np.testing.assert_allclose(gw[q], np.sum((sign * g)[bucket == q]), rtol=1e-12,
                                   atol=1e-15)


# --- every backend against the reference -------------------------------------------------------


def _dev(be, *arrays):
    return [None if a is None else be.asarray(a) for a in arrays]


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["i32", "i64"])
@pytest.mark.parametrize("with_out", [False, True], ids=["new", "out"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", CSR_SHAPES)
def test_csr_matmul_matches_the_reference(backend, dtype, shape, with_bias, with_out,
                                          index_dtype):
    n, d, m = shape
    if SIMULATOR and (with_out or not with_bias) and index_dtype is np.int32:
        pytest.skip("one index dtype covers the buffer and bias variants on the simulator")
    A = sparse_matrix(m, d, 0.3, dtype, 10 + n)
    indptr, indices, data = to_csr(A, index_dtype)
    x = rand((n, d), dtype, 11)
    b = rand(m, dtype, 12) if with_bias else None
    want = ref.csr_matmul(indptr, indices, data, x, b)
    args = _dev(backend, indptr, indices, data, x, b)
    if with_out:
        out = backend.asarray(np.full((n, m), np.nan, dtype=dtype))
        assert backend.csr_matmul(*args, out=out) is out
        got = backend.to_numpy(out)
    else:
        res = backend.csr_matmul(*args)
        assert backend.is_native(res)
        got = backend.to_numpy(res)
    assert got.dtype == dtype and got.shape == (n, m)
    assert_product_close(got, want, x, A.T, bias=b)


def test_csr_matmul_with_no_stored_entries_gives_the_bias(backend):
    indptr, indices = np.zeros(4, np.int64), np.zeros(0, np.int64)
    b = np.array([1.0, -2.0, 3.0])
    got = backend.csr_matmul(*_dev(backend, indptr, indices, np.zeros(0), np.ones((2, 5)), b))
    np.testing.assert_array_equal(backend.to_numpy(got), np.tile(b, (2, 1)))


@pytest.mark.parametrize("with_out", [False, True], ids=["new", "out"])
@pytest.mark.parametrize("shape", HASH_SHAPES)
def test_hash_expand_matches_the_reference(backend, dtype, shape, with_out):
    d_in, d_out, _ = shape
    k, bucket, sign = hash_case((d_in, d_out), dtype, 20)
    w = rand(k, dtype, 21)
    want = ref.hash_expand(w, bucket, sign)
    args = _dev(backend, w, bucket, sign)
    if with_out:
        out = backend.asarray(np.full((d_in, d_out), np.nan, dtype=dtype))
        assert backend.hash_expand(*args, out=out) is out
        got = backend.to_numpy(out)
    else:
        got = backend.to_numpy(backend.hash_expand(*args))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)  # a gather and a sign: exact


@pytest.mark.parametrize("with_out", [False, True], ids=["new", "out"])
@pytest.mark.parametrize("shape", HASH_SHAPES)
def test_hash_reduce_matches_the_reference(backend, dtype, shape, with_out):
    d_in, d_out, k = shape
    _, bucket, sign = hash_case((d_in, d_out), dtype, 30, k=k)
    g = rand((d_in, d_out), dtype, 31)
    want = ref.hash_reduce(g, bucket, sign, k)
    args = _dev(backend, g, bucket, sign)
    if with_out:
        out = backend.asarray(np.full(k, np.nan, dtype=dtype))
        assert backend.hash_reduce(*args, k, out=out) is out
        got = backend.to_numpy(out)
    else:
        got = backend.to_numpy(backend.hash_reduce(*args, k))
    assert got.dtype == dtype and got.shape == (k,)
    # each bucket sums about size/k terms of size ~1, in an order that may differ
    t = tol(dtype)
    terms = np.bincount(bucket.ravel(), weights=np.abs(g).ravel().astype(np.float64),
                        minlength=k)
    np.testing.assert_allclose(got, want, rtol=t["rtol"],
                               atol=t["atol"] + 4 * np.finfo(dtype).eps * terms.max())


def test_cpu_parallel_paths_match_the_reference(monkeypatch):
    """The threaded drivers (normally for large inputs only) on small ones."""
    import ddlib
    from ddlib.backend.cpu import sparse as cpu

    monkeypatch.setattr(cpu, "CSR_PARALLEL_MIN", 1)
    monkeypatch.setattr(cpu, "PARALLEL_MIN", 1)
    be = ddlib.get_backend("cpu")
    A = sparse_matrix(9, 13, 0.4, np.float64, 40)
    indptr, indices, data = to_csr(A)
    b = rand(9, seed=41)
    for n in (1, 2, 5, 40):
        x = rand((n, 13), seed=42 + n)
        np.testing.assert_allclose(be.csr_matmul(indptr, indices, data, x, b),
                                   ref.csr_matmul(indptr, indices, data, x, b), rtol=1e-12,
                                   atol=1e-13)
    k, bucket, sign = hash_case((50, 30), np.float64, 43, k=11)
    w, g = rand(k, seed=44), rand((50, 30), seed=45)
    np.testing.assert_array_equal(be.hash_expand(w, bucket, sign),
                                  ref.hash_expand(w, bucket, sign))
    np.testing.assert_allclose(be.hash_reduce(g, bucket, sign, k),
                               ref.hash_reduce(g, bucket, sign, k), rtol=1e-12, atol=1e-13)


# --- bad arguments ------------------------------------------------------------------------------


def _csr_args(be, dtype=np.float64):
    A = sparse_matrix(4, 6, 0.5, dtype, 50)
    indptr, indices, data = to_csr(A)
    return dict(zip(("indptr", "indices", "data", "x", "b"),
                    _dev(be, indptr, indices, data, rand((3, 6), dtype, 51),
                         rand(4, dtype, 52))))


def test_csr_matmul_refuses_bad_shapes_and_dtypes(backend):
    a = _csr_args(backend)

    def call(**change):
        args = dict(a, **change)
        return backend.csr_matmul(args["indptr"], args["indices"], args["data"], args["x"],
                                  args["b"], out=args.get("out"))

    with pytest.raises(ValueError, match=r"csr_matmul: b must have shape \(4,\)"):
        call(b=backend.asarray(np.ones(5)))
    with pytest.raises(ValueError, match=r"csr_matmul: out must have shape \(3, 4\)"):
        call(out=backend.asarray(np.ones((4, 3))))
    with pytest.raises(ValueError, match=r"csr_matmul: x must be a 2-D"):
        call(x=backend.asarray(np.ones(6)))
    with pytest.raises(ValueError, match=r"csr_matmul: indices must have shape"):
        call(indices=backend.asarray(np.zeros(2, np.int64)))
    with pytest.raises(ValueError, match=r"csr_matmul: data must be a 1-D"):
        call(data=backend.asarray(np.ones((2, 2))))
    with pytest.raises(TypeError, match=r"csr_matmul: indptr must be an integer index"):
        call(indptr=backend.asarray(np.zeros(5)))
    with pytest.raises(TypeError, match=r"csr_matmul: data must have dtype float64"):
        call(data=backend.asarray(backend.to_numpy(a["data"]).astype(np.float32)))
    with pytest.raises(TypeError, match=r"csr_matmul: x must be a float32 or float64"):
        call(x=backend.asarray(np.ones((3, 6), np.int64)))


@pytest.mark.parametrize("where", ["index", "pointer"])
def test_host_csr_matmul_refuses_out_of_range_indices(backend, where):
    if backend.name == "cuda":
        pytest.skip("the cuda kernel marks such entries NaN (tested below)")
    a = {k: backend.to_numpy(v) for k, v in _csr_args(backend).items()}
    if where == "index":
        a["indices"] = a["indices"].copy()
        a["indices"][2] = 6  # x has 6 columns
        match = r"csr_matmul: .*indices must lie in \[0, 6\)"
    else:
        a["indptr"] = a["indptr"].copy()
        a["indptr"][1], a["indptr"][2] = a["indptr"][2], a["indptr"][1] - 1
        match = r"csr_matmul: .*indptr must be non-decreasing"
    with pytest.raises(ValueError, match=match):
        backend.csr_matmul(a["indptr"], a["indices"], a["data"], a["x"], a["b"])
    bad_end = a["indptr"].copy()
    bad_end[-1] += 1
    with pytest.raises(ValueError, match=r"csr_matmul: indptr must start at 0 and end at"):
        backend.csr_matmul(bad_end, a["indices"], a["data"], a["x"], a["b"])


def test_hash_kernels_refuse_bad_arguments(backend):
    k, bucket, sign = hash_case((4, 3), np.float64, 60)
    w, g = rand(k, seed=61), rand((4, 3), seed=62)
    w, g, bucket, sign = _dev(backend, w, g, bucket, sign)
    with pytest.raises(ValueError, match=r"hash_expand: sign must have shape \(4, 3\)"):
        backend.hash_expand(w, bucket, backend.asarray(np.ones((3, 4))))
    with pytest.raises(ValueError, match=r"hash_expand: w must be a 1-D"):
        backend.hash_expand(backend.asarray(np.ones((2, 2))), bucket, sign)
    with pytest.raises(TypeError, match=r"hash_expand: bucket must be an integer"):
        backend.hash_expand(w, backend.asarray(np.zeros((4, 3))), sign)
    with pytest.raises(TypeError, match=r"hash_expand: sign must have dtype float64"):
        backend.hash_expand(w, bucket, backend.asarray(np.ones((4, 3), np.float32)))
    with pytest.raises(ValueError, match=r"hash_expand: out must have shape \(4, 3\)"):
        backend.hash_expand(w, bucket, sign, out=backend.asarray(np.ones((3, 4))))
    with pytest.raises(ValueError, match=r"hash_reduce: g must have shape \(4, 3\)"):
        backend.hash_reduce(backend.asarray(np.ones((3, 4))), bucket, sign, k)
    with pytest.raises(ValueError, match=r"hash_reduce: out must have shape \(%d,\)" % k):
        backend.hash_reduce(g, bucket, sign, k, out=backend.asarray(np.ones(k + 1)))
    for badk in (0, 2.5, True):
        with pytest.raises(ValueError, match=r"hash_reduce: k \(the number of real weights\)"):
            backend.hash_reduce(g, bucket, sign, badk)


def test_host_hash_kernels_refuse_out_of_range_buckets(backend):
    if backend.name == "cuda":
        pytest.skip("the cuda kernels never read past w and mark such entries (tested below)")
    bucket = np.array([[0, 1], [2, 3]])
    sign = np.ones((2, 2))
    with pytest.raises(ValueError, match=r"hash_expand: bucket entries must lie in \[0, 3\)"):
        backend.hash_expand(np.ones(3), bucket, sign)
    with pytest.raises(ValueError, match=r"hash_reduce: bucket entries must lie in \[0, 3\)"):
        backend.hash_reduce(np.ones((2, 2)), bucket, sign, 3)
    with pytest.raises(ValueError, match=r"bucket entries must lie in \[0, 4\)"):
        backend.hash_expand(np.ones(4), -bucket, sign)


@pytest.mark.cuda
def test_cuda_sparse_kernels_mark_bad_indices_and_refuse_host_arrays():
    import ddlib
    from ddlib.backend import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason is not None:
        pytest.skip(f"cuda backend unavailable: {reason}")
    be = ddlib.get_backend("cuda")
    indptr, indices = np.array([0, 1, 2]), np.array([0, 9])  # 9: past x's 2 columns
    got = be.to_numpy(be.csr_matmul(*_dev(be, indptr, indices, np.ones(2), np.ones((1, 2)))))
    assert got[0, 0] == 1.0 and np.isnan(got[0, 1])
    V = be.to_numpy(be.hash_expand(*_dev(be, np.ones(2), np.array([1, 5]), np.ones(2))))
    assert V[0] == 1.0 and np.isnan(V[1])
    gw = be.to_numpy(be.hash_reduce(*_dev(be, np.ones(2), np.array([1, 5]), np.ones(2)), 2))
    np.testing.assert_array_equal(gw, [0.0, 1.0])
    with pytest.raises(TypeError, match=r"csr_matmul: x is a host ndarray"):
        be.csr_matmul(*_dev(be, indptr, indices, np.ones(2)), np.ones((1, 2)))
    with pytest.raises(TypeError, match=r"hash_reduce: bucket is a host ndarray"):
        be.hash_reduce(be.asarray(np.ones(2)), np.array([0, 1]), be.asarray(np.ones(2)), 2)


# --- csr_chain: a whole pruned net in one call --------------------------------------------------

CHAIN_DIMS = [7, 9, 6, 4]
CHAIN_KINDS = ["relu", "leaky_relu", "identity"]


def chain_case(dtype, seed=30, dims=CHAIN_DIMS, kinds=CHAIN_KINDS):
    """Per-layer (indptr, indices, data, b) of random sparse layers, and their dense W^T."""
    layers, mats = [], []
    for li, (d, m) in enumerate(zip(dims[:-1], dims[1:])):
        A = sparse_matrix(m, d, 0.4, dtype, seed + li)
        indptr, indices, data = to_csr(A)
        b = rand(m, dtype, seed + 10 + li) if li != 1 else None  # one layer without a bias
        layers.append((indptr, indices, data, b))
        mats.append((A, b))
    return layers, mats, ref.pack_chain(layers, kinds, d_in=dims[0], alphas=[0.01, 0.2, 0.01])


def test_reference_csr_chain_is_the_dense_net():
    layers, mats, packed = chain_case(np.float64)
    x = rand((3, CHAIN_DIMS[0]), seed=40)
    h = x
    for (A, b), f in zip(mats, (lambda z: np.maximum(z, 0), lambda z: np.where(z > 0, z, 0.2 * z),
                               lambda z: z)):
        h = f(h @ A.T + (0 if b is None else b))
    np.testing.assert_allclose(ref.csr_chain(*packed, x), h, rtol=1e-13, atol=1e-14)
    layout = packed[4]
    assert layout.dims.tolist() == CHAIN_DIMS and layout.n_nnz == sum(len(p[1]) for p in layers)


@pytest.mark.parametrize("n", [1, 2, 5] if SIMULATOR else [1, 3, 4, 37])
def test_csr_chain_matches_the_reference(backend, dtype, n):
    # n < 4 is the cpu backend's one-call loop, n >= 4 its layer-by-layer batch path
    _, _, packed = chain_case(dtype)
    x = rand((n, CHAIN_DIMS[0]), dtype, 41)
    want = ref.csr_chain(*packed, x)
    res = backend.csr_chain(*_dev(backend, *packed[:4]), packed[4], backend.asarray(x))
    assert backend.is_native(res)
    got = backend.to_numpy(res)
    assert got.dtype == dtype and got.shape == (n, CHAIN_DIMS[-1])
    np.testing.assert_allclose(got, want, **tol(dtype))


def test_csr_chain_refuses_bad_arguments(backend):
    _, _, (indptr, indices, data, bias, layout) = chain_case(np.float64)
    dev = _dev(backend, indptr, indices, data, bias)
    x = backend.asarray(rand((1, CHAIN_DIMS[0])))
    with pytest.raises(TypeError, match="layout must be a ChainLayout"):
        backend.csr_chain(*dev, (layout.dims, layout.nnz), x)
    with pytest.raises(ValueError, match="x has 5 columns but the chain's first layer reads 7"):
        backend.csr_chain(*dev, layout, backend.asarray(rand((1, 5))))
    with pytest.raises(ValueError, match="bias must be 1-D of length"):
        backend.csr_chain(*dev[:3], backend.asarray(rand(3)), layout, x)
    with pytest.raises(TypeError, match="same dtype|dtype"):
        backend.csr_chain(*dev, layout, backend.asarray(rand((1, 7), np.float32)))


@pytest.mark.parametrize("name", ["numpy", "cpu"])
@pytest.mark.parametrize("n", [1, 6])
def test_host_csr_chain_reports_out_of_range_entries_and_non_finite_input(name, n):
    import ddlib

    host_backend = ddlib.get_backend(name)
    _, _, (indptr, indices, data, bias, layout) = chain_case(np.float64)
    bad = indices.copy()
    bad[-1] = 99  # a column past the last layer's inputs
    with pytest.raises(ValueError, match="out of range|must lie in"):
        host_backend.csr_chain(indptr, bad, data, bias, layout, rand((n, 7)))
    x = rand((n, 7))
    x[-1, 2] = np.inf
    with pytest.raises(ValueError, match="x contains 1 NaN or inf"):
        host_backend.csr_chain(indptr, indices, data, bias, layout, x)


def test_chain_layout_and_pack_chain_check_what_they_are_given():
    with pytest.raises(ValueError, match="a chain of 2 layers needs 3 dims"):
        ref.ChainLayout([3, 4], [1, 1], [0, 0], [0.0, 0.0])
    with pytest.raises(ValueError, match="codes must be activation codes"):
        ref.ChainLayout([3, 4], [1], [17], [0.0])
    layers, _, _ = chain_case(np.float64)
    with pytest.raises(ValueError, match="kinds must name one activation per layer"):
        ref.pack_chain(layers, ["relu"], d_in=7)
    with pytest.raises(ValueError, match="d_in must be a positive integer"):
        ref.pack_chain(layers, CHAIN_KINDS, d_in=0)
    with pytest.raises(ValueError, match="indices must lie in"):
        ref.pack_chain(layers, CHAIN_KINDS, d_in=3)  # layer 0 reads columns up to 6
    with pytest.raises(ValueError, match="kind='softplus'"):
        ref.pack_chain(layers, ["relu", "softplus", "identity"], d_in=7)
    layout = ref.pack_chain(layers, CHAIN_KINDS, d_in=7)[4]
    with pytest.raises(ValueError):
        layout.dims[0] = 3  # read-only: a layout cannot drift from the arrays it describes
