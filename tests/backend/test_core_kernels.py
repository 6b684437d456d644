"""Every core kernel on every backend against numpy_ref, float32 and float64, odd shapes."""

import numpy as np
import pytest

import ddlib
from ddlib.backend import numpy_ref
from ddlib.backend.numpy_ref import core as ref
from tests.conftest import SIMULATOR, assert_product_close, tol

# shapes (n, k, m) include 1, primes and non-multiples of the 16-wide cuda tile
MATMUL_SHAPES = [(1, 1, 1), (5, 7, 3), (17, 19, 18)] if SIMULATOR else [
    (1, 1, 1), (5, 7, 3), (17, 19, 18), (31, 64, 33), (128, 97, 257)]
ROW_SHAPES = [(1, 1), (3, 5), (13, 17)] if SIMULATOR else [(1, 1), (3, 5), (13, 17), (129, 257)]


def rand(shape, dtype, seed=0, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(dtype)


def run(be, fn, *args, **kw):
    """Move host args to the backend, call, bring the result back."""
    moved = [be.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    out = getattr(be, fn)(*moved, **kw)
    if isinstance(out, tuple):
        return tuple(be.to_numpy(o) if not isinstance(o, float) else o for o in out)
    return be.to_numpy(out)


@pytest.mark.parametrize("shape", MATMUL_SHAPES)
def test_matmul(backend, dtype, shape):
    n, k, m = shape
    a, b = rand((n, k), dtype, 1), rand((k, m), dtype, 2)
    got = run(backend, "matmul", a, b)
    assert got.dtype == dtype and got.shape == (n, m)
    assert_product_close(got, ref.matmul(a, b), a, b)



def test_the_round_off_bound_still_catches_a_dropped_term():
    """assert_product_close allows for summation order, not for a missing term."""
    a, b = rand((64, 257), np.float32, 1), rand((257, 9), np.float32, 2)
    want = ref.matmul(a, b)
    assert_product_close(want.copy(), want, a, b)
    wrong = want - a[:, 100:101] * b[100:101, :]  # one of 257 products left out
    with pytest.raises(AssertionError, match="beyond the round-off bound"):
        assert_product_close(wrong, want, a, b)


@pytest.mark.parametrize("shape", MATMUL_SHAPES)
def test_transposed_matmuls(backend, dtype, shape):
    """matmul_tn(a, b) = a^T b and matmul_nt(a, b) = a b^T, the backward pass's products."""
    n, k, m = shape
    x, g, W = rand((k, n), dtype, 15), rand((k, m), dtype, 16), rand((n, m), dtype, 17)
    got = run(backend, "matmul_tn", x, g)
    assert got.dtype == dtype and got.shape == (n, m)
    assert_product_close(got, ref.matmul(x.T, g), x.T, g)
    got = run(backend, "matmul_nt", g, W)
    assert got.shape == (k, n)
    assert_product_close(got, ref.matmul(g, W.T), g, W.T)

@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_bias_add_linear_colsum(backend, dtype, shape):
    x, b = rand(shape, dtype, 3), rand(shape[1], dtype, 4)
    np.testing.assert_allclose(run(backend, "bias_add", x, b), ref.bias_add(x, b), **tol(dtype))
    np.testing.assert_allclose(run(backend, "col_sum", x), ref.col_sum(x), **tol(dtype))
    W = rand((shape[1], 3), dtype, 5)
    b3 = rand(3, dtype, 6)
    assert_product_close(run(backend, "linear", x, W, b3), ref.linear(x, W, b3), x, W, b3)


@pytest.mark.parametrize("kind", ref.ACTIVATIONS)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_activations(backend, dtype, kind, shape):
    x = rand(shape, dtype, 7, scale=2.0)
    g = rand(shape, dtype, 8)
    y_ref = ref.act_forward(kind, x, 0.1)
    y = run(backend, "act_forward", kind, x, alpha=0.1)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, y_ref, **tol(dtype))
    np.testing.assert_allclose(run(backend, "act_deriv", kind, x, alpha=0.1),
                               ref.act_deriv(kind, x, 0.1), **tol(dtype))
    np.testing.assert_allclose(run(backend, "act_backward", kind, x, y_ref, g, alpha=0.1),
                               ref.act_backward(kind, x, y_ref, g, 0.1), **tol(dtype))



@pytest.mark.parametrize("kind", ref.ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1, 1), (13, 17)] if SIMULATOR else ROW_SHAPES)
def test_fused_linear_activation(backend, dtype, kind, shape):
    """linear_act / act_backward_colsum match the reference, and the backend's own separate
    kernels bit for bit (so fusing layers never changes a training run)."""
    n, d = shape
    x, W, b = rand((n, d), dtype, 11), rand((d, 7), dtype, 12), rand(7, dtype, 13)
    z, y = run(backend, "linear_act", kind, x, W, b, alpha=0.1)
    z_ref, y_ref = ref.linear_act(kind, x, W, b, 0.1)
    assert z.dtype == y.dtype == dtype and z.shape == y.shape == (n, 7)
    assert_product_close(z, z_ref, x, W, b)
    # every activation here changes by at most as much as its input (slope <= 1), so the
    # product's round-off bound covers y too (plus the activation's own rounding, in tol)
    assert_product_close(y, y_ref, x, W, b)
    np.testing.assert_array_equal(z, run(backend, "linear", x, W, b))
    np.testing.assert_array_equal(y, run(backend, "act_forward", kind, z, alpha=0.1))

    g = rand((n, 7), dtype, 14)
    dz, db = run(backend, "act_backward_colsum", kind, z, y, g, alpha=0.1)
    dz_ref, db_ref = ref.act_backward_colsum(kind, z, y, g, 0.1)
    np.testing.assert_allclose(dz, dz_ref, **tol(dtype))
    np.testing.assert_allclose(db, db_ref, **tol(dtype))
    sep = run(backend, "act_backward", kind, z, y, g, alpha=0.1)
    np.testing.assert_array_equal(dz, sep)
    np.testing.assert_array_equal(db, run(backend, "col_sum", sep))
    # the bias gradient lands in a buffer the caller owns
    buf = backend.asarray(np.full(7, 99, dtype))
    _, same = backend.act_backward_colsum(kind, *(backend.asarray(a) for a in (z, y, g)), 0.1,
                                          db=buf)
    assert same is buf
    np.testing.assert_array_equal(backend.to_numpy(buf), db)


def test_fused_kernels_reject_unknown_activation(backend):
    x = backend.asarray(np.ones((2, 3)))
    with pytest.raises(ValueError, match="kind='swish'"):
        backend.linear_act("swish", x, backend.asarray(np.ones((3, 2))),
                           backend.asarray(np.ones(2)))
    with pytest.raises(ValueError, match="kind='swish'"):
        backend.act_backward_colsum("swish", x, x, x)

@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_softmax_cross_entropy(backend, dtype, shape):
    logits = rand(shape, dtype, 9, scale=3.0)
    labels = np.random.default_rng(10).integers(0, shape[1], size=shape[0]).astype(np.int64)
    np.testing.assert_allclose(run(backend, "softmax", logits), ref.softmax(logits), **tol(dtype))
    loss, p = run(backend, "softmax_xent", logits, labels)
    loss_ref, p_ref = ref.softmax_xent(logits, labels)
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5 if dtype == np.float32 else 1e-10)
    np.testing.assert_allclose(p, p_ref, **tol(dtype))
    got = run(backend, "softmax_xent_backward", p_ref, labels)
    np.testing.assert_allclose(got, ref.softmax_xent_backward(p_ref, labels), **tol(dtype))


def test_softmax_is_stable_for_huge_logits(backend):
    logits = np.array([[1000.0, 0.0, -1000.0]])
    p = run(backend, "softmax", logits)
    assert np.isfinite(p).all() and abs(p.sum() - 1) < 1e-12


def test_unknown_activation_is_rejected(backend):
    x = backend.asarray(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="kind='swish'"):
        backend.act_forward("swish", x)


def test_every_backend_implements_the_reference_interface(backend):
    ref_kernels = set(ddlib.get_backend("numpy").kernels)
    assert ref_kernels <= set(backend.kernels), sorted(ref_kernels - set(backend.kernels))
    assert numpy_ref.name == "numpy"


def test_activation_codes_are_named_and_follow_the_list():
    from ddlib.backend.numpy_ref import core as ref

    names = ("IDENTITY", "SIGMOID", "TANH", "RELU", "LEAKY_RELU", "HARDTANH")
    assert [getattr(ref, n) for n in names] == [ref.activation_code(k) for k in ref.ACTIVATIONS]
    assert [n.lower() for n in names] == list(ref.ACTIVATIONS)
    with pytest.raises(ValueError, match="kind='swish': expected one of"):
        ref.activation_code("swish")
