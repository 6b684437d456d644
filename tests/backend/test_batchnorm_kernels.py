"""Batch-normalization kernels on every backend against numpy_ref, float32 and float64."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddlib.backend.numpy_ref import batchnorm as ref
from tests.conftest import SIMULATOR, tol

# (m, d): m from 2 up, widths that are not multiples of the 32-unit cuda strip; the larger
# ones cross the cpu backend's parallel threshold and split the columns into blocks
SHAPES = [(2, 3), (5, 7), (9, 33)] if SIMULATOR else [
    (2, 3), (5, 7), (9, 33), (64, 130), (257, 300), (512, 1024)]


def rand(shape, dtype, seed, loc=0.0, scale=1.0):
    return (np.random.default_rng(seed).normal(loc, scale, size=shape)).astype(dtype)


def run(be, fn, *args, **kw):
    moved = [be.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    out = getattr(be, fn)(*moved, **kw)
    if isinstance(out, tuple):
        return tuple(be.to_numpy(o) for o in out)
    return be.to_numpy(out)


def inputs(shape, dtype, seed=0):
    m, d = shape
    # an offset mean (5) and spread (3) make the one-pass variance work for its accuracy
    x = rand(shape, dtype, seed, loc=5.0, scale=3.0)
    g = rand(shape, dtype, seed + 1)
    gamma = rand(d, dtype, seed + 2, loc=1.0, scale=0.5)
    beta = rand(d, dtype, seed + 3)
    return x, g, gamma, beta


def grad_tol(dtype, g, gamma, var, eps):
    """dL/dv sums m terms of size |g| gamma / sigma that cancel to a small result, so its
    error is relative to that scale, not to the (often tiny) result."""
    scale = float(np.abs(g).max() * np.abs(gamma).max() / np.sqrt(var.min() + eps))
    t = tol(dtype)
    return dict(rtol=t["rtol"], atol=t["rtol"] * scale * 4)


@pytest.mark.parametrize("shape", SHAPES)
def test_stats_and_forward(backend, dtype, shape):
    x, _, gamma, beta = inputs(shape, dtype)
    mean_ref, var_ref = ref.batchnorm_stats(x)
    mean, var = run(backend, "batchnorm_stats", x)
    assert mean.dtype == dtype and var.dtype == dtype and mean.shape == (shape[1],)
    np.testing.assert_allclose(mean, mean_ref, **tol(dtype))
    np.testing.assert_allclose(var, var_ref, rtol=tol(dtype)["rtol"] * 4)
    out, m2, v2 = run(backend, "batchnorm_forward", x, gamma, beta, 1e-5)
    out_ref, _, _ = ref.batchnorm_forward(x, gamma, beta, 1e-5)
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_allclose(out, out_ref, rtol=tol(dtype)["rtol"] * 4,
                               atol=tol(dtype)["atol"] * 4)
    np.testing.assert_allclose(m2, mean_ref, **tol(dtype))
    np.testing.assert_allclose(v2, var_ref, rtol=tol(dtype)["rtol"] * 4)


def test_forward_output_has_batch_mean_beta_and_std_gamma(backend):
    # Sec. 3.6: each unit's output has mean beta_i and standard deviation ~gamma_i
    x, _, gamma, beta = inputs((40, 6), np.float64, seed=4)
    out, _, _ = run(backend, "batchnorm_forward", x, gamma, beta, 0.0)
    np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), np.abs(gamma), rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("form", ["batchnorm_backward", "batchnorm_backward_recursive"])
def test_backward(backend, dtype, shape, form):
    x, g, gamma, _ = inputs(shape, dtype, seed=5)
    mean, var = ref.batchnorm_stats(x)
    eps = 1e-3
    dx, dgamma, dbeta = run(backend, form, g, x, gamma, mean, var, eps)
    dx_ref, dgamma_ref, dbeta_ref = getattr(ref, form)(g, x, gamma, mean, var, eps)
    assert dx.dtype == dtype and dx.shape == shape and dgamma.shape == (shape[1],)
    np.testing.assert_allclose(dx, dx_ref, **grad_tol(dtype, g, gamma, var, eps))
    sums = dict(rtol=tol(dtype)["rtol"] * 4, atol=tol(dtype)["rtol"] * np.abs(g).sum(0).max())
    np.testing.assert_allclose(dgamma, dgamma_ref, **sums)
    np.testing.assert_allclose(dbeta, dbeta_ref, **sums)


@pytest.mark.parametrize("shape", [(1, 4), (3, 5)] if SIMULATOR else [(1, 4), (3, 5), (300, 257)])
def test_infer(backend, dtype, shape):
    x, _, gamma, beta = inputs(shape, dtype, seed=6)
    mean = rand(shape[1], dtype, 7, loc=5.0)
    var = np.abs(rand(shape[1], dtype, 8, loc=9.0))
    got = run(backend, "batchnorm_infer", x, gamma, beta, mean, var, 1e-5)
    want = ref.batchnorm_infer(x, gamma, beta, mean, var, 1e-5)
    assert got.dtype == dtype and got.shape == shape
    np.testing.assert_allclose(got, want, rtol=tol(dtype)["rtol"] * 4, atol=tol(dtype)["atol"] * 4)


def test_running_update(backend, dtype):
    d = 5
    rm, rv = rand(d, dtype, 9), np.abs(rand(d, dtype, 10))
    mean, var = rand(d, dtype, 11), np.abs(rand(d, dtype, 12))
    brm, brv = backend.asarray(rm.copy()), backend.asarray(rv.copy())
    assert backend.batchnorm_running_update(brm, brv, backend.asarray(mean),
                                            backend.asarray(var), 0.25, 8) is None
    np.testing.assert_allclose(backend.to_numpy(brm), 0.75 * rm + 0.25 * mean, **tol(dtype))
    np.testing.assert_allclose(backend.to_numpy(brv), 0.75 * rv + 0.25 * var * 8 / 7,
                               **tol(dtype))


def test_backward_sums_vanish(backend):
    # v_hat has zero mean and unit variance over the batch, so dL/dv is orthogonal to the
    # constant vector and to v_hat: a shift or a rescaling of the batch leaves the output
    # unchanged
    x, g, gamma, _ = inputs((16, 4), np.float64, seed=13)
    mean, var = ref.batchnorm_stats(x)
    dx, _, _ = run(backend, "batchnorm_backward", g, x, gamma, mean, var, 0.0)
    np.testing.assert_allclose(dx.sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose((dx * (x - mean)).sum(axis=0), 0.0, atol=1e-11)


@pytest.mark.skipif(SIMULATOR, reason="cpu-only")
@pytest.mark.parametrize("nblocks", [2, 3, 7])
def test_cpu_column_blocks_match_one_block(dtype, nblocks):
    """The parallel drivers split the units into blocks; any split gives the same result
    (large batches take this path; the tests call it directly on a small one)."""
    from ddlib.backend.cpu import batchnorm as cpu

    x, g, gamma, beta = inputs((37, 300), dtype, seed=15)
    d = x.shape[1]
    one = cpu.batchnorm_forward(x, gamma, beta, 1e-5)
    out, mean, var = np.empty_like(x), np.empty(d, dtype), np.empty(d, dtype)
    cpu._fwd_par(x, gamma, beta, 1e-5, out, mean, var, nblocks)
    for a, b in zip((out, mean, var), one):
        np.testing.assert_array_equal(a, b)
    m2, v2 = np.empty(d, dtype), np.empty(d, dtype)
    cpu._stats_par(x, m2, v2, nblocks)
    np.testing.assert_array_equal(m2, mean)
    np.testing.assert_array_equal(v2, var)
    for recursive in (False, True):
        want = cpu._backward(g, x, gamma, mean, var, 1e-5, recursive, None, None, None)
        got = [np.empty_like(x), np.empty(d, dtype), np.empty(d, dtype)]
        cpu._bwd_par(g, x, gamma, mean, var, 1e-5, recursive, *got, nblocks)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_bad_shapes_are_named(backend):
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"gamma.*\(3,\).*\(2,\)"):
        run(backend, "batchnorm_forward", x, np.ones(2), np.zeros(3), 1e-5)
    with pytest.raises(ValueError, match=r"x must be a 2-D batch"):
        run(backend, "batchnorm_stats", np.ones(3))
    with pytest.raises(ValueError, match=r"g has shape \(4, 2\)"):
        run(backend, "batchnorm_backward", np.ones((4, 2)), x, np.ones(3), np.zeros(3),
            np.ones(3), 1e-5)


# --- the two backward forms are the same function ----------------------------------------


@settings(max_examples=60, deadline=None)
@given(m=st.integers(2, 12), d=st.integers(1, 5), seed=st.integers(0, 2**31 - 1),
       log_eps=st.floats(-8, 0), spread=st.floats(1e-2, 1e2))
def test_recursion_equals_closed_form(m, d, seed, log_eps, spread):
    """The chapter's recursion (Eqs. 3.62-3.65) and the closed form agree to rounding."""
    x, g, gamma, _ = inputs((m, d), np.float64, seed=seed % 1000)
    x = x * spread
    eps = 10.0 ** log_eps
    mean, var = ref.batchnorm_stats(x)
    a = ref.batchnorm_backward_recursive(g, x, gamma, mean, var, eps)
    b = ref.batchnorm_backward(g, x, gamma, mean, var, eps)
    scale = np.abs(g).max() * np.abs(gamma).max() / np.sqrt(var.min() + eps)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-9, atol=1e-11 * scale)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-12, atol=1e-13 * np.abs(g).sum())
    np.testing.assert_array_equal(a[2], b[2])


def test_closed_form_is_the_jacobian_transpose():
    """dL/dv equals J^T g with J the finite-difference Jacobian of the forward pass."""
    x, g, gamma, beta = inputs((4, 2), np.float64, seed=14)
    eps, h = 1e-2, 1e-6
    mean, var = ref.batchnorm_stats(x)
    dx, _, _ = ref.batchnorm_backward(g, x, gamma, mean, var, eps)
    est = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        diff = ref.batchnorm_forward(up, gamma, beta, eps)[0] - ref.batchnorm_forward(
            down, gamma, beta, eps)[0]
        est[idx] = (g * diff).sum() / (2 * h)
    np.testing.assert_allclose(dx, est, rtol=1e-7, atol=1e-9)
