"""Linear, the activation layers and Sequential: shapes, errors, backends, state."""

import numpy as np
import pytest

import ddlib
from ddlib import layers
from ddlib.gradcheck import check_model
from ddlib.losses import SoftmaxCrossEntropy
from tests.conftest import SIMULATOR


def test_linear_forward_matches_equation(backend, dtype):
    lin = layers.Linear(5, 3, rng=0, dtype=dtype).to(backend.name)
    x = np.random.default_rng(1).normal(size=(4, 5)).astype(dtype)
    out = backend.to_numpy(lin(backend.asarray(x)))
    W = backend.to_numpy(lin.params["W"])
    b = backend.to_numpy(lin.params["b"])
    np.testing.assert_allclose(out, x @ W + b, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_mlp_gradients_pass_gradcheck_on_every_backend(backend):
    net = layers.mlp([4, 6, 3], activation="tanh", rng=0).to(backend.name)
    x = np.random.default_rng(2).normal(size=(5, 4))
    y = np.array([0, 1, 2, 1, 0])
    # the simulator runs one Python thread per CUDA thread: sample a few entries there.
    # atol: the central difference's own rounding is about 1e-11 here (float64 loss of size
    # 1, eps 1e-5), and an entry whose gradient is only 3e-5 (0.W[15]) turns that noise
    # into rho ~ 1e-7 on its own; a GPU's libdevice tanh and summation order give other
    # noise than the cpu's.  Every entry above the noise must still agree to 1e-7.
    rep = check_model(net, SoftmaxCrossEntropy(), x, y, check_input=True,
                      n_samples=3 if SIMULATOR else None, atol=1e-10)
    assert rep.passed and rep.worst_rho < 1e-7, rep


def test_linear_rejects_wrong_width_with_layer_name_and_shapes():
    lin = layers.Linear(5, 3, rng=0, name="hidden1")
    with pytest.raises(ValueError, match=r"hidden1: input has 4 features per row \(shape \(2, 4\)\) but the layer expects 5"):
        lin(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="expected a 2-D batch"):
        lin(np.zeros(5))


def test_non_finite_input_is_rejected_at_the_model_input():
    net = layers.mlp([3, 4, 2], rng=0)
    x = np.ones((2, 3))
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        net(x)


def test_sequential_reports_which_layer_got_the_wrong_shape():
    net = layers.Sequential(layers.Linear(3, 4, rng=0, name="first"), layers.ReLU(),
                            layers.Linear(5, 2, rng=0, name="second"))
    with pytest.raises(ValueError, match="second: input has 4 features"):
        net(np.zeros((2, 3)))


def test_sequential_rejects_non_layers():
    with pytest.raises(TypeError, match="item 1 is a str"):
        layers.Sequential(layers.ReLU(), "relu")


@pytest.mark.parametrize("bad", [dict(d_in=0, d_out=3), dict(d_in=3, d_out=2.5)])
def test_linear_validates_sizes(bad):
    with pytest.raises((ValueError, TypeError), match="d_in|d_out"):
        layers.Linear(**bad)


def test_mlp_validates_arguments():
    with pytest.raises(ValueError, match="activation='swish'"):
        layers.mlp([2, 3], activation="swish")
    with pytest.raises(ValueError, match="at least an input and an output"):
        layers.mlp([2])
    with pytest.raises(ValueError, match="init='orthogonal' is not a known initializer"):
        layers.mlp([2, 3], init="orthogonal")


def test_state_dict_round_trip():
    a = layers.mlp([3, 4, 2], rng=0)
    b = layers.mlp([3, 4, 2], rng=1)
    x = np.random.default_rng(0).normal(size=(2, 3))
    assert not np.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x), b(x))
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict({"0.W": np.zeros((3, 4))})
    bad = a.state_dict()
    bad["0.W"] = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"0.W has shape \(4, 3\), expected \(3, 4\)"):
        b.load_state_dict(bad)


def test_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layers.Linear(2, 2, rng=0).backward(np.zeros((1, 2)))


def test_first_layer_skips_its_input_gradient():
    net = layers.mlp([3, 4, 2], rng=0)
    out = net(np.ones((2, 3)))
    assert net.backward(np.ones_like(out), need_dx=False) is None
    assert net.backward(np.ones_like(out)).shape == (2, 3)


def test_same_seed_same_weights_and_cpu_matches_numpy():
    x = np.random.default_rng(3).normal(size=(7, 8))
    outs = []
    for name in ("numpy", "cpu"):
        with ddlib.use_backend(name):
            outs.append(layers.mlp([8, 16, 16, 4], activation="sigmoid", rng=5)(x))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-12)


def _train_pair(backend, fuse, kind, steps=3, dtype=np.float32):
    """Train a fused and an unfused copy of the same net; return outputs, grads, params."""
    from ddlib import optim, train

    net = layers.mlp([5, 7, 6, 3], activation=kind, rng=0, dtype=dtype)
    net.layers.insert(0, layers.Identity())  # the model input is an activation, not fused
    net = layers.Sequential(net.layers, fuse=fuse).to(backend.name)
    opt = optim.Optimizer(net, optim.momentum(0.1, 0.9))
    rng = np.random.default_rng(3)
    loss = SoftmaxCrossEntropy()
    values = []
    for _ in range(steps):
        x = backend.asarray(rng.normal(size=(4, 5)).astype(dtype))
        y = rng.integers(0, 3, size=4)
        values.append(train.train_step(net, loss, opt, x, y))
    out = backend.to_numpy(net(backend.asarray(np.ones((2, 5), dtype))))
    grads = {k: backend.to_numpy(v) for k, v in net.grads.items()}
    return values, out, grads, net.state_dict()


@pytest.mark.parametrize("kind", ["relu", "tanh", "leaky_relu"])
def test_fused_sequential_matches_layer_by_layer_bit_for_bit(backend, kind):
    if SIMULATOR and kind != "tanh":
        pytest.skip("one activation is enough under the simulator (the kernels' tests cover all)")
    steps = 1 if SIMULATOR else 3
    fused = _train_pair(backend, True, kind, steps)
    plain = _train_pair(backend, False, kind, steps)
    assert fused[0] == plain[0]
    np.testing.assert_array_equal(fused[1], plain[1])
    for k in plain[2]:
        np.testing.assert_array_equal(fused[2][k], plain[2][k], err_msg=k)
        np.testing.assert_array_equal(fused[3][k], plain[3][k], err_msg=k)


def test_sequential_fuses_linear_and_activation_pairs(monkeypatch):
    be = ddlib.get_backend("cpu")
    calls = {"linear_act": 0, "act_backward_colsum": 0}
    for name in calls:
        orig = getattr(be, name)

        def counted(*a, _orig=orig, _name=name, **kw):
            calls[_name] += 1
            return _orig(*a, **kw)

        monkeypatch.setattr(be, name, counted)
    net = layers.mlp([4, 8, 8, 3], activation="relu", rng=0)
    x = np.random.default_rng(0).normal(size=(6, 4))
    with ddlib.use_backend("cpu"):
        loss = SoftmaxCrossEntropy()
        loss(net(x), np.zeros(6, dtype=int))
        net.backward(loss.backward())
        assert calls == {"linear_act": 2, "act_backward_colsum": 2}
        # both layers hold what they would hold unfused
        z, y = net[1]._cache
        np.testing.assert_array_equal(y, np.maximum(z, 0))
        assert net[0]._cache[0] is x
        layers.Sequential(net.layers, fuse=False)(x)
        assert calls["linear_act"] == 2


def test_a_wrapped_layer_is_never_fused():
    from ddlib.monitor import StatsRecorder

    net = layers.mlp([4, 8, 3], activation="relu", rng=0)
    x = np.random.default_rng(0).normal(size=(6, 4))
    with ddlib.use_backend("cpu"), StatsRecorder(net) as mon:
        loss = SoftmaxCrossEntropy()
        loss(net(x, train=True), np.zeros(6, dtype=int))
        net.backward(loss.backward())
    # the monitor saw every layer's output and gradient, the fused pair's included
    assert all(len(mon.records[i]["act"]) == 1 for i in mon.indices)
    assert all(len(mon.records[i]["grad"]) == 1 for i in mon.indices)
