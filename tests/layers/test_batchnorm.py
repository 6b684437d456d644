"""The BatchNorm layer (Sec. 3.6): gradients, inference statistics, placement, bad input."""

import numpy as np
import pytest

import ddlib
from ddlib import optim
from ddlib.chapter.batchnorm_studies import activation_inputs
from ddlib.gradcheck import check_model
from ddlib.layers import Linear, Sequential, Sigmoid
from ddlib.layers.batchnorm import (
    BatchNorm,
    batchnorm_backward,
    batchnorm_forward,
    bn_mlp,
    estimate_population_statistics,
)
from ddlib.losses import SoftmaxCrossEntropy
from tests.conftest import SIMULATOR

RHO = 1e-7  # the bar for float64 gradient checks


def data(m, d, seed=0, loc=2.0, scale=1.5):
    rng = np.random.default_rng(seed)
    return rng.normal(loc, scale, size=(m, d)), rng.integers(0, d, size=m)


def host(be, x):
    return be.to_numpy(x)


# --- forward ------------------------------------------------------------------------------


def test_training_forward_follows_eqs_3_58_to_3_61(backend):
    x, _ = data(6, 4)
    bn = BatchNorm(4, eps=1e-3).to(backend.name)
    gamma, beta = np.array([0.5, 2.0, -1.0, 1.5]), np.array([0.1, -0.2, 0.3, 0.0])
    bn.params["gamma"], bn.params["beta"] = backend.asarray(gamma), backend.asarray(beta)
    out = host(backend, bn.forward(backend.asarray(x)))
    mu = x.sum(axis=0) / 6  # Eq. 3.58
    sigma2 = ((x - mu) ** 2).sum(axis=0) / 6 + 1e-3  # Eq. 3.59
    want = gamma * (x - mu) / np.sqrt(sigma2) + beta  # Eqs. 3.60-3.61
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


# --- gradients ----------------------------------------------------------------------------

GRAD_BATCHES = [2, 3, 5] if SIMULATOR else [2, 3, 5, 16, 64]


class NearTargetSquaredError:
    """0.5 sum (scores - targets)^2 with targets close to the scores.

    The finite-difference estimate's rounding error is about ulp(L) / step; a loss near its
    minimum is small while its gradient is not, which keeps the estimate accurate enough
    for the 1e-7 bar even on the smallest entries of dL/dx.
    """

    def forward(self, scores, targets):
        self.diff = ddlib.get_backend().to_numpy(scores) - targets
        return float(0.5 * np.sum(self.diff ** 2))

    def backward(self):
        return ddlib.get_backend().asarray(self.diff)


def near_targets(net, be, x, seed):
    out = be.to_numpy(net.forward(be.asarray(x)))
    return out + np.random.default_rng(seed).normal(0.0, 0.1, size=out.shape)


@pytest.mark.parametrize("form", ["compact", "recursive"])
@pytest.mark.parametrize("m", GRAD_BATCHES)
def test_gradcheck_gamma_beta_and_input(backend, m, form):
    # a linear layer after BN makes the loss weigh every unit differently.  With m = 2 the
    # normalized values are +-sqrt(var / (var + eps)), nearly constant in x, so eps is
    # raised there to keep dL/dx from vanishing into rounding noise.
    # (the simulator runs the BN layer alone: its matmul tiles cost 256 Python threads)
    d, k = 3, 4
    x, _ = data(m, d, seed=m)
    eps = 0.5 if m == 2 else 1e-3
    bn = BatchNorm(d, eps=eps, backward=form)
    bn.params["gamma"][:] = [1.3, 0.7, -0.9]
    bn.params["beta"][:] = [0.2, -0.4, 0.1]
    alone = SIMULATOR and backend.name == "cuda"
    net = (Sequential(bn) if alone else Sequential(bn, Linear(d, k, rng=1))).to(backend.name)
    t = near_targets(net, backend, x, seed=100 + m)
    report = check_model(net, NearTargetSquaredError(), x, t, threshold=RHO, check_input=True)
    assert report.passed, report
    if alone:
        assert set(report.per_param) == {"0.gamma", "0.beta", "input"}
        assert report.n_checked == 2 * d + m * d
    else:
        assert set(report.per_param) == {"0.gamma", "0.beta", "1.W", "1.b", "input"}
        assert report.n_checked == 2 * d + d * k + k + m * d


@pytest.mark.parametrize("placement", ["pre", "post"])
@pytest.mark.parametrize("m", [2, 7])
def test_gradcheck_bn_inside_a_sigmoid_network(backend, m, placement):
    if SIMULATOR and backend.name == "cuda":
        pytest.skip("minutes on the simulator (matmul tiles); the BN-layer check covers cuda")
    x, _ = data(m, 5, seed=10 + m)
    net = bn_mlp([5, 4, 3], activation="sigmoid", placement=placement, rng=2,
                 eps=0.5 if m == 2 else 1e-3).to(backend.name)
    t = near_targets(net, backend, x, seed=200 + m)
    # 'pre' builds Linear(bias=False): a bias before BN would have no effect at all
    assert ("0.b" in {n for n, _, _ in net.named_parameters()}) == (placement == "post")
    report = check_model(net, NearTargetSquaredError(), x, t, threshold=RHO,
                         check_input=True)
    assert report.passed, report


def test_a_bias_before_bn_gets_no_gradient(backend):
    x, _ = data(6, 3, seed=18)
    lin = Linear(3, 4, rng=3)
    net = Sequential(lin, BatchNorm(4), Sigmoid(), Linear(4, 2, rng=4)).to(backend.name)
    loss = SoftmaxCrossEntropy()
    loss.forward(net.forward(backend.asarray(x)), np.array([0, 1, 1, 0, 1, 0]))
    net.backward(loss.backward())
    assert np.abs(host(backend, lin.grads["b"])).max() < 1e-15
    assert np.abs(host(backend, lin.grads["W"])).max() > 1e-3


def test_both_backward_forms_give_the_same_gradients(backend):
    x, _ = data(9, 4, seed=3)
    g = np.random.default_rng(4).normal(size=x.shape)
    xb = backend.asarray(x)
    results = []
    for form in ("compact", "recursive"):
        bn = BatchNorm(4, backward=form).to(backend.name)
        bn.forward(xb)
        dx = host(backend, bn.backward(backend.asarray(g)))
        results.append((dx, host(backend, bn.grads["gamma"]), host(backend, bn.grads["beta"])))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_functional_pair_matches_the_layer():
    x, _ = data(5, 3, seed=5)
    g = np.random.default_rng(6).normal(size=x.shape)
    out, cache = batchnorm_forward(x, np.ones(3), np.zeros(3), 1e-5)
    bn = BatchNorm(3, eps=1e-5)
    np.testing.assert_allclose(out, bn.forward(x), rtol=1e-13)
    dx_layer = bn.backward(g)
    for form in ("compact", "recursive"):
        dx, dgamma, dbeta = batchnorm_backward(g, cache, form=form)
        np.testing.assert_allclose(dx, dx_layer, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(dgamma, bn.grads["gamma"], rtol=1e-12)
        np.testing.assert_allclose(dbeta, g.sum(axis=0), rtol=1e-12)
    with pytest.raises(ValueError, match="form='closed'"):
        batchnorm_backward(g, cache, form="closed")


# --- batch of one, inference --------------------------------------------------------------


def test_training_on_one_example_raises_a_clear_error(backend):
    bn = BatchNorm(3).to(backend.name)
    with pytest.raises(ValueError, match=r"at least 2 examples.*\(1, 3\).*train=False"):
        bn.forward(backend.asarray(np.ones((1, 3))), train=True)


def test_inference_on_a_single_example(backend):
    x, _ = data(32, 3, seed=7)
    bn = BatchNorm(3).to(backend.name)
    for i in range(0, 32, 8):
        bn.forward(backend.asarray(x[i:i + 8]))
    mean, var = host(backend, bn.running_mean), host(backend, bn.running_var)
    one = host(backend, bn.forward(backend.asarray(x[4:5]), train=False))
    assert one.shape == (1, 3)
    np.testing.assert_allclose(one[0], (x[4] - mean) / np.sqrt(var + bn.eps), rtol=1e-12)
    # a single example gives the same answer as it does inside any batch
    many = host(backend, bn.forward(backend.asarray(x[:9]), train=False))
    np.testing.assert_allclose(one[0], many[4], rtol=1e-12)
    with pytest.raises(RuntimeError, match="training mode first"):
        bn.backward(backend.asarray(np.ones((1, 3))))


def test_running_average_with_momentum(backend):
    rng = np.random.default_rng(8)
    bn = BatchNorm(2, momentum=0.25).to(backend.name)
    rm, rv = np.zeros(2), np.ones(2)
    for _ in range(5):
        xb = rng.normal([1.0, -3.0], [2.0, 0.5], size=(10, 2))
        bn.forward(backend.asarray(xb))
        rm = 0.75 * rm + 0.25 * xb.mean(axis=0)
        rv = 0.75 * rv + 0.25 * xb.var(axis=0, ddof=1)
    np.testing.assert_allclose(host(backend, bn.running_mean), rm, rtol=1e-12)
    np.testing.assert_allclose(host(backend, bn.running_var), rv, rtol=1e-12)


def test_cumulative_average_when_momentum_is_none():
    rng = np.random.default_rng(9)
    bn = BatchNorm(2, momentum=None)
    batches = [rng.normal(size=(6, 2)) * (i + 1) for i in range(4)]
    for xb in batches:
        bn.forward(xb)
    np.testing.assert_allclose(bn.running_mean, np.mean([b.mean(0) for b in batches], 0))
    np.testing.assert_allclose(bn.running_var, np.mean([b.var(0, ddof=1) for b in batches], 0))


def test_population_statistics_from_a_pass_over_the_data(backend):
    # the last batch is partial; the simulator gets fewer batches
    x, _ = data(21 if SIMULATOR else 103, 4, seed=11)
    net = bn_mlp([4, 5, 5, 2], placement="pre", rng=3).to(backend.name)
    net.forward(backend.asarray(x[:10]))  # some arbitrary running statistics first
    layers = estimate_population_statistics(net, x, batch_size=8 if SIMULATOR else 16)
    assert len(layers) == 2
    # the first BN layer sees the linear outputs; the second sees what flows from the
    # first when it uses its population statistics
    h1 = x @ host(backend, net.layers[0].params["W"])
    np.testing.assert_allclose(host(backend, layers[0].running_mean), h1.mean(0), rtol=1e-10)
    np.testing.assert_allclose(host(backend, layers[0].running_var), h1.var(0, ddof=1),
                               rtol=1e-10)
    inputs = activation_inputs(net, x)  # inputs to the sigmoids = BN outputs
    h2 = 1 / (1 + np.exp(-inputs[0])) @ host(backend, net.layers[3].params["W"])
    np.testing.assert_allclose(host(backend, layers[1].running_mean), h2.mean(0), rtol=1e-9)
    np.testing.assert_allclose(host(backend, layers[1].running_var), h2.var(0, ddof=1),
                               rtol=1e-9)
    # with population statistics, normalizing the whole training set in inference mode
    # gives mean beta = 0 and (unbiased) variance ~1 in every unit of the first layer
    np.testing.assert_allclose(inputs[0].mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(inputs[0].var(0, ddof=1), 1.0, rtol=1e-3)


# --- placement and containers -------------------------------------------------------------


@pytest.mark.parametrize("placement, kinds", [
    ("pre", ["Linear", "BatchNorm", "Sigmoid", "Linear", "BatchNorm", "Sigmoid", "Linear"]),
    ("post", ["Linear", "Sigmoid", "BatchNorm", "Linear", "Sigmoid", "BatchNorm", "Linear"]),
    ("none", ["Linear", "Sigmoid", "Linear", "Sigmoid", "Linear"]),
])
def test_bn_mlp_places_the_layer(placement, kinds):
    net = bn_mlp([6, 5, 4, 3], placement=placement, rng=0)
    assert [type(layer).__name__ for layer in net.layers] == kinds
    linears = [layer for layer in net.layers if isinstance(layer, Linear)]
    # before the activation beta replaces the linear bias (Sec. 3.6)
    assert [lin.use_bias for lin in linears] == ([False, False, True] if placement == "pre"
                                                 else [True, True, True])


def test_moves_buffers_with_the_layer(backend):
    bn = BatchNorm(3).to(backend.name)
    for v in (*bn.params.values(), *bn.buffers.values()):
        assert backend.is_native(v)
    state = bn.to("numpy").state_dict()
    assert set(state) == {"gamma", "beta", "running_mean", "running_var"}
    np.testing.assert_array_equal(state["running_var"], np.ones(3))


def test_optimizer_updates_gamma_and_beta_not_the_statistics():
    x, y = data(8, 3, seed=13)
    net = Sequential(BatchNorm(3), Linear(3, 3, rng=0))
    names = [n for n, _, _ in net.named_parameters()]
    assert names == ["0.gamma", "0.beta", "1.W", "1.b"]
    opt = optim.Optimizer(net, optim.sgd(0.5))
    loss = SoftmaxCrossEntropy()
    loss.forward(net.forward(x), y)
    net.backward(loss.backward())
    opt.step()
    assert not np.allclose(net.layers[0].params["gamma"], 1.0)


# --- bad input ----------------------------------------------------------------------------


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        BatchNorm(3, eps=-1e-5)
    with pytest.raises(ValueError, match=r"momentum must lie in \(0, 1\].*1.5"):
        BatchNorm(3, momentum=1.5)
    with pytest.raises(TypeError, match="momentum must be a number"):
        BatchNorm(3, momentum="fast")
    with pytest.raises(ValueError, match="backward='closed'"):
        BatchNorm(3, backward="closed")
    with pytest.raises(ValueError, match="d must be >= 1"):
        BatchNorm(0)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        BatchNorm(3, dtype=np.int32)
    with pytest.raises(ValueError, match=r"placement='middle'.*Fig. 3.18"):
        bn_mlp([3, 4, 2], placement="middle")


def test_bad_batches_are_named(backend):
    bn = BatchNorm(3).to(backend.name)
    with pytest.raises(ValueError, match=r"BatchNorm: input has 4 features per row \(shape \(5, 4\)\)"):
        bn.forward(backend.asarray(np.ones((5, 4))))
    with pytest.raises(ValueError, match=r"expected a 2-D batch"):
        bn.forward(backend.asarray(np.ones(3)))
    bn.forward(backend.asarray(np.arange(15.0).reshape(5, 3)))
    with pytest.raises(ValueError, match=r"gradient has shape \(4, 3\).*\(5, 3\)"):
        bn.backward(backend.asarray(np.ones((4, 3))))


def test_nan_input_is_rejected():
    with pytest.raises(ValueError, match="NaN or inf"):
        BatchNorm(2).forward(np.array([[1.0, np.nan], [0.0, 1.0]]))


def test_float32_stays_float32(backend):
    bn = BatchNorm(3, dtype=np.float32).to(backend.name)
    x = backend.asarray(np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32))
    out = bn.forward(x)
    assert out.dtype == np.float32
    assert bn.backward(backend.asarray(np.ones((8, 3), np.float32))).dtype == np.float32
    assert bn.forward(x, train=False).dtype == np.float32


def test_sequential_state_dict_carries_the_running_statistics():
    x, _ = data(16, 3, seed=21)
    a = Sequential(Linear(3, 3, rng=0), BatchNorm(3), Sigmoid())
    a.forward(x)  # a training pass moves the running statistics
    state = a.state_dict()
    assert {"1.running_mean", "1.running_var"} <= set(state)
    b = Sequential(Linear(3, 3, rng=1), BatchNorm(3), Sigmoid())
    b.load_state_dict(state)
    np.testing.assert_array_equal(a.forward(x, train=False), b.forward(x, train=False))
