"""The CPU benchmark's yardsticks compute the same training step as ddlib, and its rows are well formed."""

import numpy as np
import pytest

import ddlib
from benchmarks import bench_mlp
from benchmarks.reference_kernels import KernelsMLP
from benchmarks.reference_numpy import NumpyMLP
from ddlib import layers, losses, optim, train

SIZES = (12, 16, 9, 4)


def _ddlib_net(weights, biases):
    net = layers.mlp(list(SIZES), activation="relu", rng=0, dtype=np.float32)
    for lin, W, b in zip(net.layers[::2], weights, biases):
        lin.params["W"][...] = W
        lin.params["b"][...] = b
    return net


def test_reference_steps_agree_with_ddlib():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], size=8)
    ref, kern = NumpyMLP(SIZES), KernelsMLP(SIZES, lr=0.05)
    for W0, W1 in zip(ref.W, kern.W):
        np.testing.assert_array_equal(W0, W1)  # same seed, same start
    with ddlib.use_backend("cpu"):
        net = _ddlib_net(ref.W, ref.b)
        opt = optim.Optimizer(net, optim.momentum(0.05, 0.9))
        for _ in range(4):
            a = ref.step(x, y, lr=0.05)
            b = kern.step(x, y)
            c = train.train_step(net, losses.SoftmaxCrossEntropy(), opt, x, y)
            assert a == pytest.approx(b, rel=1e-5) and a == pytest.approx(c, rel=1e-5)
    for W_ref, W_kern, lin in zip(ref.W, kern.W, net.layers[::2]):
        np.testing.assert_allclose(W_kern, W_ref, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(lin.params["W"], W_ref, rtol=1e-4, atol=1e-6)


def test_mlp_benchmark_rows(monkeypatch):
    monkeypatch.setattr(bench_mlp, "WORKLOADS", [(SIZES, 8)])
    monkeypatch.setattr(bench_mlp, "interleaved",
                        lambda fns: {k: (fn(), 1e-3 * (i + 1))[1] for i, (k, fn) in enumerate(fns.items())})
    rows = bench_mlp.run()
    variants = [r["variant"] for r in rows]
    assert variants[0] == "plain NumPy (reference)" and "ddlib backend=cpu" in variants
    cpu = rows[variants.index("ddlib backend=cpu")]
    assert cpu["ratio"] == pytest.approx(cpu["seconds"] / rows[0]["seconds"])
    assert cpu["target"] == "<= 0.92" and cpu["ok"] is (cpu["ratio"] <= 0.92)


def test_mlp_benchmark_has_the_floor_row_for_the_large_net(monkeypatch):
    big = (784, 8, 4)
    monkeypatch.setattr(bench_mlp, "WORKLOADS", [(big, 4)])
    monkeypatch.setattr(bench_mlp, "interleaved",
                        lambda fns: {k: (fn(), 1e-3 * (i + 1))[1] for i, (k, fn) in enumerate(fns.items())})
    rows = {r["variant"]: r for r in bench_mlp.run()}
    floor = rows["ddlib cpu vs products+update"]
    assert floor["ratio"] == pytest.approx(rows["ddlib backend=cpu"]["seconds"]
                                           / rows["products + momentum update"]["seconds"])
    assert floor["target"] == "<= 1.08" and floor["ok"] is (floor["ratio"] <= 1.08)


def test_optimizer_benchmark_yardsticks_touch_what_the_rules_touch():
    from benchmarks import bench_optim
    from ddlib.backend.cpu.elementwise import PARALLEL_MIN

    rng = np.random.default_rng(0)
    for n in (1000, PARALLEL_MIN + 5):
        w, f, a, g = (rng.normal(size=n).astype(np.float32) for _ in range(4))
        w0, f0, a0 = w.copy(), f.copy(), a.copy()
        bench_optim.touch_like_adam(w, f, a, g)
        for new, old in ((w, w0), (f, f0), (a, a0)):
            np.testing.assert_array_equal(new, old + g)   # every entry read and written
        v0 = f.copy()
        bench_optim.touch_like_momentum(w, f, g)
        np.testing.assert_array_equal(f, v0 + g)
    # the NumPy momentum yardstick is the same update as the fused kernel
    w, v, g = (rng.normal(size=100).astype(np.float32) for _ in range(3))
    w2, v2 = w.copy(), v.copy()
    bench_optim.numpy_momentum(w, v, g, np.float32(0.01), np.float32(0.9), np.empty_like(w))
    ddlib.get_backend("cpu").momentum_step(w2, v2, g, 0.01, 0.9)
    np.testing.assert_allclose(w, w2, rtol=1e-6)
    np.testing.assert_allclose(v, v2, rtol=1e-6)


def test_tuning_benchmark_rows(monkeypatch):
    from benchmarks import bench_tuning
    from ddlib.chapter import search_studies

    # a cheap objective with the digits objective's parameters: the rows, not the training
    monkeypatch.setattr(search_studies, "digits_objective",
                        lambda: lambda p: (np.log10(p["lr"]) + 0.5) ** 2 + 0.1 * np.log10(p["l2"]) ** 2)
    monkeypatch.setenv("DDLIB_BENCH_QUICK", "1")
    rows = bench_tuning.run()
    race = {r["variant"].split(":")[0]: r for r in rows if r["workload"].startswith("search race, digits")}
    assert sorted(race) == sorted(bench_tuning.METHODS)
    assert race["random"]["ratio"] == 1.0
    for m in ("tpe", "gp", "forest"):
        assert race[m]["target"] == "<= 0.5" and race[m]["ok"] is (race[m]["ratio"] <= 0.5)
    timing = [r for r in rows if r["workload"] == "search race, time per suggestion"]
    assert [r["variant"].split(":")[0] for r in timing] == ["tpe", "gp", "forest"]
    assert all(r["seconds"] > 0 for r in timing)
