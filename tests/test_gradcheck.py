"""Gradient checking (Sec. 3.2.10): finite differences (Eq. 3.33), central differences, and
the relative ratio rho (Eq. 3.34) over a model's parameters."""

import numpy as np
import pytest

from ddlib.gradcheck import (
    KINK_THRESHOLD,
    SMOOTH_THRESHOLD,
    GradcheckReport,
    check_model,
    numerical_gradient,
    relative_error,
)
from ddlib.layers import Linear, Sequential, Tanh, mlp
from ddlib.losses import SoftmaxCrossEntropy
from tests.conftest import SIMULATOR


def test_relative_error_is_eq_3_34():
    ga = np.array([1.0, -2.0, 0.5])
    ge = np.array([1.1, -2.0, 0.4])
    np.testing.assert_allclose(relative_error(ga, ge), np.abs(ge - ga) / np.abs(ge + ga))
    assert relative_error(2.0, 2.0) == 0.0
    assert relative_error(1.0, 1.0 + 1e-7) == pytest.approx(1e-7 / 2.0000001)


def test_relative_error_is_scale_free_and_symmetric():
    rng = np.random.default_rng(0)
    ga = rng.normal(size=10)
    ge = ga * (1 + 1e-4 * rng.normal(size=10))
    r = relative_error(ga, ge)
    np.testing.assert_allclose(relative_error(1e6 * ga, 1e6 * ge), r, rtol=1e-9)
    np.testing.assert_allclose(relative_error(ge, ga), r, rtol=1e-12)


def test_relative_error_edge_cases():
    # both zero: agreement; one zero and the other not: total disagreement
    assert relative_error(0.0, 0.0) == 0.0
    assert relative_error(0.0, 1e-3) == 1.0
    # opposite signs of equal size: the denominator vanishes, which counts as a failure
    assert relative_error(1.0, -1.0) >= 1.0


def test_chapter_thresholds():
    assert SMOOTH_THRESHOLD == 1e-6 and KINK_THRESHOLD == 1e-3


def _sin_sum(x):
    return lambda: float(np.sum(np.sin(x)))


@pytest.mark.parametrize("method", ["forward", "central"])
def test_numerical_gradient_restores_x_and_respects_index(method):
    x = np.linspace(-1, 1, 6)
    x0 = x.copy()
    g = numerical_gradient(_sin_sum(x), x, eps=1e-6, method=method, index=[1, 4])
    np.testing.assert_array_equal(x, x0)
    assert np.isnan(g[[0, 2, 3, 5]]).all()
    np.testing.assert_allclose(g[[1, 4]], np.cos(x0[[1, 4]]), rtol=1e-5)


def test_forward_error_is_first_order_and_central_second_order():
    # Eq. 3.33's error is about f''(x) eps / 2; the central difference's f'''(x) eps^2 / 6
    x = np.array([0.3, 1.1, -0.7])
    exact = np.cos(x)
    for eps in (1e-2, 1e-3):
        fwd = numerical_gradient(_sin_sum(x), x, eps=eps, method="forward") - exact
        cen = numerical_gradient(_sin_sum(x), x, eps=eps, method="central") - exact
        np.testing.assert_allclose(fwd, -np.sin(x) * eps / 2, rtol=0.02)
        np.testing.assert_allclose(cen, -np.cos(x) * eps**2 / 6, rtol=0.02)
    # at a practical step the central estimate is orders of magnitude better
    fwd = numerical_gradient(_sin_sum(x), x, eps=1e-5, method="forward") - exact
    cen = numerical_gradient(_sin_sum(x), x, eps=1e-5, method="central") - exact
    assert np.abs(cen).max() < 1e-3 * np.abs(fwd).max()


def test_numerical_gradient_bad_method():
    with pytest.raises(ValueError, match="method must be 'central' or 'forward', got 'back'"):
        numerical_gradient(lambda: 0.0, np.zeros(2), method="back")


def _problem(seed=0, n=5):
    rng = np.random.default_rng(seed)
    net = mlp([4, 6, 3], activation="tanh", rng=rng)
    return net, rng.normal(size=(n, 4)), rng.integers(0, 3, n)


def test_check_model_passes_a_correct_model_and_reports():
    net, x, y = _problem()
    report = check_model(net, SoftmaxCrossEntropy(), x, y, eps=1e-5)
    assert isinstance(report, GradcheckReport)
    assert report.passed and report.worst_rho < SMOOTH_THRESHOLD
    assert report.n_checked == 4 * 6 + 6 + 6 * 3 + 3
    assert set(report.per_param) == {"0.W", "0.b", "2.W", "2.b"}
    assert max(report.per_param.values()) == report.worst_rho
    name, _, idx = report.where.partition("[")
    assert name in report.per_param and idx.rstrip("]").isdigit()
    assert "PASS" in repr(report)


def test_check_model_leaves_parameters_unchanged():
    net, x, y = _problem(1)
    before = {k: v.copy() for k, v in net.params.items()}
    check_model(net, SoftmaxCrossEntropy(), x, y, eps=1e-5, check_input=True)
    for k, v in net.params.items():
        np.testing.assert_array_equal(v, before[k])


def test_check_model_catches_a_broken_backward_and_says_where():
    class BrokenTanh(Tanh):
        def backward(self, g, need_dx=True):
            x, y = self._cache
            return g * (1 - y)  # forgot to square: 1 - y instead of 1 - y^2

    rng = np.random.default_rng(2)
    net = Sequential(Linear(4, 6, rng=rng), BrokenTanh(), Linear(6, 3, rng=rng))
    x, y = rng.normal(size=(5, 4)), rng.integers(0, 3, 5)
    report = check_model(net, SoftmaxCrossEntropy(), x, y, eps=1e-5)
    assert not report.passed and report.worst_rho > KINK_THRESHOLD
    assert report.where.startswith("0.")  # below the broken layer
    assert report.per_param["2.W"] < SMOOTH_THRESHOLD  # above it all is well
    assert "FAIL" in repr(report)


def test_check_model_checks_the_input_gradient():
    class DropsInputGrad(Linear):
        def backward(self, g, need_dx=True):
            dx = super().backward(g, need_dx)
            return None if dx is None else 0.5 * dx

    rng = np.random.default_rng(3)
    net = Sequential(DropsInputGrad(4, 3, rng=rng))
    x, y = rng.normal(size=(3, 4)), rng.integers(0, 3, 3)
    assert check_model(net, SoftmaxCrossEntropy(), x, y, eps=1e-5).passed
    report = check_model(net, SoftmaxCrossEntropy(), x, y, eps=1e-5, check_input=True)
    assert not report.passed and report.where.startswith("input")
    assert report.n_checked == 4 * 3 + 3 + x.size


def test_check_model_samples_are_seeded():
    net, x, y = _problem(4)
    a = check_model(net, SoftmaxCrossEntropy(), x, y, eps=1e-5, n_samples=3, seed=7)
    b = check_model(net, SoftmaxCrossEntropy(), x, y, eps=1e-5, n_samples=3, seed=7)
    assert a.n_checked == 3 + 3 + 3 + 3  # b vectors of size 6 and 3 give 3 each
    assert (a.worst_rho, a.where) == (b.worst_rho, b.where)
    assert a.passed


def test_forward_differences_need_the_looser_threshold():
    # with Eq. 3.33's one-sided estimate the ratio is far above central differences' own
    net, x, y = _problem(5)
    central = check_model(net, SoftmaxCrossEntropy(), x, y, eps=1e-5)
    forward = check_model(net, SoftmaxCrossEntropy(), x, y, eps=1e-5, method="forward")
    assert forward.worst_rho > 100 * central.worst_rho


def test_check_model_on_every_backend(backend):
    n, d = (2, 2) if SIMULATOR else (5, 4)
    rng = np.random.default_rng(6)
    net = mlp([d, 3, 2], activation="sigmoid", rng=rng).to(backend.name)
    x, y = rng.normal(size=(n, d)), rng.integers(0, 2, n)
    report = check_model(net, SoftmaxCrossEntropy(), x, y, eps=1e-5,
                         n_samples=1 if SIMULATOR else None)
    assert report.passed, report


def test_atol_forgives_only_noise_sized_disagreements():
    net = mlp([3, 4, 2], activation="tanh", rng=0)
    x = np.random.default_rng(0).normal(size=(4, 3))
    y = np.array([0, 1, 1, 0])
    plain = check_model(net, SoftmaxCrossEntropy(), x, y)
    forgiving = check_model(net, SoftmaxCrossEntropy(), x, y, atol=1e-9)
    assert forgiving.worst_rho <= plain.worst_rho
    # a real error is far above any noise level and still fails
    orig = net[0].backward

    def broken(g, need_dx=True):
        dx = orig(g, need_dx)
        net[0].grads["W"][0, 0] *= 1.5
        return dx

    net[0].backward = broken
    assert not check_model(net, SoftmaxCrossEntropy(), x, y, atol=1e-9).passed
