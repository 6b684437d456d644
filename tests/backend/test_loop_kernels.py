"""The loop family (loss kept in a small array, row gather, status packing) and the
list-taking clip kernels and axpy: every backend against the NumPy reference."""

import numpy as np
import pytest

from ddlib.backend.numpy_ref import core as ref_core
from ddlib.backend.numpy_ref import optim as ref
from tests.conftest import tol


def _host(be, x):
    return be.to_numpy(x)


def test_softmax_xent_device_writes_last_and_adds_to_running(backend, dtype):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 4)).astype(dtype)
    labels = rng.integers(0, 4, size=7)
    want_loss, want_p = ref_core.softmax_xent(logits.astype(np.float64), labels)
    x, y = backend.asarray(logits), backend.asarray(labels)
    last, running = backend.zeros(1, np.float64), backend.zeros(1, np.float64)
    got_last, p = backend.softmax_xent_device(x, y, last, running)
    assert got_last is last
    backend.softmax_xent_device(x, y, last, running)
    np.testing.assert_allclose(_host(backend, last)[0], want_loss, **tol(dtype))
    np.testing.assert_allclose(_host(backend, running)[0], 2 * want_loss, **tol(dtype))
    np.testing.assert_allclose(_host(backend, p), want_p, **tol(dtype))
    fresh, _ = backend.softmax_xent_device(x, y)  # no arrays given: a new (1,) one
    assert backend.is_native(fresh) and fresh.shape == (1,)
    np.testing.assert_allclose(_host(backend, fresh)[0], want_loss, **tol(dtype))


def test_take_rows_gathers_matrices_and_vectors(backend):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(9, 3))
    y = rng.integers(0, 5, size=9)
    idx = np.array([4, 0, 8, 4], dtype=np.int64)
    dX, dy, didx = backend.asarray(X), backend.asarray(y), backend.asarray(idx)
    np.testing.assert_array_equal(_host(backend, backend.take_rows(dX, didx)), X[idx])
    np.testing.assert_array_equal(_host(backend, backend.take_rows(dy, didx)), y[idx])
    out = backend.zeros((4, 3), np.float64)
    assert backend.take_rows(dX, didx, out=out) is out
    np.testing.assert_array_equal(_host(backend, out), X[idx])


def test_pack_status_gathers_a_loops_scalars(backend):
    last = backend.asarray(np.array([0.25]))
    running = backend.asarray(np.array([3.5]))
    flags = backend.asarray(np.array([0, 2, 0], dtype=np.int64))
    status = backend.zeros(5, np.float64)
    assert backend.pack_status(last, running, flags, status) is status
    assert _host(backend, status).tolist() == [0.25, 3.5, 0.0, 2.0, 0.0]


def _grads(dtype, nan=False):
    rng = np.random.default_rng(2)
    gs = [(3 * rng.normal(size=(4, 5))).astype(dtype), rng.normal(size=6).astype(dtype),
          (0.01 * rng.normal(size=3)).astype(dtype)]
    if nan:
        gs[0][1, 2] = np.nan
        gs[0][3, 0] = -np.inf
        gs[2][1] = np.inf
    return gs


def _counters(be, n):
    counts = be.zeros(n, np.int64)
    return counts, [counts[i:i + 1] for i in range(n)]


@pytest.mark.parametrize("nan", [False, True], ids=["finite", "nan"])
def test_clip_values_matches_the_reference(backend, dtype, nan):
    gs = _grads(dtype, nan)
    want = [g.copy() for g in gs]
    w_clipped, w_bad = np.zeros(1, np.int64), np.zeros(3, np.int64)
    ref.clip_values(want, -0.5, 1.0, w_clipped, [w_bad[i:i + 1] for i in range(3)])
    got = [backend.asarray(g.copy()) for g in gs]
    clipped = backend.asarray(np.array([99], dtype=np.int64))  # set, not added to
    counts, bad = _counters(backend, 3)
    backend.clip_values(got, -0.5, 1.0, clipped, bad)
    for g, x, y in zip(gs, got, want, strict=True):
        x = _host(backend, x)
        np.testing.assert_array_equal(x, y)
        ok = np.isfinite(g)
        np.testing.assert_array_equal(x[ok], np.clip(g[ok], -0.5, 1.0))
        np.testing.assert_array_equal(x[~ok], g[~ok])  # NaN/inf left as they were
    n_out = sum(int((np.isfinite(g) & ((g > 1.0) | (g < -0.5))).sum()) for g in gs)
    assert _host(backend, clipped)[0] == w_clipped[0] == n_out > 0
    assert _host(backend, counts).tolist() == w_bad.tolist() == ([2, 0, 1] if nan else [0] * 3)


@pytest.mark.parametrize("per_parameter", [False, True], ids=["global", "per_param"])
@pytest.mark.parametrize("nan", [False, True], ids=["finite", "nan"])
def test_clip_norms_matches_the_reference(backend, dtype, per_parameter, nan):
    gs = _grads(dtype, nan)
    max_norm = 1.5
    got = [backend.asarray(g.copy()) for g in gs]
    n_norms = 3 if per_parameter else 1
    norms = [backend.asarray(np.full(1, -1.0)) for _ in range(n_norms)]
    counts, bad = _counters(backend, 3)
    backend.clip_norms(got, max_norm, norms, bad, per_parameter)
    # the equations: norms of the finite entries (float64), then one scale per norm
    sq = [float(np.sum(np.where(np.isfinite(g), g, 0).astype(np.float64) ** 2)) for g in gs]
    want_norms = np.sqrt(sq) if per_parameter else np.sqrt([sum(sq)])
    got_norms = np.array([_host(backend, n)[0] for n in norms])
    np.testing.assert_allclose(got_norms, want_norms, rtol=1e-12)
    for k, (g, x) in enumerate(zip(gs, got, strict=True)):
        norm = want_norms[k if per_parameter else 0]
        s = max_norm / norm if norm > max_norm else 1.0
        x = _host(backend, x)
        ok = np.isfinite(g)
        np.testing.assert_allclose(x[ok], g[ok] * s, **tol(dtype))
        np.testing.assert_array_equal(np.isnan(x), np.isnan(g))
    assert (want_norms > max_norm).any() and (per_parameter is False or
                                              (want_norms <= max_norm).any())
    assert _host(backend, counts).tolist() == ([2, 0, 1] if nan else [0] * 3)
    # the finite part is bounded even when some entries were NaN/inf
    clipped = [_host(backend, x) for x in got]
    total = np.sqrt(sum(float(np.sum(np.where(np.isfinite(c), c, 0).astype(np.float64) ** 2))
                        for c in clipped))
    if not per_parameter:
        assert total <= max_norm * (1 + 1e-5)


def test_clip_norms_checks_its_lists(backend):
    g = [backend.asarray(np.ones(3))]
    counts, bad = _counters(backend, 1)
    with pytest.raises(ValueError, match="clip_norms: 1 gradients need 1 counters"):
        backend.clip_norms(g, 1.0, [], bad)


def test_axpy_adds_a_multiple_and_counts_non_finite_entries(backend, dtype):
    rng = np.random.default_rng(3)
    y = rng.normal(size=(3, 4)).astype(dtype)
    x = rng.normal(size=(3, 4)).astype(dtype)
    y[0, 1] = np.nan
    y[2, 2] = np.inf
    want = y.copy()
    assert ref.axpy(want, 0.3, x) is True
    dy = backend.asarray(y.copy())
    counts, bad = _counters(backend, 1)
    assert backend.axpy(dy, 0.3, backend.asarray(x), bad=bad[0]) is None
    got = _host(backend, dy)
    ok = np.isfinite(y)
    np.testing.assert_allclose(got[ok], (y + dtype.type(0.3) * x)[ok], **tol(dtype))
    np.testing.assert_array_equal(got[~ok], y[~ok])
    np.testing.assert_array_equal(got, want)
    backend.axpy(dy, 0.3, backend.asarray(x), bad=bad[0])  # counters add up
    assert _host(backend, counts).tolist() == [4]
    clean = backend.asarray(np.abs(x))
    assert backend.axpy(clean, 2.0, backend.asarray(x)) is False  # no counter: a bool
