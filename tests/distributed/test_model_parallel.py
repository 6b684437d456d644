"""Model parallelism: a hidden layer split by columns over two actors computes what one
process computes, and the messages are counted."""

import numpy as np
import pytest

pytest.importorskip("ray")

from ddlib import layers, losses, optim, train  # noqa: E402
from ddlib.backend import use_backend  # noqa: E402
from ddlib.data import load_digits  # noqa: E402
from ddlib.distributed.model_parallel import ModelParallelNet  # noqa: E402


@pytest.mark.parametrize("k,rule", [(2, "sgd"), (3, "momentum")])
def test_split_net_trains_exactly_as_one_process(ray_session, k, rule):
    d = load_digits(seed=0)
    X, y = d.X_train[:256], d.y_train[:256]
    net = layers.mlp([64, 20, 10], activation="tanh", rng=3)
    ref = layers.mlp([64, 20, 10], activation="tanh", rng=3)
    mp = ModelParallelNet.from_net(net, k, rule=rule, lr=0.05)
    try:
        opt = optim.Optimizer(ref, getattr(optim, rule)(0.05), fused=False)
        loss = losses.SoftmaxCrossEntropy()
        for s in range(6):
            xb, yb = X[s * 32:(s + 1) * 32], y[s * 32:(s + 1) * 32]
            got = mp.step(xb, yb)
            with use_backend("numpy"):
                want = train.train_step(ref, loss, opt, xb, yb)
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
        back = mp.to_net()
        for a, b in zip(back.layers[::2], ref.layers[::2]):
            np.testing.assert_allclose(a.params["W"], b.params["W"], rtol=1e-11, atol=1e-13)
            np.testing.assert_allclose(a.params["b"], b.params["b"], rtol=1e-11, atol=1e-13)
        # per step: the batch (32 x 64) and dz (32 x 10) to each of the k actors, and k
        # partial outputs (32 x 10) back; float64
        assert mp.comm["steps"] == 6
        assert mp.comm["sent"] == 6 * 8 * k * (32 * 64 + 32 * 10)
        assert mp.comm["received"] == 6 * 8 * k * 32 * 10
    finally:
        mp.release()


def test_from_net_and_k_are_checked(ray_session):
    with pytest.raises(ValueError, match="one-hidden-layer"):
        ModelParallelNet.from_net(layers.mlp([4, 5, 5, 2], rng=0), 2)
    with pytest.raises(ValueError, match="k=9"):
        ModelParallelNet.from_net(layers.mlp([4, 5, 2], rng=0), 9)
