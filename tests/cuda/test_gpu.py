"""Checks that need a real NVIDIA GPU (``make bench-gpu`` runs them; skipped elsewhere)."""

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["naive", "tiled", "blocked"])
def test_matmuls_on_the_gpu(method, dtype):
    from numba import cuda

    from ddlib.backend.cuda import matmul as mm

    rng = np.random.default_rng(0)
    for n, k, m in [(257, 129, 200), (1000, 300, 1100)]:
        a = rng.standard_normal((n, k)).astype(dtype)
        b = rng.standard_normal((k, m)).astype(dtype)
        got = mm.matmul(cuda.to_device(a), cuda.to_device(b), method=method).copy_to_host()
        ref = a.astype(np.float64) @ b
        rtol = 1e-4 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


def test_kernels_compile_for_this_device():
    from numba import cuda, float32

    from ddlib.backend.cuda import matmul as mm

    M = float32[:, :]
    ptx, _ = cuda.compile_ptx_for_current_device(mm._BLOCKED[np.dtype(np.float32)].py_func,
                                                 (M, M, M))
    cc = cuda.get_current_device().compute_capability
    assert f"sm_{cc[0]}{cc[1]}" in ptx


def test_training_on_the_gpu_matches_the_cpu():
    import ddlib
    from ddlib import layers, losses, optim, train
    from ddlib.device import DeviceTrainer, backend_of, to_device, to_host

    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 64))
    y = rng.integers(0, 10, 256)
    with ddlib.use_backend("numpy"):
        ref = layers.mlp([64, 128, 10], rng=0)
        ropt = optim.Optimizer(ref, optim.adam(1e-3))
        rl = [train.train_step(ref, losses.SoftmaxCrossEntropy(), ropt, X, y) for _ in range(3)]
    net = to_device(layers.mlp([64, 128, 10], rng=0))
    with ddlib.use_backend("cuda"):
        opt = optim.Optimizer(net, optim.adam(1e-3))
    tr = DeviceTrainer(net, losses.SoftmaxCrossEntropy(), opt)
    Xd, yd = tr.put_data(X, y)
    got = [tr.step(Xd, yd, return_loss=True) for _ in range(3)]
    np.testing.assert_allclose(got, rl, rtol=1e-9)
    # the counters every kernel added to stayed on the GPU, and read zero
    assert backend_of(opt.nonfinite) == "cuda" and not to_host(opt.nonfinite).any()
