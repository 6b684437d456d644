"""The cpu backend switches to its parallel twins above a size threshold; both paths must
agree with numpy_ref (the other kernel tests use small arrays, i.e. the serial twins)."""

import numpy as np
import pytest

import ddlib
from ddlib.backend.cpu import core as cpu_core
from ddlib.backend.cpu import optim as cpu_optim
from tests.conftest import tol

N = max(cpu_optim.PARALLEL_MIN, cpu_core.PARALLEL_MIN) + 37  # odd, above both thresholds


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_optimizer_steps_match_the_reference(dtype):
    rng = np.random.default_rng(0)
    cpu, ref = ddlib.get_backend("cpu"), ddlib.get_backend("numpy")
    g = rng.normal(size=N).astype(dtype)
    results = {}
    for be in (cpu, ref):
        w = np.linspace(-1, 1, N).astype(dtype)
        f = np.zeros_like(w)
        a = np.zeros_like(w)
        v = np.zeros_like(w)
        for _ in range(3):
            be.adam_step(w, f, a, g, 1e-3, 0.9, 0.999, 1e-8)
            be.momentum_step(w, v, g, 1e-2, 0.9)
        results[be.name] = (w, f, a, v)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for got, want in zip(results["cpu"], results["numpy"]):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("kind", ["sigmoid", "relu", "hardtanh"])
def test_large_activations_match_the_reference(kind):
    x = np.random.default_rng(1).normal(size=(N // 64 + 1, 64)).astype(np.float32)
    g = np.ones_like(x)
    cpu, ref = ddlib.get_backend("cpu"), ddlib.get_backend("numpy")
    y = cpu.act_forward(kind, x)
    # the same float32 tolerances as the small-shape kernel tests
    np.testing.assert_allclose(y, ref.act_forward(kind, x), **tol(np.float32))
    np.testing.assert_allclose(cpu.act_backward(kind, x, y, g), ref.act_backward(kind, x, y, g),
                               **tol(np.float32))


@pytest.mark.parametrize("kind", ["tanh", "leaky_relu"])
def test_large_fused_linear_activation_matches_the_separate_kernels(kind):
    rng = np.random.default_rng(2)
    rows = cpu_core.PARALLEL_MIN // 64 + 3  # the (rows, 64) output is above the threshold
    x = rng.normal(size=(rows, 16)).astype(np.float32)
    W = rng.normal(size=(16, 64)).astype(np.float32)
    b = rng.normal(size=64).astype(np.float32)
    cpu, ref = ddlib.get_backend("cpu"), ddlib.get_backend("numpy")
    z, y = cpu.linear_act(kind, x, W, b, 0.1)
    assert z.size >= cpu_core.PARALLEL_MIN
    np.testing.assert_array_equal(z, cpu.linear(x, W, b))
    np.testing.assert_array_equal(y, cpu.act_forward(kind, z, 0.1))
    np.testing.assert_allclose(y, ref.linear_act(kind, x, W, b, 0.1)[1], **tol(np.float32))
    g = rng.normal(size=z.shape).astype(np.float32)
    dz, db = cpu.act_backward_colsum(kind, z, y, g, 0.1)
    np.testing.assert_array_equal(dz, cpu.act_backward(kind, z, y, g, 0.1))
    np.testing.assert_array_equal(db, cpu.col_sum(dz))
    np.testing.assert_allclose(db, ref.col_sum(dz.astype(np.float64)), rtol=1e-5, atol=1e-4)
