"""Mini-batch SGD (Sec. 3.2.8): the seeded sampler, one step, and the training loop."""

import numpy as np
import pytest

from ddlib.data import load_digits
from ddlib.errors import DivergenceError
from ddlib.layers import Linear, Sequential, mlp
from ddlib.losses import SoftmaxCrossEntropy
from ddlib.optim import Optimizer, sgd
from ddlib.train import MinibatchSampler, evaluate, fit, predict, train_step


@pytest.mark.parametrize("n,batch", [(1, 1), (10, 3), (64, 16), (65, 16), (7, 100)])
def test_sampler_covers_every_index_once_per_epoch(n, batch):
    s = MinibatchSampler(n, batch, seed=0)
    for _ in range(3):
        batches = list(s)
        assert len(batches) == len(s) == -(-n // batch)
        assert all(len(b) == batch for b in batches[:-1])
        assert 1 <= len(batches[-1]) <= batch
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(n))


def test_sampler_drop_last_keeps_only_full_batches():
    s = MinibatchSampler(10, 3, seed=0, drop_last=True)
    batches = list(s)
    assert len(batches) == len(s) == 3
    assert all(len(b) == 3 for b in batches)
    assert len(np.unique(np.concatenate(batches))) == 9


def test_sampler_is_seeded_and_reshuffles_every_epoch():
    a, b = MinibatchSampler(50, 8, seed=7), MinibatchSampler(50, 8, seed=7)
    first_a, first_b = np.concatenate(list(a)), np.concatenate(list(b))
    np.testing.assert_array_equal(first_a, first_b)  # same seed, same order
    second_a = np.concatenate(list(a))
    assert not np.array_equal(first_a, second_a)  # a new permutation next epoch
    other = np.concatenate(list(MinibatchSampler(50, 8, seed=8)))
    assert not np.array_equal(first_a, other)
    assert not np.array_equal(first_a, np.arange(50))


def test_sampler_without_shuffle_is_in_order():
    order = np.concatenate(list(MinibatchSampler(9, 4, shuffle=False)))
    np.testing.assert_array_equal(order, np.arange(9))


def test_sampler_does_not_touch_global_random_state():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    list(MinibatchSampler(20, 3, seed=1))
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_sampler_bad_arguments():
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        MinibatchSampler(10, 0)
    with pytest.raises(TypeError, match="batch_size must be an integer, got float 2.5"):
        MinibatchSampler(10, 2.5)
    with pytest.raises(ValueError, match="n must be >= 1"):
        MinibatchSampler(0, 4)


def test_train_step_is_one_sgd_update_on_the_batch_mean():
    # Eq. 3.32 with the batch mean: W <- W - lr * dL/dW
    rng = np.random.default_rng(0)
    model = Sequential(Linear(3, 2, rng=rng))
    x, y = rng.normal(size=(4, 3)), rng.integers(0, 2, 4)
    W0, b0 = model[0].params["W"].copy(), model[0].params["b"].copy()
    loss = SoftmaxCrossEntropy()
    loss(model(x), y)
    model.backward(loss.backward())
    grad = model[0].grads["W"].copy()
    value = train_step(model, loss, Optimizer(model, sgd(0.5)), x, y)
    np.testing.assert_allclose(model[0].params["W"], W0 - 0.5 * grad, rtol=1e-12)
    assert value == pytest.approx(_loss_at(W0, b0, x, y))  # the loss before the update


def _loss_at(W, b, x, y):
    s = x @ W + b
    s = s - s.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0, n_train=600)


def test_fit_decreases_the_loss_on_digits(digits):
    model = mlp([64, 32, 10], activation="relu", rng=0)
    loss = SoftmaxCrossEntropy()
    before, _ = evaluate(model, loss, digits.X_train, digits.y_train)
    hist = fit(model, loss, Optimizer(model, sgd(0.1)), digits.X_train, digits.y_train,
               epochs=5, batch_size=32, seed=0, X_val=digits.X_test, y_val=digits.y_test)
    assert len(hist.epoch_train_loss) == len(hist.val_loss) == len(hist.val_acc) == 5
    assert len(hist.step_loss) == 5 * -(-600 // 32)
    assert hist.examples_seen == [600, 1200, 1800, 2400, 3000]
    assert hist.epoch_train_loss[-1] < hist.epoch_train_loss[0] < before
    after, acc = evaluate(model, loss, digits.X_train, digits.y_train)
    assert after < 0.5 * before
    assert hist.val_acc[-1] > 0.8


def test_fit_is_reproducible_with_a_seed(digits):
    runs = []
    for _ in range(2):
        model = mlp([64, 16, 10], activation="tanh", rng=1)
        hist = fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.05)),
                   digits.X_train[:200], digits.y_train[:200], epochs=1, batch_size=16, seed=3)
        runs.append(hist.step_loss)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-12)


def test_fit_epoch_loss_is_the_example_weighted_mean_of_step_losses(digits):
    model = mlp([64, 10], rng=0)
    X, y = digits.X_train[:50], digits.y_train[:50]
    hist = fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.01)), X, y, epochs=1,
               batch_size=16, seed=0)
    sizes = [16, 16, 16, 2]
    assert hist.epoch_train_loss[0] == pytest.approx(np.dot(hist.step_loss, sizes) / 50)


def test_fit_calls_the_callback_after_each_epoch(digits):
    seen = []
    model = mlp([64, 10], rng=0)
    fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.01)), digits.X_train[:40],
        digits.y_train[:40], epochs=2, batch_size=20, seed=0,
        callback=lambda epoch, hist: seen.append((epoch, len(hist.step_loss))))
    assert seen == [(0, 2), (1, 4)]


def test_huge_learning_rate_raises_divergence_with_step_and_loss(digits):
    model = mlp([64, 32, 10], activation="relu", rng=0)
    with pytest.raises(DivergenceError) as info:
        fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(1e6)), digits.X_train,
            digits.y_train, epochs=2, batch_size=32, seed=0, max_loss=1e3)
    err = info.value
    assert err.step >= 1  # the first step is finite; the blow-up comes after an update
    assert not (np.isfinite(err.loss) and err.loss <= 1e3)
    assert f"step {err.step}" in str(err) and "loss" in str(err)


def test_mismatched_X_and_y_are_rejected(digits):
    model = mlp([64, 10], rng=0)
    with pytest.raises(ValueError, match="X has 10 rows but y has 9 labels"):
        fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.1)), digits.X_train[:10],
            digits.y_train[:9])


def test_labels_out_of_range_are_rejected(digits):
    model = mlp([64, 10], rng=0)
    y = digits.y_train[:8].copy()
    y[3] = 10
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.1)), digits.X_train[:8], y)


def test_input_width_mismatch_names_the_layer(digits):
    model = mlp([63, 10], rng=0)
    with pytest.raises(ValueError, match=r"Linear: input has 64 features per row .* expects 63"):
        fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.1)), digits.X_train[:8],
            digits.y_train[:8])


def test_predict_batches_give_the_same_outputs(digits):
    model = mlp([64, 16, 10], activation="tanh", rng=0)
    X = digits.X_test[:70]
    np.testing.assert_allclose(predict(model, X, batch_size=16), predict(model, X, batch_size=1000),
                               rtol=1e-12)


def test_bad_epochs():
    model = mlp([2, 2], rng=0)
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.1)), np.zeros((2, 2)),
            np.zeros(2, dtype=np.int64), epochs=0)


def test_fit_stops_at_the_step_budget_inside_an_epoch(digits):
    model = mlp([64, 10], rng=0)
    X, y = digits.X_train[:100], digits.y_train[:100]
    hist = fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.01)), X, y, epochs=None,
               max_steps=7, batch_size=30, seed=0)
    # 4 batches per epoch (30, 30, 30, 10): one full epoch, then 3 steps of the second
    assert hist.steps == 7
    assert hist.examples_seen == [100, 190]
    assert len(hist.epoch_train_loss) == 2
    assert hist.epoch_train_loss[1] == pytest.approx(np.mean(hist.step_loss[4:]))


def test_fit_with_epochs_and_budget_stops_at_whichever_comes_first(digits):
    model = mlp([64, 10], rng=0)
    X, y = digits.X_train[:100], digits.y_train[:100]
    opt = Optimizer(model, sgd(0.01))
    assert fit(model, SoftmaxCrossEntropy(), opt, X, y, epochs=1, max_steps=50,
               batch_size=30, seed=0).steps == 4
    assert fit(model, SoftmaxCrossEntropy(), opt, X, y, epochs=5, max_steps=2,
               batch_size=30, seed=0).steps == 2
    assert opt.steps == 6


def test_fit_drop_last_skips_the_short_batch(digits):
    model = mlp([64, 10], rng=0)
    X, y = digits.X_train[:100], digits.y_train[:100]
    seen = []
    hist = fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.01)), X, y, epochs=2,
               batch_size=30, seed=0, drop_last=True,
               on_step=lambda step, value, m: seen.append((step, value, m is model)))
    assert hist.steps == 6 and hist.examples_seen == [90, 180]
    assert [s for s, _, _ in seen] == list(range(6))
    assert [v for _, v, _ in seen] == hist.step_loss
    assert all(same for _, _, same in seen)
    with pytest.raises(ValueError, match="batch_size=200 is larger than the 100 examples"):
        fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.01)), X, y,
            batch_size=200, drop_last=True)


def test_fit_rejects_a_run_without_an_end_and_a_bad_hook(digits):
    model = mlp([64, 10], rng=0)
    X, y = digits.X_train[:10], digits.y_train[:10]
    with pytest.raises(ValueError, match="epochs=None needs max_steps"):
        fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.01)), X, y, epochs=None)
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.01)), X, y, max_steps=0)
    with pytest.raises(TypeError, match="on_step must be callable"):
        fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.01)), X, y, on_step=3)


def test_a_diverged_step_leaves_the_parameters_as_the_last_good_step_left_them(digits):
    model = mlp([64, 32, 10], activation="relu", rng=0)
    opt = Optimizer(model, sgd(1e6))
    snapshots = []
    with pytest.raises(DivergenceError) as info:
        fit(model, SoftmaxCrossEntropy(), opt, digits.X_train, digits.y_train, epochs=2,
            batch_size=32, seed=0, max_loss=1e3,
            on_step=lambda step, value, m: snapshots.append(
                [layer.params[k].copy() for _, layer, k in m.named_parameters()]))
    step = info.value.step
    assert step == len(snapshots) == opt.steps  # steps 0 .. step-1 ran, step did not
    for (_, layer, k), saved in zip(model.named_parameters(), snapshots[-1]):
        np.testing.assert_array_equal(layer.params[k], saved)


def test_fit_accepts_a_custom_step_that_keeps_its_loss(digits):
    model = mlp([64, 10], rng=0)
    X, y = digits.X_train[:64], digits.y_train[:64]
    calls = []
    hist = fit(model, SoftmaxCrossEntropy(), None, X, y, epochs=2, batch_size=32, seed=0,
               step_fn=lambda xb, yb: calls.append(xb.shape[0]))
    assert calls == [32, 32, 32, 32]
    assert hist.step_loss == [None] * 4 and hist.epoch_train_loss == []
    assert hist.examples_seen == [64, 128]


# --- issue 13: fit checks its optimizer and max_loss; an empty chain is refused ----------


def test_fit_refuses_an_optimizer_built_for_another_model(digits):
    from ddlib.optim import Optimizer, sgd

    model, other = mlp([64, 10], rng=0), mlp([64, 10], rng=1)
    X, y = digits.X_train[:64], digits.y_train[:64]
    with pytest.raises(ValueError, match=r"optimizer was built for another model"):
        fit(model, SoftmaxCrossEntropy(), Optimizer(other, sgd(0.1)), X, y, epochs=1)
    with pytest.raises(TypeError, match=r"optimizer must be a ddlib.optim.Optimizer.*wrap it"):
        fit(model, SoftmaxCrossEntropy(), sgd(0.1), X, y, epochs=1)
    with pytest.raises(TypeError, match=r"optimizer must be a ddlib.optim.Optimizer"):
        fit(model, SoftmaxCrossEntropy(), None, X, y, epochs=1)


def test_fit_accepts_an_optimizer_for_part_of_the_model(digits):
    from ddlib.optim import Optimizer, sgd

    model = mlp([64, 16, 10], rng=0)
    last = model.layers[-1]
    opt = Optimizer(last, sgd(0.1))
    X, y = digits.X_train[:64], digits.y_train[:64]
    W0 = np.array(model.layers[0].params["W"], copy=True)
    fit(model, SoftmaxCrossEntropy(), opt, X, y, epochs=1, batch_size=32, seed=0)
    np.testing.assert_array_equal(model.layers[0].params["W"], W0)  # only the last trains
    assert opt.steps == 2


@pytest.mark.parametrize("max_loss,err", [(float("nan"), ValueError), (-1, ValueError),
                                          (0, ValueError), ("big", TypeError),
                                          (None, TypeError), (True, TypeError)])
def test_fit_validates_max_loss(digits, max_loss, err):
    from ddlib.optim import Optimizer, sgd

    model = mlp([64, 10], rng=0)
    X, y = digits.X_train[:64], digits.y_train[:64]
    with pytest.raises(err, match=r"max_loss must be a number > 0"):
        fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.1)), X, y, epochs=1,
            max_loss=max_loss)


def test_fit_with_infinite_max_loss_trains(digits):
    from ddlib.optim import Optimizer, sgd

    model = mlp([64, 10], rng=0)
    X, y = digits.X_train[:64], digits.y_train[:64]
    hist = fit(model, SoftmaxCrossEntropy(), Optimizer(model, sgd(0.1)), X, y, epochs=1,
               batch_size=32, max_loss=float("inf"))
    assert len(hist.step_loss) == 2


def test_an_empty_chain_is_refused():
    from ddlib.optim import chain

    with pytest.raises(ValueError, match=r"chain needs at least one transform"):
        chain()
