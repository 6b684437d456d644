"""Gradient clipping of Sec. 3.5.5: by value, by global norm, by per-parameter norm."""

import numpy as np
import pytest

from ddlib import optim


def _g():
    rng = np.random.default_rng(4)
    return {"W": 3 * rng.normal(size=(4, 5)), "b": rng.normal(size=(6,))}


def test_clip_by_value():
    t = optim.clip_by_value(1.0)
    g = _g()
    out, s = t.update(g, t.init(g))
    for k in g:
        np.testing.assert_array_equal(out[k], np.minimum(np.maximum(g[k], -1.0), 1.0))
        unchanged = np.abs(g[k]) <= 1
        np.testing.assert_array_equal(out[k][unchanged], g[k][unchanged])
    assert s.last.shape == (1,) and s.last.dtype == np.int64  # a small array, as fused
    assert s.last[0] == sum(int((np.abs(v) > 1).sum()) for v in g.values()) > 0
    t = optim.clip_by_value(2.0, min_value=-0.5)
    out, _ = t.update(g, t.init(g))
    assert out["W"].max() == 2.0 and out["W"].min() == -0.5


def test_clip_by_global_norm_keeps_direction():
    g = _g()
    total = np.sqrt(sum((v**2).sum() for v in g.values()))
    t = optim.clip_by_norm(1.0)
    out, s = t.update(g, t.init(g))
    assert s.last.shape == (1,) and s.last[0] == pytest.approx(total)
    new_total = np.sqrt(sum((v**2).sum() for v in out.values()))
    assert new_total == pytest.approx(1.0)
    for k in g:
        np.testing.assert_allclose(out[k], g[k] / total)
    # below the threshold nothing changes
    t = optim.clip_by_norm(2 * total)
    out, _ = t.update(g, t.init(g))
    for k in g:
        np.testing.assert_array_equal(out[k], g[k])


def test_clip_per_parameter_norm():
    g = _g()
    nb = np.linalg.norm(g["b"])
    nW = np.linalg.norm(g["W"])
    thr = (nb + nW) / 2 if nb < nW else None
    if thr is None:  # pragma: no cover - fixed seed makes W longer
        pytest.fail("fixture expected |W| > |b|")
    t = optim.clip_by_norm(thr, per_parameter=True)
    out, s = t.update(g, t.init(g))
    np.testing.assert_array_equal(out["b"], g["b"])  # short one untouched
    assert np.linalg.norm(out["W"]) == pytest.approx(thr)
    assert s.last["W"].shape == (1,) and s.last["W"][0] == pytest.approx(nW)


def test_clipping_rescues_a_fixed_rate_at_a_cliff():
    """A steep wall: plain SGD jumps far away, clipped SGD takes a bounded step (Sec. 3.5.4)."""
    def grad(w):
        return np.array([1000.0 if w[0] > 1 else 0.1])  # cliff face beyond x = 1

    plain = optim.trajectory(optim.sgd(0.1), grad, np.array([1.5]), 1).points
    clipped = optim.trajectory(optim.chain(optim.clip_by_norm(1.0), optim.sgd(0.1)), grad,
                               np.array([1.5]), 1).points
    assert abs(plain[1, 0] - plain[0, 0]) == pytest.approx(100.0)
    assert abs(clipped[1, 0] - clipped[0, 0]) == pytest.approx(0.1)


@pytest.mark.parametrize("make,param", [
    (lambda: optim.clip_by_value(0.0), "max_value"),
    (lambda: optim.clip_by_value(-1.0), "max_value"),
    (lambda: optim.clip_by_value(1.0, min_value=2.0), "min_value"),
    (lambda: optim.clip_by_norm(0.0), "max_norm"),
    (lambda: optim.clip_by_norm(float("inf")), "max_norm"),
])
def test_bad_thresholds(make, param):
    with pytest.raises(ValueError, match=param):
        make()


@pytest.mark.parametrize("make", [lambda: optim.clip_by_value(1.0), lambda: optim.clip_by_norm(1.0),
                                  lambda: optim.clip_by_norm(1.0, per_parameter=True)],
                         ids=["value", "norm", "param_norm"])
def test_clip_state_lives_beside_the_parameters_and_is_written_in_place(backend, make):
    """``last`` starts as small arrays on the parameters' side; the fused kernels write
    into them (no new arrays per step) and agree with the explicit update."""
    t = make()
    g = _g()
    params = {k: backend.asarray(np.zeros_like(v)) for k, v in g.items()}
    state = t.init(params)
    leaves = list(state.last.values()) if isinstance(state.last, dict) else [state.last]
    assert all(backend.is_native(a) and a.shape == (1,) for a in leaves)
    counts, bad = optim.make_counters(params)
    new = t.fused(backend, params, {k: backend.asarray(v.copy()) for k, v in g.items()}, state,
                  bad)
    assert new.count == 1
    got = list(new.last.values()) if isinstance(new.last, dict) else [new.last]
    assert all(a is b for a, b in zip(got, leaves, strict=True))
    _, want = t.update(g, t.init(g))
    want = list(want.last.values()) if isinstance(want.last, dict) else [want.last]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(backend.to_numpy(a), b, rtol=1e-12)
