"""Max, FunctionLayer, Softmax and CrossEntropy (Table 3.1, Sec. 3.2.5, Exercise 10)."""

import doctest

import numpy as np
import pytest

import ddlib.layers.special as special
from ddlib.layers import (
    CrossEntropy,
    FunctionLayer,
    Linear,
    Max,
    Sequential,
    Softmax,
    Tanh,
)
from ddlib.losses import SoftmaxCrossEntropy
from tests.conftest import tol


def host(be, a):
    return be.to_numpy(a)


def test_docstring_examples():
    assert doctest.testmod(special).failed == 0


# ------------------------------------------------------------------------- Max


def test_max_forward_picks_group_maxima(backend, dtype):
    x = np.array([[1.0, 5.0, 2.0, 0.0, -1.0, -3.0], [4.0, 3.0, 9.0, 8.0, 0.5, 0.25]], dtype)
    layer = Max(2)
    out = host(backend, layer(backend.asarray(x)))
    np.testing.assert_array_equal(out, x.reshape(2, 3, 2).max(axis=2))
    assert out.dtype == dtype


def test_max_backward_routes_gradient_to_the_winner_only(backend, dtype):
    x = np.array([[1.0, 5.0, 2.0, -2.0, -3.0, -1.0]], dtype)
    layer = Max(3)
    layer(backend.asarray(x))
    g = np.array([[10.0, 20.0]], dtype)
    dx = host(backend, layer.backward(backend.asarray(g)))
    np.testing.assert_array_equal(dx, np.array([[0, 10, 0, 0, 0, 20]], dtype))


def test_max_matches_finite_differences_away_from_ties():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 12))
    layer = Max(4)
    g = rng.normal(size=(4, 3))
    layer(x)
    dx = layer.backward(g)
    eps = 1e-6
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num = np.sum((layer(xp) - layer(xm)) * g) / (2 * eps)
        assert num == pytest.approx(dx[idx], abs=1e-8)


def test_max_rejects_width_not_multiple_of_k():
    with pytest.raises(ValueError, match=r"Max: input width 5 \(shape \(2, 5\)\).*k=2"):
        Max(2)(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="k must be >= 1"):
        Max(0)


def test_max_rejects_gradient_of_wrong_shape():
    layer = Max(2)
    layer(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"Max: upstream gradient has shape \(3, 4\).*\(3, 2\)"):
        layer.backward(np.zeros((3, 4)))


# --------------------------------------------------------------- FunctionLayer


def _sigmoid_as_function():
    f = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    return f, lambda v: np.diag(f(v) * (1 - f(v)))


def test_function_layer_with_a_diagonal_jacobian_equals_the_elementwise_rule(backend):
    # Exercise 5: sigmoid as a 'general function' has a diagonal Jacobian, and
    # J^T g reduces to the elementwise g * o (1 - o) of Table 3.1
    rng = np.random.default_rng(1)
    x, g = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    layer = FunctionLayer(*_sigmoid_as_function())
    o = host(backend, layer(backend.asarray(x)))
    dx = host(backend, layer.backward(backend.asarray(g)))
    np.testing.assert_allclose(o, 1 / (1 + np.exp(-x)), rtol=1e-12)
    np.testing.assert_allclose(dx, g * o * (1 - o), rtol=1e-12)


def test_function_layer_many_to_many_uses_the_transpose():
    # f(v) = A v has Jacobian A, so backward must return g A (i.e. A^T g per row)
    rng = np.random.default_rng(2)
    A = rng.normal(size=(3, 5))
    layer = FunctionLayer(lambda v: A @ v, lambda v: A)
    x, g = rng.normal(size=(4, 5)), rng.normal(size=(4, 3))
    np.testing.assert_allclose(layer(x), x @ A.T, rtol=1e-12)
    np.testing.assert_allclose(layer.backward(g), g @ A, rtol=1e-12)


def test_function_layer_bad_jacobian_shape_names_layer_and_shapes():
    layer = FunctionLayer(lambda v: v[:2], lambda v: np.eye(3), name="crop")
    layer(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"crop: jacobian returned shape \(3, 3\).*\(2, 3\)"):
        layer.backward(np.ones((2, 2)))


def test_function_layer_checks_width_and_callables():
    layer = FunctionLayer(lambda v: v, lambda v: np.eye(v.size), d_in=3)
    with pytest.raises(ValueError, match=r"FunctionLayer: input has 4 features .*expects 3"):
        layer(np.ones((2, 4)))
    with pytest.raises(TypeError, match="callables"):
        FunctionLayer(np.sin, None)
    with pytest.raises(ValueError, match="NaN or inf"):
        layer(np.array([[1.0, np.nan, 0.0]]))


# --------------------------------------------------------------------- Softmax


def test_softmax_jacobian_entries_are_exercise_10s():
    o = np.array([[0.2, 0.3, 0.5]])
    J = special.softmax_jacobian(o)[0]
    for i in range(3):
        for j in range(3):
            want = o[0, i] * (1 - o[0, i]) if i == j else -o[0, i] * o[0, j]
            assert J[i, j] == pytest.approx(want, abs=1e-15)


def test_softmax_jacobian_matches_finite_differences():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(1, 4))
    o = special.softmax_jacobian(Softmax()(v))[0]
    eps = 1e-6
    num = np.empty((4, 4))
    for j in range(4):
        vp, vm = v.copy(), v.copy()
        vp[0, j] += eps
        vm[0, j] -= eps
        num[:, j] = ((Softmax()(vp) - Softmax()(vm)) / (2 * eps))[0]
    np.testing.assert_allclose(o, num, atol=1e-9)


def test_softmax_then_cross_entropy_equals_the_fused_loss(backend, dtype):
    # Eq. 3.22: the Jacobian route through Softmax + CrossEntropy gives (o - y)/n
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(6, 5)).astype(dtype)
    labels = rng.integers(0, 5, 6)
    fused = SoftmaxCrossEntropy()
    value_fused = fused(backend.asarray(scores), labels)
    grad_fused = host(backend, fused.backward())

    sm, ce = Softmax(), CrossEntropy()
    value = ce(sm(backend.asarray(scores)), labels)
    grad = host(backend, sm.backward(ce.backward()))

    t = tol(dtype)
    assert value == pytest.approx(value_fused, rel=t["rtol"] * 10)
    np.testing.assert_allclose(grad, grad_fused, rtol=t["rtol"] * 10, atol=t["atol"] * 10)
    o = host(backend, sm._cache)
    y = np.eye(5, dtype=dtype)[labels]
    np.testing.assert_allclose(grad, (o - y) / 6, rtol=t["rtol"] * 10, atol=t["atol"] * 10)


def test_cross_entropy_value_and_gradient():
    p = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    ce = CrossEntropy()
    assert ce(p, np.array([0, 2])) == pytest.approx(-(np.log(0.5) + np.log(0.8)) / 2)
    dp = ce.backward()
    np.testing.assert_allclose(dp, [[-1 / (2 * 0.5), 0, 0], [0, 0, -1 / (2 * 0.8)]])


def test_cross_entropy_bad_input():
    ce = CrossEntropy()
    p = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\).*from 0 to 3"):
        ce(p, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        ce(p, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="expected probabilities in \\[0, 1\\]"):
        ce(np.array([[2.0, -1.0]]), np.array([0]))
    with pytest.raises(ValueError, match=r"shape \(1, 2\) contain NaN"):
        ce(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(RuntimeError, match="before forward"):
        CrossEntropy().backward()


def test_shape_mismatch_between_layers_names_the_layer_and_shapes():
    net = Sequential(Linear(6, 6, rng=0), Max(2), Tanh(), Linear(6, 2, rng=0, name="head"))
    with pytest.raises(ValueError, match=r"head: input has 3 features per row \(shape \(4, 3\)\)"
                                          r" but the layer expects 6"):
        net(np.ones((4, 6)))


def test_non_finite_input_is_rejected_by_name():
    with pytest.raises(ValueError, match="Softmax: input batch contains NaN or inf"):
        Softmax()(np.array([[0.0, np.inf]]))
    with pytest.raises(ValueError, match="Max: input batch contains NaN"):
        Max(2)(np.array([[np.nan, 0.0]]))
