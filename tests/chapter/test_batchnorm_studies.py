"""The Sec. 3.6 measurements (ddlib.chapter.batchnorm_studies), run on small data."""

import numpy as np
import pytest

import ddlib
from ddlib import optim
from ddlib.chapter.batchnorm_studies import (
    activation_inputs,
    batch_noise,
    largest_stable_lr,
    lr_sweep,
    train_tracked,
)
from ddlib.errors import DivergenceError
from ddlib.layers.batchnorm import bn_mlp
from ddlib.losses import SoftmaxCrossEntropy
from tests.conftest import SIMULATOR


def data(m, d, seed=0, loc=2.0, scale=1.5):
    rng = np.random.default_rng(seed)
    return rng.normal(loc, scale, size=(m, d)), rng.integers(0, d, size=m)


def test_pre_activation_inputs_are_normalized():
    x, _ = data(50, 6, seed=12)
    net = bn_mlp([6, 8, 8, 3], placement="pre", rng=4, eps=1e-12)
    pre = activation_inputs(net, x, train=True)
    post = activation_inputs(bn_mlp([6, 8, 8, 3], placement="none", rng=4), x, train=True)
    for h in pre:
        np.testing.assert_allclose(h.mean(0), 0.0, atol=1e-12)
        np.testing.assert_allclose(h.std(0), 1.0, rtol=1e-4)
    assert not np.allclose(post[1].std(0), 1.0, rtol=0.1)


def test_batch_noise_changes_outputs_but_not_the_statistics():
    x, _ = data(40, 4, seed=14)
    net = bn_mlp([4, 6, 3], placement="pre", rng=5)
    before = {k: v.copy() for k, v in net.layers[1].buffers.items()}
    outs = batch_noise(net, x, index=3, n_batches=6, batch_size=5, seed=0)
    assert outs.shape == (6, 3)
    assert outs.std(axis=0).min() > 1e-3  # the same example, six different outputs
    for k, v in before.items():
        np.testing.assert_array_equal(net.layers[1].buffers[k], v)
    plain = batch_noise(bn_mlp([4, 6, 3], placement="none", rng=5), x, 3, 6, 5)
    np.testing.assert_allclose(plain.std(axis=0), 0.0, atol=1e-15)  # no BN, no noise
    with pytest.raises(ValueError, match=r"index must lie in \[0, 40\)"):
        batch_noise(net, x, index=40)


def test_train_tracked_records_accuracy_and_percentiles():
    x, y = data(120, 4, seed=15)
    y = (x[:, 0] > 2.0).astype(np.int64)
    net = bn_mlp([4, 6, 2], placement="pre", rng=6)
    opt = optim.Optimizer(net, optim.sgd(0.5))
    run = train_tracked(net, SoftmaxCrossEntropy(), opt, x[:90], y[:90], x[90:], y[90:],
                        steps=80, batch_size=10, eval_every=20, probe=(0, 2))
    assert run.steps == [0, 20, 40, 60, 80] and len(run.loss) == 80
    assert run.percentiles.shape == (5, 3)
    assert np.all(np.diff(run.percentiles, axis=1) >= 0)  # 15th <= 50th <= 85th
    assert run.test_acc[-1] > 0.8 and run.steps_to(0.8) is not None
    assert run.steps_to(1.01) is None


def test_lr_sweep_and_largest_stable_rate():
    sweep = [dict(lr=0.1, stable=True), dict(lr=1.0, stable=True), dict(lr=10.0, stable=False),
             dict(lr=100.0, stable=True)]
    assert largest_stable_lr(sweep) == 100.0
    assert largest_stable_lr([dict(lr=1.0, stable=False)]) is None
    x, _ = data(60, 4, seed=16)
    y = (x[:, 1] > 2.0).astype(np.int64)
    # too small a rate does not learn in 20 steps, a moderate one does, a huge one blows up
    rows = lr_sweep(lambda: bn_mlp([4, 6, 2], placement="pre", activation="relu", rng=0),
                    lambda net, lr: optim.Optimizer(net, optim.sgd(lr)),
                    [0.01, 0.5, 1e4], x, y, steps=20, batch_size=10)
    assert [r["stable"] for r in rows] == [False, True, False]
    assert rows[2]["final_loss"] == np.inf
    assert largest_stable_lr(rows) == 0.5


@pytest.mark.skipif(SIMULATOR, reason="host-only check")
def test_cpu_and_numpy_backends_train_identically():
    x, y = data(40, 5, seed=17)
    y = y % 3
    finals = []
    for name in ("numpy", "cpu"):
        with ddlib.use_backend(name):
            net = bn_mlp([5, 6, 3], placement="pre", rng=7)
            opt = optim.Optimizer(net, optim.sgd(0.3))
            run = train_tracked(net, SoftmaxCrossEntropy(), opt, x, y, x, y, steps=12,
                                batch_size=8, eval_every=4)
            finals.append(np.array(run.loss))
    np.testing.assert_allclose(finals[0], finals[1], rtol=1e-9)


def test_train_tracked_names_the_step_where_training_diverged():
    x, _ = data(60, 4, seed=18)
    y = (x[:, 0] > 2.0).astype(np.int64)
    net = bn_mlp([4, 6, 2], placement="none", activation="relu", rng=0)
    opt = optim.Optimizer(net, optim.sgd(1e5))
    with np.errstate(all="ignore"), pytest.raises(DivergenceError) as info:
        train_tracked(net, SoftmaxCrossEntropy(), opt, x, y, None, None, steps=50,
                      batch_size=10, max_loss=1e3)
    # the loss is checked before each update: every step before the reported one ran
    assert info.value.step == opt.steps >= 1
