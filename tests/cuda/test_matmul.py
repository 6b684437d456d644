"""The three cuda matmuls against numpy_ref on tiny odd shapes (simulator-sized)."""

import numpy as np
import pytest

from ddlib.backend.numpy_ref import core as ref
from tests.conftest import tol

pytestmark = pytest.mark.cuda

# (n, k, m): 1s, primes, and sizes that are not multiples of any tile edge
SHAPES = [(1, 1, 1), (3, 5, 2), (9, 4, 13)]
# small register-blocking geometries (16 threads) so the simulator stays quick;
# the second is rectangular (8 x 16 outputs per block, 2 x 4 per thread)
SMALL = [(4, 4, 2, 2, 2), (8, 16, 4, 2, 4)]


def rand(shape, dtype, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def mm():
    from ddlib.backend.cuda import matmul

    return matmul


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", ["naive", "tiled"])
def test_naive_and_tiled_match_reference(cuda_be, dtype, shape, method):
    n, k, m = shape
    a, b = rand((n, k), dtype, 1), rand((k, m), dtype, 2)
    got = mm().matmul(cuda_be.asarray(a), cuda_be.asarray(b), method=method).copy_to_host()
    assert got.dtype == dtype and got.shape == (n, m)
    np.testing.assert_allclose(got, ref.matmul(a, b), **tol(dtype))


@pytest.mark.parametrize("shape", SHAPES + [(10, 11, 17)])
@pytest.mark.parametrize("config", SMALL)
def test_blocked_matches_reference(cuda_be, dtype, shape, config):
    n, k, m = shape
    a, b = rand((n, k), dtype, 3), rand((k, m), dtype, 4)
    got = mm().matmul_blocked(cuda_be.asarray(a), cuda_be.asarray(b), config=config)
    np.testing.assert_allclose(got.copy_to_host(), ref.matmul(a, b), **tol(dtype))


def test_blocked_default_geometry_on_one_block(cuda_be, dtype):
    # the production geometry (128 x 128 or 64 x 64 outputs per block) on a shape that
    # leaves most of the block idle and needs several k-steps
    a, b = rand((7, 19), dtype, 5), rand((19, 6), dtype, 6)
    got = mm().matmul_blocked(cuda_be.asarray(a), cuda_be.asarray(b))
    np.testing.assert_allclose(got.copy_to_host(), ref.matmul(a, b), **tol(dtype))


def test_naive_block_shape_and_out_buffer(cuda_be):
    a, b = rand((5, 3), np.float64, 7), rand((3, 9), np.float64, 8)
    out = cuda_be.asarray(np.full((5, 9), np.nan))
    res = mm().matmul_naive(cuda_be.asarray(a), cuda_be.asarray(b), out=out, threads=(4, 2))
    assert res is out
    np.testing.assert_allclose(out.copy_to_host(), a @ b, **tol(np.float64))


def test_transposed_views_and_k_zero(cuda_be):
    a, b = rand((4, 6), np.float32, 9), rand((4, 5), np.float32, 10)
    da, db = cuda_be.asarray(a), cuda_be.asarray(b)
    for method in ("naive", "tiled"):
        got = mm().matmul(da.T, db, method=method).copy_to_host()
        np.testing.assert_allclose(got, a.T @ b, **tol(np.float32))
    got = mm().matmul_blocked(da.T, db, config=SMALL[0]).copy_to_host()
    np.testing.assert_allclose(got, a.T @ b, **tol(np.float32))
    empty_k = mm().matmul(cuda_be.asarray(np.ones((3, 0))), cuda_be.asarray(np.ones((0, 2))))
    np.testing.assert_array_equal(empty_k.copy_to_host(), np.zeros((3, 2)))



@pytest.mark.parametrize("ta, tb", [(True, False), (False, True)], ids=["TN", "NT"])
@pytest.mark.parametrize("method, shape, config", [
    ("tiled", (3, 5, 2), None), ("tiled", (17, 19, 18), None),  # > one 16 x 16 tile
    ("blocked", (10, 11, 17), SMALL[1]), ("blocked", (7, 19, 6), None)])
def test_transposed_operands_are_read_in_place(cuda_be, dtype, ta, tb, method, shape, config):
    """A stored as (k, n) or B as (m, k): the kernels read them without a transposed copy."""
    n, k, m = shape
    A, B = rand((n, k), dtype, 13), rand((k, m), dtype, 14)
    a = np.ascontiguousarray(A.T) if ta else A
    b = np.ascontiguousarray(B.T) if tb else B
    kw = dict(trans_a=ta, trans_b=tb) | ({"config": config} if config else {})
    fn = mm().matmul_blocked if method == "blocked" else mm().matmul_tiled
    got = fn(cuda_be.asarray(a), cuda_be.asarray(b), **kw).copy_to_host()
    assert got.shape == (n, m)
    np.testing.assert_allclose(got, A @ B, **tol(dtype))


def test_transposed_operand_errors(cuda_be):
    m = mm()
    a = cuda_be.asarray(np.ones((3, 2)))
    with pytest.raises(ValueError, match="trans_a and trans_b together"):
        m.matmul(a, a, trans_a=True, trans_b=True)
    with pytest.raises(ValueError, match="naive reads its operands as stored"):
        m.matmul(a, a, method="naive", trans_a=True)
    with pytest.raises(ValueError, match=r"inner dimensions differ: a\^T is \(2, 3\), b is \(2, 2\)"):
        m.matmul_tiled(a, cuda_be.asarray(np.ones((2, 2))), trans_a=True)

def test_core_matmul_runs_the_chosen_kernel(cuda_be):
    m = mm()
    assert m.choose_method(64, 64, 64, np.float32) == "tiled"
    assert m.choose_method(4096, 4096, 4096, np.float32) == "blocked"
    assert m.choose_method(512, 8, 256, np.float64) == "blocked"  # 8 x 4 = 32 tiles of 64
    assert m.choose_method(448, 8, 256, np.float64) == "tiled"  # 7 x 4 = 28
    assert m.choose_method(1024, 784, 512, np.float32) == "blocked"  # 8 x 4 tiles of 128
    a, b = rand((6, 5), np.float32, 11), rand((5, 7), np.float32, 12)
    got = cuda_be.matmul(cuda_be.asarray(a), cuda_be.asarray(b)).copy_to_host()
    np.testing.assert_allclose(got, a @ b, **tol(np.float32))


def test_operand_errors_are_clear(cuda_be):
    m = mm()
    a32 = cuda_be.asarray(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match=r"matmul_tiled: b is a host ndarray of shape \(3, 2\)"):
        m.matmul_tiled(a32, np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="a is float32 but b is float64"):
        m.matmul(a32, cuda_be.asarray(np.ones((3, 2))))
    with pytest.raises(ValueError, match=r"inner dimensions differ: a is \(2, 3\), b is \(2, 2\)"):
        m.matmul_naive(a32, cuda_be.asarray(np.ones((2, 2), np.float32)))
    with pytest.raises(TypeError, match="float32 or float64"):
        m.matmul(cuda_be.asarray(np.ones((2, 2), np.int32)), cuda_be.asarray(np.ones((2, 2), np.int32)))
    with pytest.raises(ValueError, match="out has shape"):
        m.matmul(a32, cuda_be.asarray(np.ones((3, 2), np.float32)),
                 out=cuda_be.asarray(np.ones((3, 3), np.float32)))
    with pytest.raises(ValueError, match="method='strassen'"):
        m.matmul(a32, a32.T, method="strassen")


def test_block_config_validation():
    from ddlib.backend.cuda.matmul import BlockConfig, launch_plan

    with pytest.raises(ValueError, match="multiple of tm"):
        BlockConfig(10, 8, 4, 4, 2).validate()
    with pytest.raises(ValueError, match="threads per block = 4096"):
        BlockConfig(64, 64, 8, 1, 1).validate()
    with pytest.raises(ValueError, match="bm\\*bk and bk\\*bn"):
        BlockConfig(8, 8, 1, 1, 1).validate()  # 64 threads, 8 A-elements per k-step
    with pytest.raises(ValueError, match=">= 1"):
        BlockConfig(8, 8, 0, 1, 1).validate()
    plan = launch_plan("blocked", 100, 200, config=BlockConfig(8, 16, 4, 2, 4))
    assert plan.threads == (4, 4) and plan.blocks == (13, 13)
    with pytest.raises(ValueError, match="threads="):
        launch_plan("naive", 10, 10, threads=(64, 64))
