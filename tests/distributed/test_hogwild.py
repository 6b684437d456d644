"""Hogwild: serial exactness, 2 lock-free threads match the serial loss, the sparse
problem generator, input checks.  No Ray here."""

import numpy as np
import pytest

import ddlib.distributed.hogwild as hw


@pytest.fixture(scope="module")
def problem():
    return hw.make_sparse_problem(20_000, 2_000, nnz_per_row=10, noise=0.1, seed=0)


def _python_sgd(X, y, epochs, lr, seed):
    """Plain SGD in pure Python floats, rows in the order hogwild's docstring promises."""
    rng = np.random.default_rng(seed)
    n, d = X.shape
    w = [0.0] * d
    data, ind, ptr = X.data.tolist(), X.indices.tolist(), X.indptr.tolist()
    yl = y.tolist()
    for _ in range(epochs):
        for i in rng.permutation(n).tolist():
            s = 0.0
            for p in range(ptr[i], ptr[i + 1]):
                s += data[p] * w[ind[p]]
            g = lr * (s - yl[i])
            for p in range(ptr[i], ptr[i + 1]):
                w[ind[p]] -= g * data[p]
    return np.array(w)


def test_one_thread_is_plain_sgd_bit_for_bit():
    X, y, _ = hw.make_sparse_problem(400, 60, nnz_per_row=5, seed=3)
    w, hist = hw.hogwild(X, y, threads=1, epochs=3, lr=0.03, seed=11)
    ref = _python_sgd(X, y, epochs=3, lr=0.03, seed=11)
    np.testing.assert_array_equal(w, ref)
    assert hist["loss"].shape == (4,) and hist["seconds"].shape == hist["cpu_seconds"].shape == (3,)
    assert hist["loss"][-1] == hw.loss(X, y, ref)
    assert hist["loss"][0] == pytest.approx(0.5 * np.mean(y ** 2), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_threads_reach_the_serial_loss(problem, seed):
    X, y, w_true = problem
    _, serial = hw.hogwild(X, y, threads=1, epochs=3, lr=0.01, seed=seed)
    _, par = hw.hogwild(X, y, threads=2, epochs=3, lr=0.01, seed=seed)
    # serial runs with different seeds end within 0.3% of each other; a thread working
    # on a private copy, or losing many writes, would be far off (half the data per epoch)
    assert serial["loss"][-1] < 0.01 * serial["loss"][0]
    assert par["loss"][-1] <= 1.02 * serial["loss"][-1]
    assert par["loss"][-1] >= 0.98 * serial["loss"][-1]
    assert np.all(np.diff(par["loss"]) < 0)


def test_target_loss_stops_early(problem):
    X, y, _ = problem
    _, full = hw.hogwild(X, y, threads=2, epochs=4, lr=0.01, seed=5)
    target = full["loss"][2]
    _, hist = hw.hogwild(X, y, threads=1, epochs=10, lr=0.01, seed=5, target_loss=target * 1.5)
    assert hist["loss"][-1] <= target * 1.5 and len(hist["loss"]) < 11
    assert np.all(hist["loss"][1:-1] > target * 1.5)


def test_scipy_input_and_w0(problem):
    X, y, w_true = problem
    Xs = X.to_scipy()
    w_a, h_a = hw.hogwild(X, y, threads=1, epochs=1, lr=0.01, seed=2)
    w_b, h_b = hw.hogwild(Xs.tocsc(), y, threads=1, epochs=1, lr=0.01, seed=2)
    np.testing.assert_array_equal(w_a, w_b)
    w0 = w_true.copy()
    w_c, h_c = hw.hogwild(X, y, threads=1, epochs=1, lr=0.01, seed=2, w0=w0)
    np.testing.assert_array_equal(w0, w_true)                # the caller's w0 untouched
    assert h_c["loss"][0] == pytest.approx(hw.loss(X, y, w_true))
    assert h_c["loss"][0] < 2 * 0.5 * 0.1 ** 2               # the noise floor, ~noise^2/2


def test_sparse_problem_has_distinct_columns_and_consistent_targets():
    X, y, w_true = hw.make_sparse_problem(3_000, 50, nnz_per_row=8, noise=0.0, seed=4)
    cols = X.indices.reshape(3_000, 8)
    assert np.all(np.diff(cols, axis=1) > 0)                 # sorted and distinct per row
    assert X.shape == (3_000, 50) and X.indptr[-1] == 24_000
    np.testing.assert_allclose(X.to_scipy() @ w_true, y, rtol=1e-12, atol=1e-12)
    X2, y2, _ = hw.make_sparse_problem(3_000, 50, nnz_per_row=8, noise=0.0, seed=4)
    np.testing.assert_array_equal(X2.indices, X.indices)
    np.testing.assert_array_equal(y2, y)


def test_bad_inputs_are_named():
    X, y, _ = hw.make_sparse_problem(50, 10, nnz_per_row=3, seed=0)
    with pytest.raises(ValueError, match="threads"):
        hw.hogwild(X, y, threads=0)
    with pytest.raises(TypeError, match="epochs"):
        hw.hogwild(X, y, epochs=1.5)
    with pytest.raises(ValueError, match="lr"):
        hw.hogwild(X, y, lr=-1)
    with pytest.raises(ValueError, match=r"y must have shape \(50,\)"):
        hw.hogwild(X, y[:-1])
    with pytest.raises(ValueError, match="w0"):
        hw.hogwild(X, y, w0=np.zeros(9))
    with pytest.raises(TypeError, match="CSR"):
        hw.hogwild(np.ones((50, 10)), y)
    bad = hw.CSR(X.data, X.indices + 10, X.indptr, X.shape)
    with pytest.raises(ValueError, match="indices"):
        hw.hogwild(bad, y)
    with pytest.raises(ValueError, match="nnz_per_row=11 exceeds d=10"):
        hw.make_sparse_problem(5, 10, nnz_per_row=11)
    with pytest.raises(FloatingPointError, match="lower lr"):
        hw.hogwild(X, y, lr=1e3, epochs=3)
