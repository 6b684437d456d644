"""Every layer and loss passes a float64 gradient check (Sec. 3.2.10) on every backend.

Shapes and data come from hypothesis.  The check perturbs every entry of every
parameter (and of the input) by eps = 1e-5 and compares central differences with
backprop through the chapter's ratio rho (Eq. 3.34), which must stay below 1e-7.

One honest caveat about rho: it divides by |G_e + G_a|, so for an entry whose true
gradient is almost exactly zero (an accidental cancellation, e.g. 3e-8) the finite
difference's rounding noise (about 1e-11 in absolute terms here) makes rho large although
backprop is right.  That noise is about eps_machine * |L| / eps, so an entry can only be
judged by rho < 1e-7 when |G_e| + |G_a| exceeds a few times noise / 1e-7 (about 1e-3 for a
loss of order 1).  Smaller entries are held to an absolute bound instead: they must agree
to within a few tens of times the noise.  A wrong backward fails either test (see
``test_the_check_catches_a_broken_backward``).

Kinked functions (ReLU, leaky ReLU, hard tanh, Max) are checked on inputs kept away
from their kinks, where they are smooth and the same 1e-7 applies.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ddlib.gradcheck import numerical_gradient, relative_error
from ddlib.layers import (
    ACTIVATION_LAYERS,
    CrossEntropy,
    FunctionLayer,
    Identity,
    Linear,
    Max,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
    TiedAutoencoder,
    mlp,
)
from ddlib.losses import MSE, SoftmaxCrossEntropy
from ddlib.regularizers import HiddenLoss, WithHiddenLosses
from tests.conftest import SIMULATOR

RHO = 1e-7
EPS = 1e-5
RESOLVABLE = 3.0  # times noise / RHO: below this, rounding alone could push rho past RHO
ABS_NOISE = 30.0  # times noise: how closely unresolvable entries must still agree

# the simulator runs one Python thread per CUDA thread (about 0.5 s per forward pass of a
# small net): tiny shapes, one example, one sampled entry per parameter, and for
# multi-layer models only the deepest weight matrix (the one every gradient flows into;
# each layer's own gradients are checked one by one in the single-layer tests)
MAX_DIM = 2 if SIMULATOR else 6
SAMPLE = 1 if SIMULATOR else None
NET_INPUT = not SIMULATOR
NET_ONLY = ("0.W", "W") if SIMULATOR else None
SETTINGS = settings(
    max_examples=1 if SIMULATOR else 6,
    deadline=None,
    derandomize=True,
    # shrinking a failure re-runs the example many times: minutes on the simulator
    phases=(Phase.explicit, Phase.generate) if SIMULATOR else tuple(Phase),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

dims = st.integers(1, MAX_DIM)
seeds = st.integers(0, 2**16)


class Probe:
    """L = sum(out * R): a loss with a known, constant gradient R, so a check of the
    layer below measures that layer's backward alone."""

    name = "probe"

    def __init__(self, R):
        self.R = R

    def forward(self, out, _targets=None):
        from ddlib import get_backend

        return float(np.sum(get_backend().to_numpy(out) * self.R))

    def backward(self):
        from ddlib import get_backend

        return get_backend().asarray(self.R)


def gradcheck(be, model, loss, x, y, check_input=True, n_samples=SAMPLE, seed=0, only=None):
    """Central differences vs backprop for every (or a sample of each) parameter and x.

    ``only`` restricts the check to the parameters with those qualified names.
    """
    rng = np.random.default_rng(seed)
    model.zero_grad()
    out = model.forward(be.asarray(x), train=True)
    value = loss.forward(out, y)
    dx = model.backward(loss.backward(), need_dx=True)
    noise = np.finfo(np.float64).eps * max(1.0, abs(value)) / EPS
    named = model.named_parameters()
    analytic = {n: np.array(be.to_numpy(layer.grads[k])) for n, layer, k in named}
    hx = np.array(x, dtype=np.float64)

    def objective():
        return loss.forward(model.forward(be.asarray(hx), train=True), y)

    checked = 0
    entries = [(n, layer, k) for n, layer, k in named if only is None or n in only]
    if check_input:
        analytic["input"] = np.array(be.to_numpy(dx))
        entries.append(("input", None, None))
    for n, layer, k in entries:
        if layer is None:
            host, push = hx, (lambda: None)
        else:
            host = np.array(be.to_numpy(layer.params[k]))

            def push(layer=layer, k=k, host=host):
                if be.name == "cuda":
                    layer.params[k] = be.asarray(host)
                else:
                    layer.params[k][...] = host

        def f(push=push):
            push()
            return objective()

        index = (list(range(host.size)) if n_samples is None or n_samples >= host.size
                 else [int(i) for i in rng.choice(host.size, n_samples, replace=False)])
        est = numerical_gradient(f, host, eps=EPS, index=index).reshape(-1)[index]
        push()
        ga = analytic[n].reshape(-1)[index]
        rho = relative_error(ga, est)
        big = (np.abs(ga) + np.abs(est)) >= RESOLVABLE * noise / RHO
        assert np.all(rho[big] < RHO), (
            f"{n}: rho up to {rho[big].max():.2e} at entry {index[int(np.argmax(rho * big))]}")
        assert np.all(np.abs(ga - est)[~big] < ABS_NOISE * noise), (
            f"{n}: gradients below the resolvable size disagree by "
            f"{np.abs(ga - est)[~big].max():.2e}")
        checked += len(index)
    assert checked > 0
    return checked


def _x(rng, n, d, away_from=()):
    """A standard-normal batch; entries within 0.1 of a kink are pushed 0.2 away from it."""
    x = rng.normal(size=(n, d))
    for kink in away_from:
        near = np.abs(x - kink) < 0.1
        x[near] = kink + np.where(x[near] >= kink, 0.2, -0.2)
    return x


KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "hardtanh": (-1.0, 1.0)}


@pytest.mark.parametrize("kind", sorted(ACTIVATION_LAYERS))
@SETTINGS
@given(n=dims, d=dims, seed=seeds)
def test_activation_layers(backend, kind, n, d, seed):
    rng = np.random.default_rng(seed)
    x = _x(rng, n, d, KINKS.get(kind, ()))
    layer = ACTIVATION_LAYERS[kind]()
    gradcheck(backend, layer, Probe(rng.normal(size=(n, d))), x, None)


@SETTINGS
@given(n=dims, d_in=dims, d_out=dims, seed=seeds)
def test_linear(backend, n, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    layer = Linear(d_in, d_out, rng=rng)
    layer.params["b"][...] = rng.normal(size=d_out)
    layer.to(backend.name)
    gradcheck(backend, layer, Probe(rng.normal(size=(n, d_out))), rng.normal(size=(n, d_in)), None)


@SETTINGS
@given(n=dims, groups=dims, k=st.integers(1, 3), seed=seeds)
def test_max(backend, n, groups, k, seed):
    rng = np.random.default_rng(seed)
    # distinct values at least 0.1 apart inside each group, so eps never changes a winner
    x = rng.permutation(np.arange(n * groups * k)).reshape(n, groups * k) * 0.1
    x = x + rng.uniform(0, 0.01, size=x.shape)
    gradcheck(backend, Max(k), Probe(rng.normal(size=(n, groups))), x, None)


@SETTINGS
@given(n=dims, d_in=dims, d_out=dims, seed=seeds)
def test_function_layer(backend, n, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d_out, d_in))

    def f(v):
        return np.tanh(A @ v)

    def jac(v):
        return (1 - np.tanh(A @ v) ** 2)[:, None] * A

    layer = FunctionLayer(f, jac)
    gradcheck(backend, layer, Probe(rng.normal(size=(n, d_out))), rng.normal(size=(n, d_in)), None)


@SETTINGS
@given(n=dims, k=st.integers(2, MAX_DIM + 1), seed=seeds)
def test_softmax_layer(backend, n, k, seed):
    rng = np.random.default_rng(seed)
    gradcheck(backend, Softmax(), Probe(rng.normal(size=(n, k))), rng.normal(size=(n, k)), None)


@SETTINGS
@given(n=dims, k=st.integers(2, MAX_DIM + 1), seed=seeds)
def test_classification_losses(backend, n, k, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    gradcheck(backend, Identity(), SoftmaxCrossEntropy(), rng.normal(size=(n, k)), labels)
    probs = rng.uniform(0.2, 1.0, size=(n, k))
    probs /= probs.sum(axis=1, keepdims=True)
    gradcheck(backend, Identity(), CrossEntropy(), probs, labels)


@SETTINGS
@given(n=dims, k=dims, seed=seeds)
def test_mse(backend, n, k, seed):
    rng = np.random.default_rng(seed)
    gradcheck(backend, Identity(), MSE(), rng.normal(size=(n, k)), rng.normal(size=(n, k)))


@SETTINGS
@given(n=dims, d=dims, h=dims, seed=seeds, act=st.sampled_from(["sigmoid", "tanh"]))
def test_sequential_mlp(backend, n, d, h, seed, act):
    rng = np.random.default_rng(seed)
    net = mlp([d, h, 3], activation=act, rng=rng).to(backend.name)
    gradcheck(backend, net, SoftmaxCrossEntropy(), rng.normal(size=(n, d)),
              rng.integers(0, 3, n), check_input=NET_INPUT,
              only=NET_ONLY)


@SETTINGS
@given(n=dims, d=dims, seed=seeds)
def test_softmax_cross_entropy_route(backend, n, d, seed):
    rng = np.random.default_rng(seed)
    net = Sequential(Linear(d, 3, rng=rng), Softmax()).to(backend.name)
    gradcheck(backend, net, CrossEntropy(), rng.normal(size=(n, d)), rng.integers(0, 3, n))


@SETTINGS
@given(n=dims, d=dims, h=dims, seed=seeds)
def test_hidden_losses(backend, n, d, h, seed):
    rng = np.random.default_rng(seed)
    net = Sequential(Linear(d, h, rng=rng), Sigmoid(), HiddenLoss("l1", 0.3),
                     Linear(h, h, rng=rng), Tanh(), HiddenLoss("l2", 0.2),
                     Linear(h, 2, rng=rng)).to(backend.name)
    loss = WithHiddenLosses(SoftmaxCrossEntropy(), net)
    gradcheck(backend, net, loss, rng.normal(size=(n, d)), rng.integers(0, 2, n),
              check_input=NET_INPUT,
              only=NET_ONLY)


@SETTINGS
@given(n=dims, d=dims, h=dims, seed=seeds)
def test_tied_autoencoder(backend, n, d, h, seed):
    rng = np.random.default_rng(seed)
    ae = TiedAutoencoder(d, h, activation="tanh", out_activation="sigmoid", rng=rng)
    ae.params["b"][...] = rng.normal(size=h)
    ae.params["c"][...] = rng.normal(size=d)
    ae.to(backend.name)
    # the probe rather than MSE, so the check also runs on cuda (see test_mse)
    gradcheck(backend, ae, Probe(rng.normal(size=(n, d))), rng.uniform(size=(n, d)), None,
              check_input=NET_INPUT,
              only=NET_ONLY)


def test_the_check_catches_a_broken_backward():
    class Broken(Tanh):
        def backward(self, g, need_dx=True):
            return 1.01 * super().backward(g)  # a 1% error in the local derivative

    rng = np.random.default_rng(0)
    net = Sequential(Linear(3, 4, rng=rng), Broken(), Linear(4, 2, rng=rng))
    with pytest.raises(AssertionError, match="rho up to"):
        gradcheck(__import__("ddlib").get_backend("numpy"), net, SoftmaxCrossEntropy(),
                  rng.normal(size=(5, 3)), rng.integers(0, 2, 5))


# layers whose float64 gradient check lives in their own test file
CHECKED_ELSEWHERE = {"BatchNorm": "test_batchnorm.py", "Maxout": "test_maxout.py",
                     "PReLU": "test_maxout.py"}


def test_every_exported_layer_is_gradient_checked():
    """A new layer exported from ddlib.layers must be added to a gradient check: here
    (by name, in this file) or in its own file listed in CHECKED_ELSEWHERE."""
    import inspect
    import pathlib

    import ddlib.layers as L

    here = pathlib.Path(__file__)
    source = here.read_text()
    exported = {n for n in L.__all__
                if inspect.isclass(getattr(L, n)) and issubclass(getattr(L, n), L.Layer)
                and n not in ("Layer", "Activation")}
    for name in sorted(exported):
        if name in CHECKED_ELSEWHERE:
            other = (here.parent / CHECKED_ELSEWHERE[name]).read_text()
            assert name in other and "check_model" in other, name
        elif issubclass(getattr(L, name), L.Activation):
            assert name in {type(a()).__name__ for a in ACTIVATION_LAYERS.values()}, name
        else:
            assert f"{name}(" in source, f"{name} is exported but not gradient-checked"
