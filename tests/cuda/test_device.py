"""Explicit host/device moves and the all-on-device training step (ddlib.device)."""

import numpy as np
import pytest

import ddlib
from ddlib import layers, losses, optim
from ddlib.device import DeviceTrainer, backend_of, to_device, to_host
from ddlib.train import train_step
from tests.conftest import SIMULATOR

SIZES = [5, 6, 4]
RULES = {
    "sgd": lambda: optim.sgd(0.3),
    "momentum": lambda: optim.momentum(0.2, 0.9),
    "nesterov": lambda: optim.nesterov(0.2, 0.9),
    "adam": lambda: optim.adam(0.05),
    # gradient clipping (Sec. 3.5.5) chained before a rule: on the device without a copy
    "clip_norm+momentum": lambda: optim.chain(optim.clip_by_norm(0.5), optim.momentum(0.2, 0.9)),
    "clip_param_norm+sgd": lambda: optim.chain(optim.clip_by_norm(0.3, per_parameter=True),
                                               optim.sgd(0.3)),
    "clip_value+adam": lambda: optim.chain(optim.clip_by_value(0.05), optim.adam(0.05)),
}


def data(n=9, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, SIZES[0])).astype(dtype), rng.integers(0, SIZES[-1], n)


def host_run(rule, batches, dtype=np.float64):
    """The reference: the same steps with ddlib's numpy backend and Optimizer.step."""
    with ddlib.use_backend("numpy"):
        net = layers.mlp(SIZES, activation="tanh", rng=1, dtype=dtype)
        opt = optim.Optimizer(net, RULES[rule]())
        loss = losses.SoftmaxCrossEntropy()
        values = [train_step(net, loss, opt, xb, yb) for xb, yb in batches]
    return net, values


def device_setup(rule, dtype=np.float64):
    net = to_device(layers.mlp(SIZES, activation="tanh", rng=1, dtype=dtype))
    with ddlib.use_backend("cuda"):
        opt = optim.Optimizer(net, RULES[rule]())
    return net, DeviceTrainer(net, losses.SoftmaxCrossEntropy(), opt)


def test_host_arrays_and_models_report_numpy():
    assert backend_of(np.zeros(2)) == "numpy"
    assert backend_of(layers.mlp(SIZES, rng=0)) == "numpy"
    assert to_host(np.arange(3)).tolist() == [0, 1, 2]


@pytest.mark.skipif(SIMULATOR, reason="the simulator makes cuda available")
def test_to_device_without_a_gpu_says_why():
    from ddlib.backend import BackendUnavailable, cuda_unavailable_reason

    if cuda_unavailable_reason() is None:
        pytest.skip("a GPU is present")
    with pytest.raises(BackendUnavailable, match="backend 'cuda' is unavailable"):
        to_device(np.zeros(3))


@pytest.mark.cuda
def test_moves_are_explicit_and_round_trip(cuda_be):
    x = np.arange(6.0).reshape(2, 3)
    d = to_device(x)
    assert backend_of(d) == "cuda" and backend_of(x) == "numpy"
    assert to_device(d) is d
    np.testing.assert_array_equal(to_host(d), x)
    assert to_device(x, dtype=np.float32).dtype == np.float32
    net = layers.mlp(SIZES, rng=0)
    before = net.state_dict()
    assert to_device(net) is net and backend_of(net) == "cuda"
    net.layers[0].params["b"] = to_host(net.layers[0].params["b"])
    assert backend_of(net) == "mixed"
    to_host(net)
    assert backend_of(net) == "numpy"
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(TypeError, match="a model is moved, not cast"):
        to_device(net, dtype=np.float32)


@pytest.mark.cuda
def test_host_array_in_a_kernel_call_is_a_clear_error(cuda_be):
    d = to_device(np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"bias_add: b is a host ndarray of shape \(3,\).*to_device"):
        cuda_be.bias_add(d, np.ones(3))
    with pytest.raises(TypeError, match="act_forward: x is a host ndarray"):
        cuda_be.act_forward("relu", np.ones((2, 3)))
    with pytest.raises(TypeError, match="softmax_xent: labels is a host ndarray"):
        cuda_be.softmax_xent(d, np.zeros(2, dtype=np.int64))
    with pytest.raises(TypeError, match="linear: W is a host ndarray"):
        cuda_be.linear(d, np.ones((3, 2)), to_device(np.ones(2)))
    with pytest.raises(TypeError, match="col_sum: arrays mix float64 and float32"):
        cuda_be.col_sum(d, out=to_device(np.zeros(3, np.float32)))


@pytest.mark.cuda
@pytest.mark.parametrize("rule", sorted(RULES))
def test_device_steps_match_host_steps(cuda_be, rule):
    X, y = data()
    batches = [(X[:5], y[:5]), (X[5:], y[5:])]
    ref_net, ref_losses = host_run(rule, batches)
    net, trainer = device_setup(rule)
    got = [trainer.step(to_device(xb), to_device(yb), return_loss=True) for xb, yb in batches]
    np.testing.assert_allclose(got, ref_losses, rtol=1e-10)
    for name, value in ref_net.state_dict().items():
        np.testing.assert_allclose(net.state_dict()[name], value, rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    _counters_stay_on_the_device(trainer)


def _counters_stay_on_the_device(trainer):
    """What ``round_trips == 0`` used to say: every kernel of the step counted its NaN/inf
    entries into the optimizer's device counters (none made and read back its own), and
    they read zero; the ``transfers`` tests below count the copies themselves."""
    opt = trainer.optimizer
    assert backend_of(opt.nonfinite) == "cuda" and opt.nonfinite.dtype == np.int64
    assert all(backend_of(v) == "cuda" for v in opt._bad.values())
    assert to_host(opt.nonfinite).tolist() == [0] * len(opt.names)


@pytest.mark.cuda
@pytest.mark.parametrize("rule", ["clip_norm+momentum", "clip_param_norm+sgd", "clip_value+adam"])
def test_clipping_state_on_the_device_matches_the_host(cuda_be, rule):
    X, y = data()
    with ddlib.use_backend("numpy"):
        ref = layers.mlp(SIZES, activation="tanh", rng=1)
        ref_opt = optim.Optimizer(ref, RULES[rule]())
        train_step(ref, losses.SoftmaxCrossEntropy(), ref_opt, X, y)
    net, trainer = device_setup(rule)
    trainer.step(to_device(X), to_device(y))
    host_last, dev_last = ref_opt.state[0].last, trainer.optimizer.state[0].last
    if isinstance(host_last, dict):  # per-parameter norms
        assert set(dev_last) == set(host_last)
        for k in host_last:
            assert backend_of(dev_last[k]) == "cuda" and backend_of(host_last[k]) == "numpy"
            assert to_host(dev_last[k])[0] == pytest.approx(host_last[k][0], rel=1e-12)
    else:  # the global norm, or the number of entries clipped
        assert backend_of(dev_last) == "cuda" and backend_of(host_last) == "numpy"
        assert to_host(dev_last)[0] == pytest.approx(host_last[0], rel=1e-12)
    assert trainer.optimizer.state[0].count == 1
    _counters_stay_on_the_device(trainer)


@pytest.mark.cuda
@pytest.mark.parametrize("rule", sorted(RULES))
def test_a_step_copies_nothing_back_unless_asked(cuda_be, transfers, rule):
    X, y = data()
    net, trainer = device_setup(rule)
    xb, yb = to_device(X), to_device(y)
    transfers.reset()
    assert trainer.step(xb, yb) is None
    assert (transfers.to_host, transfers.to_device) == (0, 0)
    loss = trainer.step(xb, yb, return_loss=True)
    assert (transfers.to_host, transfers.to_device) == (1, 0)
    assert np.isfinite(loss)
    _counters_stay_on_the_device(trainer)


@pytest.mark.cuda
def test_optimizer_step_on_the_device_checks_with_one_copy(cuda_be, transfers):
    """Outside DeviceTrainer, Optimizer.step() reads its counters back in one small copy
    (check=False: none); a deferred check names the steps it covers."""
    X, y = data()
    net = to_device(layers.mlp(SIZES, activation="tanh", rng=1))
    opt = optim.Optimizer(net, optim.chain(optim.clip_by_norm(0.5), optim.adam(0.05)))
    xb, yb = to_device(X), to_device(y)

    def backward():
        net.backward(cuda_be.softmax_xent_backward(
            cuda_be.softmax_xent_device(net.forward(xb, train=True), yb)[1], yb), need_dx=False)

    backward()
    transfers.reset()
    opt.step(check=False)
    assert (transfers.to_host, transfers.to_device) == (0, 0)
    opt.step()
    assert (transfers.to_host, transfers.to_device) == (1, 0)
    name, layer, key = net.named_parameters()[0]
    g = to_host(layer.grads[key])
    g[0, 0] = np.nan
    layer.grads[key] = to_device(g)
    w_before = to_host(layer.params[key])
    opt.step(check=False)
    opt.step(check=False)
    with pytest.raises(optim.NonFiniteGradient,
                       match=f"'{name}' between optimizer steps 2 and 3") as err:
        opt.check_finite()
    assert (err.value.first, err.value.step) == (2, 3)
    assert to_host(layer.params[key])[0, 0] == w_before[0, 0]  # left untouched
    assert to_host(opt.nonfinite).tolist() == [0] * len(opt.names)  # reset


@pytest.mark.cuda
def test_fit_epoch_moves_the_order_in_and_the_loss_out_once(cuda_be, transfers):
    X, y = data(n=8)
    net, trainer = device_setup("momentum")
    Xd, yd = trainer.put_data(X, y)
    transfers.reset()
    mean = trainer.fit_epoch(Xd, yd, batch_size=4, rng=np.random.default_rng(3))
    assert (transfers.to_host, transfers.to_device) == (1, 1)
    # the same batches, in the same order, on the host
    order = np.random.default_rng(3).permutation(8)
    batches = [(X[order[i:i + 4]], y[order[i:i + 4]]) for i in range(0, 8, 4)]
    ref_net, ref_losses = host_run("momentum", batches)
    np.testing.assert_allclose(mean, np.mean(ref_losses), rtol=1e-10)
    np.testing.assert_allclose(net.state_dict()["2.W"], ref_net.state_dict()["2.W"], rtol=1e-9)


@pytest.mark.cuda
def test_non_finite_gradient_is_reported_when_the_status_is_read(cuda_be):
    X, y = data()
    net, trainer = device_setup("sgd")
    X[2, 1] = np.nan
    trainer.step(to_device(X), to_device(y))  # nothing read back: no error yet
    with pytest.raises(optim.NonFiniteGradient, match="non-finite gradient in parameter '0.W'"):
        trainer.check()


@pytest.mark.cuda
def test_trainer_refuses_what_would_need_the_host(cuda_be):
    host_net = layers.mlp(SIZES, rng=0)
    with ddlib.use_backend("numpy"):
        opt = optim.Optimizer(host_net, optim.sgd(0.1))
    with pytest.raises(TypeError, match="call ddlib.device.to_device"):
        DeviceTrainer(host_net, losses.SoftmaxCrossEntropy(), opt)
    net = layers.mlp(SIZES, rng=0)
    with ddlib.use_backend("numpy"):
        early = optim.Optimizer(net, optim.momentum(0.1))
    to_device(net)
    with pytest.raises(TypeError, match="state holds host arrays"):
        DeviceTrainer(net, losses.SoftmaxCrossEntropy(), early)
    with ddlib.use_backend("cuda"):
        opt = optim.Optimizer(net, optim.sgd(0.1))
    with pytest.raises(TypeError, match="loss must be SoftmaxCrossEntropy"):
        DeviceTrainer(net, losses.MSE(), opt)
    with pytest.raises(TypeError, match="to_device\\(optimizer\\)"):
        to_device(opt)
    trainer = DeviceTrainer(net, losses.SoftmaxCrossEntropy(), opt)
    X, y = data()
    with pytest.raises(TypeError, match="DeviceTrainer.step: xb is a host ndarray"):
        trainer.step(X, to_device(y))
    with pytest.raises(TypeError, match="put_data: X is float32 but the model is float64"):
        trainer.put_data(X.astype(np.float32), y)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 4\)"):
        trainer.put_data(X, y + 4)
