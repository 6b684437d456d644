"""The parameter server: synchronous equals one big batch, asynchronous records staleness,
int8 error feedback (the fault tests are not yet in)."""

import numpy as np
import pytest

from ddlib import losses, optim, train
from ddlib.backend import use_backend
from ddlib.data import load_digits
from ddlib.distributed import ps

pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[distributed]')")

SIZES = (64, 16, 10)


@pytest.fixture(scope="module")
def digits():
    d = load_digits(n_train=256)
    return d.X_train, d.y_train


@pytest.fixture(autouse=True)
def _release_actors(monkeypatch):
    made = []
    for name in ("make_server", "make_workers"):
        f = getattr(ps, name)

        def wrapped(*a, _f=f, **k):
            out = _f(*a, **k)
            made.extend(out if isinstance(out, list) else [out])
            return out

        monkeypatch.setattr(ps, name, wrapped)
    yield
    ps.release(*made)


def test_sync_equals_single_process_big_batch(ray_session, digits):
    ray = ray_session
    X, y = digits
    server = ps.make_server(SIZES, lr=0.2, seed=3)
    workers = ps.make_workers(2, SIZES, X, y)
    out = ps.train_sync(server, workers, len(X), batch_size=24, steps=15, seed=5)
    w_ps, version = ray.get(server.weights.remote())
    net = ps.make_net(SIZES, seed=3)
    with use_backend("numpy"):
        hist = train.fit(net, losses.SoftmaxCrossEntropy(), optim.Optimizer(net, optim.sgd(0.2)),
                         X, y, epochs=None, max_steps=15, batch_size=48, seed=5)
    assert version == 15 and out["updates"] == 15
    np.testing.assert_allclose(out["loss"], hist.step_loss, rtol=1e-10)
    for name, w in ps.get_weights(net).items():
        np.testing.assert_allclose(w_ps[name], w, rtol=1e-9, atol=1e-12)


def test_async_records_staleness_and_learns(ray_session, digits):
    X, y = digits
    server = ps.make_server(SIZES, lr=0.1, seed=0)
    workers = ps.make_workers(2, SIZES, X, y)
    out = ps.train_async(server, workers, len(X), batch_size=32, updates=40, seed=1)
    assert out["updates"] == 40 and len(out["staleness"]) == 40
    assert min(out["staleness"]) >= 0 and max(out["staleness"]) >= 1   # two in flight
    assert np.mean(out["loss"][-10:]) < np.mean(out["loss"][:5])


def test_int8_error_feedback():
    rng = np.random.default_rng(0)
    g = rng.normal(size=1000)
    q, s = ps.quantize_int8(g)
    assert q.dtype == np.int8 and np.max(np.abs(ps.dequantize(q, s) - g)) <= s / 2 + 1e-12
    # with the residual carried, the sum of what was sent tracks the sum of the gradients
    e, sent = np.zeros_like(g), np.zeros_like(g)
    for _ in range(50):
        c = g + e
        q, s = ps.quantize_int8(c)
        e = c - ps.dequantize(q, s)
        sent += ps.dequantize(q, s)
    assert np.max(np.abs(sent - 50 * g)) <= s / 2 + 1e-9


def test_async_int8_learns(ray_session, digits):
    X, y = digits
    server = ps.make_server(SIZES, lr=0.1, seed=0)
    workers = ps.make_workers(2, SIZES, X, y, quantize="int8")
    out = ps.train_async(server, workers, len(X), batch_size=32, updates=40, seed=1)
    assert np.mean(out["loss"][-10:]) < np.mean(out["loss"][:5])
