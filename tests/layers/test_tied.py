"""Shared weights (Sec. 3.2.9): the tied autoencoder's dL/dW is the sum over W's two copies."""

import doctest

import numpy as np
import pytest

import ddlib.layers.tied as tied
from ddlib.gradcheck import check_model
from ddlib.layers import TiedAutoencoder
from ddlib.losses import MSE
from tests.conftest import SIMULATOR


def test_docstring_examples():
    assert doctest.testmod(tied).failed == 0


class DeviceMSE(MSE):
    """MSE whose gradient is moved to the current backend: ``ddlib.losses.MSE`` returns a
    host array, which the cuda kernels refuse (see test_gradcheck_all_layers.test_mse)."""

    def backward(self):
        from ddlib import get_backend

        return get_backend().asarray(super().backward())


def _data(n, d, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_forward_uses_W_and_its_transpose(backend):
    ae = TiedAutoencoder(5, 3, activation="tanh", out_activation="sigmoid", rng=0).to(backend.name)
    x = _data(4, 5)
    W = backend.to_numpy(ae.params["W"])
    got = backend.to_numpy(ae(backend.asarray(x)))
    want = 1 / (1 + np.exp(-(np.tanh(x @ W) @ W.T)))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_gradient_is_the_sum_of_the_two_copies(backend):
    n, d, h = (3, 4, 2) if SIMULATOR else (8, 6, 3)
    x = _data(n, d, 1)
    ae = TiedAutoencoder(d, h, rng=1).to(backend.name)
    loss = MSE()
    loss(ae(backend.asarray(x)), x)  # MSE runs on the current backend
    ae.backward(loss.backward())

    # the untied twin holds two independent matrices; their gradients are the two copies
    twin = ae.untied() if backend.name != "cuda" else None
    if twin is not None:
        loss2 = MSE()
        out = twin(x)
        np.testing.assert_allclose(out, backend.to_numpy(ae(backend.asarray(x))), rtol=1e-12)
        loss2(out, x)
        twin.backward(loss2.backward())
        enc, dec = twin.grads["0.W"], twin.grads["2.W"]
        np.testing.assert_allclose(ae.grad_copies["encoder"], enc, rtol=1e-12)
        np.testing.assert_allclose(ae.grad_copies["decoder"], dec.T, rtol=1e-12)
    total = ae.grad_copies["encoder"] + ae.grad_copies["decoder"]
    np.testing.assert_allclose(backend.to_numpy(ae.grads["W"]), total, rtol=1e-12)
    # neither copy alone is the gradient
    assert not np.allclose(ae.grad_copies["encoder"], total)
    assert not np.allclose(ae.grad_copies["decoder"], total)


@pytest.mark.parametrize("acts", [("sigmoid", "identity"), ("tanh", "sigmoid")])
def test_tied_autoencoder_passes_gradcheck(backend, acts):
    if backend.name == "cuda":
        if acts[0] != "sigmoid":
            pytest.skip("one activation pair is enough on the slow simulator")
        # ~0.5 s per forward pass on the simulator: sample one entry of each parameter
        n, d, h, sample, wrt_x = 2, 3, 2, 1, False
    else:
        n, d, h, sample, wrt_x = 6, 7, 3, None, True
    x = _data(n, d, 2)
    ae = TiedAutoencoder(d, h, activation=acts[0], out_activation=acts[1], rng=2).to(backend.name)
    report = check_model(ae, DeviceMSE(), x, x, eps=1e-5, check_input=wrt_x, n_samples=sample)
    assert report.passed, report
    assert report.n_checked == (3 if sample else d * h + h + d + x.size)


def test_zero_grad_clears_the_copies():
    ae = TiedAutoencoder(3, 2, rng=0)
    x = _data(2, 3)
    ae(x)
    ae.backward(np.ones((2, 3)))
    assert ae.grad_copies and np.abs(ae.grads["W"]).sum() > 0
    ae.zero_grad()
    assert ae.grad_copies == {} and np.abs(ae.grads["W"]).sum() == 0


def test_bad_input():
    ae = TiedAutoencoder(4, 2, rng=0, name="tae")
    with pytest.raises(ValueError, match=r"tae: input has 3 features per row \(shape \(5, 3\)\) "
                                         r"but the layer expects 4"):
        ae(np.ones((5, 3)))
    with pytest.raises(RuntimeError, match="tae: backward called before forward"):
        ae.backward(np.ones((5, 4)))
    ae(np.ones((5, 4)))
    with pytest.raises(ValueError, match=r"tae: upstream gradient has shape \(5, 2\), expected"
                                         r" the reconstruction's shape \(5, 4\)"):
        ae.backward(np.ones((5, 2)))
    with pytest.raises(ValueError, match="activation 'softplus'"):
        TiedAutoencoder(4, 2, activation="softplus")
    with pytest.raises(ValueError, match="d_hidden must be >= 1"):
        TiedAutoencoder(4, 0)
    with pytest.raises(ValueError, match="NaN or inf"):
        ae(np.full((1, 4), np.nan))
