"""Pruning (Sec. 3.7.3): torch-like amounts, global ranking, masks that hold through
100 optimizer steps for every rule in ddlib.optim.RULES, on the numpy and cpu backends."""

import numpy as np
import pytest

import ddlib
from ddlib import optim
from ddlib.compress import prune
from ddlib.data import load_digits
from ddlib.layers import Linear, mlp
from ddlib.losses import SoftmaxCrossEntropy
from ddlib.train import fit

RULE_ARGS = {
    "sgd": (0.05,), "momentum": (0.05, 0.9), "nesterov": (0.05, 0.9),
    "delta_bar_delta": (0.02, 0.05, 0.2, 0.7), "adagrad": (0.05,), "rmsprop": (0.01, 0.9),
    "rmsprop_nesterov": (0.01, 0.8, 0.9), "adadelta": (), "adam": (0.01,),
}


def test_every_rule_is_listed():
    assert set(RULE_ARGS) == set(optim.RULES)


def test_amount_fraction_and_count():
    layer = Linear(6, 5, rng=0)
    w = layer.params["W"].copy()
    m = prune.l1_unstructured(layer, "W", amount=0.4)
    assert m.sum() == 18
    kept = np.abs(w[m]).min()
    assert np.all(np.abs(w[~m]) <= kept)
    m2 = prune.l1_unstructured(layer, "W", amount=3)   # among the 18 survivors
    assert m2.sum() == 15 and not np.any(m2 & ~m)
    assert np.all(layer.params["W"][~m2] == 0)
    with pytest.raises(ValueError, match="amount"):
        prune.l1_unstructured(layer, "W", amount=1.5)
    with pytest.raises(ValueError, match="amount"):
        prune.l1_unstructured(layer, "W", amount=16)
    with pytest.raises(TypeError, match="amount"):
        prune.l1_unstructured(layer, "W", amount="half")
    prune.remove(layer, "W")
    assert prune.get_mask(layer, "W") is None and np.all(layer.params["W"][~m2] == 0)
    with pytest.raises(ValueError, match="not pruned"):
        prune.remove(layer, "W")


def test_global_ranks_all_layers_together():
    a, b = Linear(4, 4, rng=0), Linear(4, 4, rng=1)
    a.params["W"][...] = np.sign(a.params["W"]) + a.params["W"]   # |a| >= 1
    b.params["W"] *= 0.5 / np.abs(b.params["W"]).max()              # |b| <= 0.5
    ma, mb = prune.global_unstructured([(a, "W"), (b, "W")], amount=16)
    assert ma.all() and not mb.any()


def test_threshold_is_quality_times_std():
    layer = Linear(20, 20, rng=0)
    w = layer.params["W"].copy()
    m = prune.threshold(layer, "W", quality=0.5)
    np.testing.assert_array_equal(m, np.abs(w) >= 0.5 * w.std())


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("rule", sorted(RULE_ARGS))
def test_masks_hold_through_100_steps(rule, backend):
    data = load_digits(seed=0)
    with ddlib.use_backend(backend):
        net = mlp([64, 16, 10], rng=0)
        opt = optim.Optimizer(net, optim.RULES[rule](*RULE_ARGS[rule]))
        # run unpruned first so momentum / moments are non-zero where pruning will cut
        fit(net, SoftmaxCrossEntropy(), opt, data.X_train, data.y_train, max_steps=10,
            epochs=None, batch_size=32, seed=0)
        masks = prune.prune_model(net, 0.8)
        prune.attach(opt)
        fit(net, SoftmaxCrossEntropy(), opt, data.X_train, data.y_train, max_steps=100,
            epochs=None, batch_size=32, seed=1)
        for (layer, name), mask in zip(prune.weight_layers(net), masks):
            w = np.asarray(layer.params[name])
            assert np.all(w[~mask] == 0.0)           # exactly zero, not small
            if opt.iterate is not None:
                assert np.all(opt.iterate[f"{net.layers.index(layer)}.W"][~mask] == 0.0)
            assert np.count_nonzero(w[mask]) > 0.9 * mask.sum()   # the rest trained


def test_retraining_recovers_accuracy():
    data = load_digits(seed=0)
    net = mlp([64, 100, 10], rng=0)
    loss = SoftmaxCrossEntropy()
    opt = optim.Optimizer(net, optim.adam(1e-3))
    fit(net, loss, opt, data.X_train, data.y_train, epochs=10, batch_size=32, seed=0)
    prune.prune_model(net, 0.9)
    assert abs(prune.sparsity(net) - 0.9) < 1e-3
    from ddlib.train import evaluate
    before = evaluate(net, loss, data.X_test, data.y_test)[1]
    fit(net, loss, prune.attach(opt), data.X_train, data.y_train, epochs=5, batch_size=32,
        seed=1)
    after = evaluate(net, loss, data.X_test, data.y_test)[1]
    assert after > before + 0.2 and after > 0.8
    assert abs(prune.sparsity(net) - 0.9) < 1e-3
