"""linear_cg: Eqs. 3.49-3.50 for H x = b, finite termination, truncation on negative curvature."""

import numpy as np
import pytest

from ddlib.optim.second_order import linear_cg


def _spd(d, eigenvalues, seed):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    H = (Q * eigenvalues) @ Q.T
    return (H + H.T) / 2, rng.standard_normal(d)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exactly_k_iterations_for_k_distinct_eigenvalues(k, seed):
    d = 40
    eig = np.repeat(np.linspace(1.0, 20.0, k), -(-d // k))[:d]
    H, b = _spd(d, eig, seed)
    res = linear_cg(H, b, tol=1e-10)
    bn = np.linalg.norm(b)
    assert res.success and res.reason == "converged"
    assert res.nit == k
    assert res.residuals[k] <= 1e-10 * bn
    assert res.residuals[k - 1] > 1e-10 * bn      # not done one step earlier
    np.testing.assert_allclose(res.x, np.linalg.solve(H, b), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("d", [2, 5, 10, 20])
def test_at_most_d_iterations_in_general(d):
    for seed in range(10):
        H, b = _spd(d, np.random.default_rng(100 + seed).uniform(1.0, 100.0, d), seed)
        res = linear_cg(H, b, tol=1e-10)
        assert res.success and res.nit <= d, (seed, res.nit)
        np.testing.assert_allclose(H @ res.x, b, rtol=0, atol=1e-8 * np.linalg.norm(b))


def test_directions_are_conjugate_and_beta_is_eq_3_50():
    d = 12
    H, b = _spd(d, np.linspace(1.0, 30.0, d), 7)
    res = linear_cg(H, b, tol=1e-12)
    Q = res.directions
    C = Q @ H @ Q.T
    off = C - np.diag(np.diag(C))
    assert np.max(np.abs(off)) <= 1e-8 * np.max(np.abs(np.diag(C)))   # q_i^T H q_j = 0
    # Eq. 3.50 with the chapter's gradient grad L(x) = H x - b:
    # q_{t+1} = -grad L(x_{t+1}) + beta_t q_t,  beta_t = q_t^T H grad L(x_{t+1}) / q_t^T H q_t
    for t in range(len(Q) - 1):
        grad = H @ res.iterates[t + 1] - b
        beta = Q[t] @ H @ grad / (Q[t] @ H @ Q[t])
        np.testing.assert_allclose(Q[t + 1], -grad + beta * Q[t], rtol=1e-7, atol=1e-9)
    # the quadratic model 1/2 x^T H x - b^T x never rises along the iterates
    model = [0.5 * x @ H @ x - b @ x for x in res.iterates]
    assert np.all(np.diff(model) <= 1e-12)


def test_product_function_matches_matrix_and_counts_products():
    H, b = _spd(15, np.linspace(1.0, 50.0, 15), 3)
    calls = []

    def product(v):
        calls.append(v.dtype)
        return H @ v

    a = linear_cg(H, b, tol=1e-10)
    f = linear_cg(product, b, tol=1e-10)
    assert f.nit == a.nit == len(calls)
    np.testing.assert_allclose(f.x, a.x, rtol=1e-12, atol=1e-14)


def test_x0_and_zero_right_hand_side():
    H, b = _spd(6, np.linspace(1.0, 5.0, 6), 0)
    exact = np.linalg.solve(H, b)
    res = linear_cg(H, b, x0=exact + 1e-3, tol=1e-12)
    np.testing.assert_allclose(res.x, exact, rtol=1e-9)
    zero = linear_cg(H, np.zeros(6))
    assert zero.nit == 0 and zero.success and np.all(zero.x == 0)


def test_preconditioner_as_diagonal_matrix_or_function_agree_and_help():
    rng = np.random.default_rng(5)
    d = 60
    scale = np.logspace(0, 4, d)                  # badly scaled: Jacobi fixes most of it
    B, _ = _spd(d, rng.uniform(1.0, 3.0, d), 5)
    H = np.sqrt(scale)[:, None] * B * np.sqrt(scale)[None, :]
    b = rng.standard_normal(d)
    plain = linear_cg(H, b, tol=1e-8, maxiter=2000)
    inv_diag = 1.0 / np.diag(H)
    by_diag = linear_cg(H, b, tol=1e-8, M=inv_diag)
    by_fn = linear_cg(H, b, tol=1e-8, M=lambda r: inv_diag * r)
    by_mat = linear_cg(H, b, tol=1e-8, M=np.diag(inv_diag))
    assert by_diag.success and by_diag.nit == by_fn.nit == by_mat.nit
    assert by_diag.nit < plain.nit / 3
    np.testing.assert_allclose(by_diag.x, np.linalg.solve(H, b), rtol=1e-5)


def test_negative_curvature_stops_with_flag_and_keeps_iterates():
    H = np.diag([3.0, 1.0, -2.0])
    b = np.array([1.0, 1.0, 1.0])
    res = linear_cg(H, b, tol=1e-12)
    assert res.negative_curvature and res.reason == "negative_curvature" and not res.success
    q = res.negative_curvature_direction
    assert q @ H @ q <= 0
    assert res.curvatures[-1] <= 0 and np.all(res.curvatures[:-1] > 0)
    np.testing.assert_array_equal(res.x, res.iterates[-1])
    assert len(res.iterates) == res.nit + 1
    assert "curvature" in res.message


def test_negative_curvature_raise():
    with pytest.raises(ValueError, match="not positive definite"):
        linear_cg(np.diag([1.0, -1.0]), np.array([1.0, 1.0]), on_negative_curvature="raise")
    with pytest.raises(ValueError, match="on_negative_curvature"):
        linear_cg(np.eye(2), np.ones(2), on_negative_curvature="ignore")


def test_maxiter_and_dtype():
    H, b = _spd(20, np.linspace(1.0, 100.0, 20), 1)
    res = linear_cg(H, b, tol=1e-12, maxiter=3)
    assert res.reason == "maxiter" and res.nit == 3 and not res.success
    res32 = linear_cg(H.astype(np.float32), b.astype(np.float32), tol=1e-5)
    assert res32.x.dtype == np.float32 and res32.iterates.dtype == np.float32
    np.testing.assert_allclose(res32.x, np.linalg.solve(H, b), rtol=1e-3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(H=np.array([[1.0, 2.0], [0.0, 1.0]])), "symmetric"),
    (dict(H=np.eye(3)), "shape"),
    (dict(maxiter=-1), "maxiter"),
    (dict(tol=-1.0), "tol"),
    (dict(b=np.array([1.0, np.nan])), "b"),
    (dict(M=np.array([1.0, -1.0])), "M"),
])
def test_bad_input(kwargs, match):
    args = dict(H=np.eye(2), b=np.ones(2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        linear_cg(args.pop("H"), args.pop("b"), **args)
