"""Regression tests for issue 13's strict-input defects: the gradient checker, the data
helpers, losses, integer batches given to layers, weight dtypes, DDLIB_BACKEND, and the
path count of the pathwise derivative."""

import os
import subprocess
import sys

import numpy as np
import pytest

import ddlib
from ddlib import data, init
from ddlib.chapter import graph as G
from ddlib.gradcheck import check_model, numerical_gradient
from ddlib.layers import LeakyReLU, Linear, Sequential, Sigmoid, Softmax, Tanh, mlp
from ddlib.losses import MSE, SoftmaxCrossEntropy

CPU_BACKENDS = ["numpy", "cpu"]


# ------------------------------------------------------------------ 1. gradient checker


def test_numerical_gradient_perturbs_a_transposed_array_in_place():
    base = np.arange(1.0, 7.0).reshape(2, 3)
    x = base.T  # a non-contiguous view: reshape(-1) would give a copy
    assert not x.flags.c_contiguous
    g = numerical_gradient(lambda: float(np.sum(x ** 3)), x)
    np.testing.assert_allclose(g, 3 * x ** 2, rtol=1e-8)
    np.testing.assert_array_equal(base, np.arange(1.0, 7.0).reshape(2, 3))  # restored


def test_numerical_gradient_on_a_strided_slice_with_index():
    buf = np.linspace(-1, 1, 12)
    x = buf[::2]
    g = numerical_gradient(lambda: float(np.sum(np.sin(x))), x, index=[1, 4])
    np.testing.assert_allclose(g[[1, 4]], np.cos(x[[1, 4]]), rtol=1e-8)
    assert np.isnan(g[[0, 2, 3, 5]]).all()


def test_check_model_on_a_transposed_parameter_passes():
    rng = np.random.default_rng(0)
    with ddlib.use_backend("numpy"):
        net = Sequential(Linear(4, 3, rng=1), Tanh(), Linear(3, 2, rng=2))
        lin = net.layers[0]
        lin.params["W"] = np.ascontiguousarray(lin.params["W"].T).T  # same values, F order
        assert not lin.params["W"].flags.c_contiguous
        rep = check_model(net, SoftmaxCrossEntropy(), rng.normal(size=(5, 4)),
                          np.array([0, 1, 0, 1, 1]))
    assert rep.passed, rep
    assert rep.per_param["0.W"] < 1e-6


@pytest.mark.parametrize("dtype", [np.int64, np.int32, bool, np.complex128])
def test_numerical_gradient_refuses_non_float_arrays(dtype):
    x = np.ones(3, dtype=dtype)
    with pytest.raises(TypeError, match=r"x must be a floating-point array.*cannot be perturbed"):
        numerical_gradient(lambda: float(np.sum(x)), x)


def test_check_model_refuses_integer_parameters():
    net = Sequential(Linear(2, 2, rng=0))
    net.layers[0].params["W"] = np.ones((2, 2), dtype=np.int64)
    with pytest.raises(TypeError, match=r"parameter 0\.W has dtype int64.*cannot be perturbed"):
        check_model(net, SoftmaxCrossEntropy(), np.ones((3, 2)), np.array([0, 1, 0]))


@pytest.mark.parametrize("n_samples", [0, -1])
def test_check_model_refuses_n_samples_below_one(n_samples):
    net = Sequential(Linear(2, 2, rng=0))
    with pytest.raises(ValueError, match=r"n_samples must be >= 1"):
        check_model(net, SoftmaxCrossEntropy(), np.ones((3, 2)), np.array([0, 1, 0]),
                    n_samples=n_samples)


@pytest.mark.parametrize("eps", [0, 0.0, -1e-5, float("nan"), float("inf")])
def test_eps_must_be_finite_and_positive(eps):
    x = np.ones(3)
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0"):
        numerical_gradient(lambda: float(np.sum(x)), x, eps=eps)
    net = Sequential(Linear(2, 2, rng=0))
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0"):
        check_model(net, SoftmaxCrossEntropy(), np.ones((3, 2)), np.array([0, 1, 0]), eps=eps)


def test_numerical_gradient_refuses_out_of_range_index():
    x = np.ones(3)
    with pytest.raises(ValueError, match=r"index must hold flat indices in \[0, 3\)"):
        numerical_gradient(lambda: float(np.sum(x)), x, index=[3])


# ------------------------------------------------------------------ 2. data helpers


@pytest.mark.parametrize("n_train, err, match", [
    (-5, ValueError, r"n_train must be >= 1"),
    (0, ValueError, r"n_train must be >= 1"),
    (10 ** 6, ValueError, r"n_train must be at most 1348"),
    (2.5, TypeError, r"n_train must be an integer"),
])
def test_load_digits_validates_n_train(n_train, err, match):
    with pytest.raises(err, match=match):
        data.load_digits(n_train=n_train)


def test_load_digits_n_train_upper_bound_is_inclusive():
    full = data.load_digits(seed=0)
    assert data.load_digits(seed=0, n_train=full.X_train.shape[0]).X_train.shape == full.X_train.shape


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, bool, np.float16, np.complex128])
def test_load_digits_refuses_non_float_dtypes(dtype):
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64"):
        data.load_digits(dtype=dtype)


@pytest.mark.parametrize("labels, err, match", [
    ([0, -1], ValueError, r"labels must lie in \[0, 3\)"),
    ([0, 3], ValueError, r"labels must lie in \[0, 3\)"),
    ([0.0, 1.0], TypeError, r"labels must hold integer class indices"),
    ([[0, 1]], ValueError, r"labels must be a 1-D array"),
])
def test_one_hot_validates_labels(labels, err, match):
    with pytest.raises(err, match=match):
        data.one_hot(labels, 3)


def test_one_hot_validates_n_classes_and_accepts_empty():
    with pytest.raises(ValueError, match=r"n_classes must be >= 1"):
        data.one_hot([0], 0)
    assert data.one_hot([], 4).shape == (0, 4)
    np.testing.assert_array_equal(data.one_hot(np.array([1], np.uint8), 2), [[0.0, 1.0]])


# ------------------------------------------------------------------ 3. losses


@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_losses_reject_non_finite_scores(name, bad):
    s = np.zeros((2, 3))
    s[1, 2] = bad
    with ddlib.use_backend(name):
        with pytest.raises(ValueError, match=r"softmax_cross_entropy: scores contains 1 non-finite"):
            SoftmaxCrossEntropy()(s, np.array([0, 1]))
        with pytest.raises(ValueError, match=r"mse: scores contains 1 non-finite"):
            MSE()(s, np.zeros((2, 3)))


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_mse_rejects_non_finite_targets(name):
    t = np.zeros((2, 3))
    t[0, 0] = np.nan
    with ddlib.use_backend(name):
        with pytest.raises(ValueError, match=r"mse: targets contains 1 non-finite"):
            MSE()(np.zeros((2, 3)), t)


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_losses_reject_an_empty_batch_on_every_backend(name):
    with ddlib.use_backend(name):
        with pytest.raises(ValueError, match=r"softmax_cross_entropy: scores must hold at least one"):
            SoftmaxCrossEntropy()(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
        with pytest.raises(ValueError, match=r"mse: scores must hold at least one"):
            MSE()(np.zeros((0, 2)), np.zeros((0, 2)))


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_integer_scores_are_converted_to_float64_not_truncated(name):
    with ddlib.use_backend(name):
        mse = MSE()
        # scores [[1], [2]], targets [[0.5], [1.0]]: 0.5 * (0.25 + 1) / 2 = 0.3125
        assert mse(np.array([[1], [2]]), np.array([[0.5], [1.0]])) == pytest.approx(0.3125)
        g = np.asarray(ddlib.get_backend().to_numpy(mse.backward()))
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, [[0.25], [0.5]])
        sx = SoftmaxCrossEntropy()
        assert sx(np.array([[0, 0], [0, 0]]), np.array([0, 1])) == pytest.approx(np.log(2))
        g = np.asarray(ddlib.get_backend().to_numpy(sx.backward()))
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, [[-0.25, 0.25], [0.25, -0.25]])


def test_losses_reject_complex_scores_and_targets():
    with pytest.raises(TypeError, match=r"softmax_cross_entropy: scores must be real"):
        SoftmaxCrossEntropy()(np.zeros((2, 2), complex), np.array([0, 1]))
    with pytest.raises(TypeError, match=r"mse: targets must be real"):
        MSE()(np.zeros((2, 2)), np.zeros((2, 2), complex))


# ------------------------------------------------------------------ 4. integer batches to layers


@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize("layer", [Sigmoid, Tanh, LeakyReLU, Softmax, lambda: Linear(2, 3, rng=0)])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, bool, np.complex128, np.float16])
def test_layers_reject_non_float_batches(name, layer, dtype):
    with ddlib.use_backend(name):
        lay = layer()
        with pytest.raises(TypeError, match=rf"{lay.name}: the input batch must be a float32 or "
                                            rf"float64 array, got dtype {np.dtype(dtype)}"):
            lay(np.ones((2, 2), dtype=dtype))


def test_sequential_rejects_an_integer_batch_even_when_fused():
    net = mlp([2, 3, 2], rng=0)
    with pytest.raises(TypeError, match=r"the input batch must be a float32 or float64"):
        net(np.ones((4, 2), dtype=np.int64))


# ------------------------------------------------------------------ 5. weight initializers


@pytest.mark.parametrize("dtype", [np.int64, int, np.int8, bool, np.complex128])
def test_initializers_refuse_non_float_dtypes(dtype):
    for name in init.INITIALIZERS:
        with pytest.raises(TypeError, match=r"dtype must be float32 or float64"):
            init.initialize(name, (3, 4), rng=0, dtype=dtype)
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64"):
        init.kaiming_normal((3, 4), 0, dtype)


def test_float16_says_float32_and_float64_are_supported():
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64, got float16 "
                                        r"\(only float32 and float64 are supported"):
        init.initialize("xavier_normal", (3, 4), rng=0, dtype=np.float16)


@pytest.mark.parametrize("build", [
    lambda: mlp([2, 3, 2], rng=0, dtype=np.int64),
    lambda: Linear(2, 3, dtype=int),
    lambda: Linear(2, 3, dtype=np.complex128),
])
def test_layers_with_integer_weights_are_refused(build):
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64"):
        build()


@pytest.mark.parametrize("name", ["fan_in_normal", "fan_in_uniform", "xavier_normal",
                                  "xavier_uniform", "kaiming_normal", "kaiming_uniform"])
def test_zero_fan_in_is_a_clear_error_naming_the_shape(name):
    with pytest.raises(ValueError, match=r"shape \(0, 5\) has fan-in 0"):
        init.initialize(name, (0, 5), rng=0)


def test_negative_seed_names_rng():
    with pytest.raises(ValueError, match=r"rng must be a non-negative integer seed.*got -1"):
        init.as_rng(-1)
    with pytest.raises(ValueError, match=r"rng must be a non-negative integer seed"):
        init.initialize("xavier_normal", (2, 2), rng=-1)
    assert isinstance(init.as_rng(np.int64(3)), np.random.Generator)


# ------------------------------------------------------------------ 6. DDLIB_BACKEND


def _import_with(value):
    env = dict(os.environ, DDLIB_BACKEND=value)
    return subprocess.run([sys.executable, "-c", "import ddlib; print(ddlib.get_backend().name)"],
                          capture_output=True, text=True, env=env, timeout=120)


def test_unknown_ddlib_backend_fails_at_import_naming_the_variable():
    r = _import_with("foo")
    assert r.returncode != 0
    assert "ValueError: environment variable DDLIB_BACKEND='foo' is not a backend" in r.stderr
    for valid in ("numpy, cpu, cuda", "gpu=cuda", "numba=cpu"):
        assert valid in r.stderr


def test_ddlib_backend_aliases_still_work():
    r = _import_with(" Numpy_Ref ")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "numpy"


# ------------------------------------------------------------------ 7. pathwise path count


def test_pathwise_derivative_refuses_too_many_paths_quickly():
    g = G.layered_dag(2, 40, seed=0)  # 2^40 paths: enumeration would never finish
    with pytest.raises(G.GraphError, match=r"has 1099511627776 paths .* more than "
                                           r"max_paths=4194304.*dp_derivative"):
        G.pathwise_derivative(g)
    assert G.MAX_PATHS == 2 ** 22


def test_pathwise_derivative_max_paths_override():
    g = G.layered_dag(2, 6, seed=0)  # 64 paths
    with pytest.raises(G.GraphError, match=r"has 64 paths .* more than max_paths=10"):
        G.pathwise_derivative(g, max_paths=10)
    assert G.pathwise_derivative(g, max_paths=64).n_paths == 64
    pw = G.pathwise_derivative(g, max_paths=None)
    assert pw.value == pytest.approx(G.dp_derivative(g).value, rel=1e-12)
    with pytest.raises(ValueError, match=r"max_paths must be >= 1"):
        G.pathwise_derivative(g, max_paths=0)


def test_path_costs_passes_max_paths():
    with pytest.raises(G.GraphError, match=r"max_paths=4"):
        G.path_costs([3], timed=False, max_paths=4)
    assert G.path_costs([2], timed=False)[0]["n_paths"] == 4
