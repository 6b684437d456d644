"""Losses on hidden nodes (Sec. 3.2.7, Eqs. 3.25-3.26): HiddenLoss taps and their totals."""

import doctest

import numpy as np
import pytest

import ddlib.regularizers as regularizers
from ddlib.gradcheck import check_model
from ddlib.layers import Linear, Sequential, Sigmoid, Tanh, TiedAutoencoder
from ddlib.losses import MSE, SoftmaxCrossEntropy
from ddlib.regularizers import (
    HiddenLoss,
    WithHiddenLosses,
    hidden_losses,
    hidden_penalty,
    l1_penalty,
    l2_penalty,
)


def test_docstring_examples():
    assert doctest.testmod(regularizers).failed == 0


def test_penalty_values_and_gradients():
    h = np.array([[1.0, -2.0, 0.0], [0.5, 0.0, -0.5]])
    v, g = l1_penalty(h, 0.3)
    assert v == pytest.approx(0.3 * 4.0 / 2)
    np.testing.assert_allclose(g, 0.3 / 2 * np.sign(h))
    v, g = l2_penalty(h, 0.3)
    assert v == pytest.approx(0.5 * 0.3 * (1 + 4 + 0.25 + 0.25) / 2)
    np.testing.assert_allclose(g, 0.3 * h / 2)


def _net(rng, taps):
    return Sequential(Linear(4, 5, rng=rng), Sigmoid(), *taps, Linear(5, 3, rng=rng))


def test_tap_adds_its_gradient_to_the_incoming_flow(backend):
    # Eq. 3.26: delta at the hidden node = flow from above + the node's own loss term
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4))
    y = rng.integers(0, 3, 6)
    plain = _net(np.random.default_rng(1), [])
    tapped = _net(np.random.default_rng(1), [HiddenLoss("l1", lam=0.2)])
    plain.to(backend.name)
    tapped.to(backend.name)
    xb = backend.asarray(x)
    for net in (plain, tapped):
        loss = SoftmaxCrossEntropy()
        loss(net(xb), y)
        net.backward(loss.backward())
    h = 1 / (1 + np.exp(-(x @ backend.to_numpy(plain[0].params["W"]))))
    extra = (0.2 / 6) * np.sign(h) * h * (1 - h)  # Phi'(a) dL_h/dh, through the sigmoid
    want = backend.to_numpy(plain.grads["0.W"]) + x.T @ extra
    np.testing.assert_allclose(backend.to_numpy(tapped.grads["0.W"]), want, rtol=1e-10)
    # the layers above the tap do not see the hidden loss at all
    np.testing.assert_allclose(backend.to_numpy(tapped.grads["3.W"]),
                               backend.to_numpy(plain.grads["2.W"]), rtol=1e-12)


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_total_objective_passes_gradcheck(penalty):
    # sigmoid outputs are positive, so |h| is smooth there and the chapter's 1e-6 applies
    rng = np.random.default_rng(2)
    net = Sequential(Linear(4, 5, rng=rng), Sigmoid(), HiddenLoss(penalty, lam=0.3),
                     Linear(5, 5, rng=rng), Tanh(), HiddenLoss("l2", lam=0.1),
                     Linear(5, 3, rng=rng))
    loss = WithHiddenLosses(SoftmaxCrossEntropy(), net)
    x, y = rng.normal(size=(7, 4)), rng.integers(0, 3, 7)
    report = check_model(net, loss, x, y, eps=1e-5, check_input=True)
    assert report.passed, report
    assert report.n_checked == sum(v.size for v in net.params.values()) + x.size


def test_gradcheck_catches_a_tap_whose_gradient_is_dropped():
    class Forgetful(HiddenLoss):
        def backward(self, g, need_dx=True):
            return g  # records the penalty but never adds its gradient

    rng = np.random.default_rng(3)
    net = Sequential(Linear(4, 5, rng=rng), Sigmoid(), Forgetful("l2", lam=1.0),
                     Linear(5, 3, rng=rng))
    loss = WithHiddenLosses(SoftmaxCrossEntropy(), net)
    report = check_model(net, loss, rng.normal(size=(5, 4)), rng.integers(0, 3, 5), eps=1e-5)
    assert not report.passed
    assert report.where.startswith("0.")  # only the layer below the tap is wrong


def test_several_taps_are_found_and_summed():
    taps = [HiddenLoss("l1", 0.1), HiddenLoss("l2", 0.2)]
    ae = TiedAutoencoder(4, 3, code_layers=[taps[1]], rng=0)
    net = Sequential(Linear(4, 4, rng=0), Tanh(), taps[0], ae)
    assert hidden_losses(net) == taps
    x = np.random.default_rng(4).normal(size=(3, 4))
    out = net(x)
    assert hidden_penalty(net) == pytest.approx(taps[0].value + taps[1].value)
    assert taps[0].value > 0 and taps[1].value > 0
    loss = WithHiddenLosses(MSE(), net)
    total = loss(out, x)
    assert total == pytest.approx(loss.data + loss.penalty)
    assert loss.penalty == pytest.approx(hidden_penalty(net))


def test_inference_mode_records_no_penalty():
    tap = HiddenLoss("l1", 1.0)
    tap(np.ones((2, 3)), train=False)
    assert tap.value == 0.0
    with pytest.raises(RuntimeError, match="train=False"):
        tap.backward(np.ones((2, 3)))


def test_custom_penalty_callable():
    def shifted(h, lam):
        return lam * float(((h - 1) ** 2).sum()), 2 * lam * (h - 1)

    tap = HiddenLoss(shifted, lam=0.5)
    tap(np.zeros((1, 2)))
    assert tap.value == pytest.approx(1.0)
    np.testing.assert_allclose(tap.backward(np.zeros((1, 2))), [[-1.0, -1.0]])


def test_bad_input():
    with pytest.raises(ValueError, match="penalty='l3'"):
        HiddenLoss("l3")
    with pytest.raises(ValueError, match="lam must be a finite number >= 0, got -1"):
        HiddenLoss("l1", lam=-1)
    with pytest.raises(TypeError, match="penalty must be a name or a callable"):
        HiddenLoss(3)
    tap = HiddenLoss("l1", name="sparsity")
    with pytest.raises(RuntimeError, match="sparsity: backward called before forward"):
        tap.backward(np.ones((2, 2)))
    with pytest.raises(ValueError, match="sparsity: input batch contains NaN or inf"):
        tap(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"sparsity: expected a 2-D batch"):
        tap(np.ones(3))
    tap(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"sparsity: upstream gradient has shape \(2, 2\).*"
                                         r"\(2, 3\)"):
        tap.backward(np.ones((2, 2)))
    with pytest.raises(TypeError, match="forward/backward"):
        WithHiddenLosses(object(), Sequential())
