"""Softmax cross-entropy (Eqs. 3.20-3.22) and squared error."""

import numpy as np
import pytest

from ddlib.gradcheck import numerical_gradient, relative_error
from ddlib.losses import MSE, SoftmaxCrossEntropy


def test_uniform_scores_give_log_k():
    loss = SoftmaxCrossEntropy()
    assert loss(np.zeros((3, 5)), np.array([0, 1, 4])) == pytest.approx(np.log(5))


def test_gradient_is_p_minus_y_over_n(backend):
    rng = np.random.default_rng(0)
    s = rng.normal(size=(4, 3))
    y = np.array([2, 0, 1, 2])
    loss = SoftmaxCrossEntropy()
    loss(backend.asarray(s), y)
    g = backend.to_numpy(loss.backward())
    p = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    expected = p.copy()
    expected[np.arange(4), y] -= 1
    np.testing.assert_allclose(g, expected / 4, rtol=1e-10, atol=1e-14)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(3, 4))
    y = np.array([1, 3, 0])
    loss = SoftmaxCrossEntropy()
    loss(s, y)
    g = loss.backward()
    est = numerical_gradient(lambda: loss.forward(s, y), s)
    assert relative_error(g, est).max() < 1e-7


@pytest.mark.parametrize("labels, match", [
    (np.array([0, 3]), r"must lie in \[0, 3\)"),
    (np.array([0, -1]), r"must lie in \[0, 3\)"),
    (np.array([0]), r"must have shape \(2,\)"),
    (np.array([0.0, 1.0]), "integer class indices"),
])
def test_bad_labels_are_rejected(labels, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SoftmaxCrossEntropy()(np.zeros((2, 3)), labels)


def test_mse_value_and_gradient():
    s = np.array([[1.0, 2.0], [0.0, -1.0]])
    t = np.array([[0.0, 2.0], [1.0, 1.0]])
    loss = MSE()
    assert loss(s, t) == pytest.approx(0.5 * (1 + 0 + 1 + 4) / 2)
    np.testing.assert_allclose(loss.backward(), (s - t) / 2)
    with pytest.raises(ValueError, match="targets have shape"):
        loss(s, t[:1])
