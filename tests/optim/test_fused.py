"""Every fused kernel equals its explicit chain over many steps, on every backend."""

import numpy as np
import pytest

from ddlib import optim
from ddlib.backend.arrays import is_array, to_host, tree_leaves
from ddlib.backend.numpy_ref import optim as ref
from tests.conftest import SIMULATOR, tol

SHAPES = {"W": (2, 3), "b": (5,)} if SIMULATOR else {"W": (7, 13), "b": (11,)}
STEPS = 6 if SIMULATOR else 40


def _rules():
    sched = optim.inverse_decay(0.05, k=0.1)
    return {
        "sgd": optim.sgd(0.05),
        "momentum": optim.momentum(0.05, 0.9),
        "nesterov": optim.nesterov(0.05, 0.9),
        "delta_bar_delta": optim.delta_bar_delta(0.02, 0.05, 0.2, 0.7),
        "adagrad": optim.adagrad(0.05),
        "rmsprop": optim.rmsprop(0.01, 0.9),
        "rmsprop_nesterov": optim.rmsprop_nesterov(0.01, 0.8, 0.9),
        "adadelta": optim.adadelta(),
        "adam": optim.adam(0.01),
        "adam_nobias": optim.adam(0.01, bias_correction=False),
        "adam_schedule": optim.adam(sched),
        "clipnorm_adam": optim.chain(optim.clip_by_norm(0.5), optim.adam(0.01)),
        "clipparam_momentum": optim.chain(optim.clip_by_norm(0.3, per_parameter=True),
                                          optim.nesterov(0.05, 0.9)),
        "clipvalue_rmsprop": optim.chain(optim.clip_by_value(0.4), optim.rmsprop(0.01)),
        "sgd_weight_decay": optim.sgd(0.05, weight_decay=0.1),
        "adam_weight_decay": optim.adam(0.01, weight_decay=0.05),
    }


RULE_NAMES = list(_rules())


def _problem(dtype):
    rng = np.random.default_rng(7)
    w0 = {k: rng.normal(size=s).astype(dtype) for k, s in SHAPES.items()}
    target = {k: rng.normal(size=s).astype(dtype) for k, s in SHAPES.items()}
    noise = [{k: rng.normal(scale=0.3, size=s).astype(dtype) for k, s in SHAPES.items()}
             for _ in range(STEPS)]

    def grad(w, t):
        # depends on the evaluation point (so lookahead matters), with sign-flipping noise
        return {k: (2.0 * (w[k] - target[k]) + noise[t][k]).astype(dtype) for k in w}

    return w0, grad


def _explicit(rule, w0, grad):
    w = {k: v.copy() for k, v in w0.items()}
    state = rule.init(w)
    for t in range(STEPS):
        at = rule.lookahead(w, state) if rule.lookahead else w
        upd, state = rule.update(grad(at, t), state, w)
        for k in w:
            w[k] = w[k] + upd[k]
    point = rule.lookahead(w, state) if rule.lookahead else None
    return w, state, point


def _fused(be, rule, w0, grad):
    w = {k: be.asarray(v.copy()) for k, v in w0.items()}
    state = rule.init(w)
    leaves = tree_leaves(state)
    assert all(be.is_native(a) for a in leaves)  # the state lives beside the parameters
    point = {k: be.asarray(v.copy()) for k, v in w0.items()} if rule.lookahead else None
    counts, bad = optim.make_counters(w)
    assert be.is_native(counts) and counts.dtype == np.int64
    for t in range(STEPS):
        at = {k: be.to_numpy(v) for k, v in (point or w).items()}
        g = {k: be.asarray(v) for k, v in grad(at, t).items()}
        state = rule.fused(be, w, g, state, bad, point)
    assert not be.to_numpy(counts).any()  # finite gradients: nothing counted
    host = {k: be.to_numpy(v) for k, v in w.items()}
    return host, state, None if point is None else {k: be.to_numpy(v) for k, v in point.items()}


def _arrays(tree, numbers=False):
    """Every array in a state tree, in a fixed order, as host arrays.  With ``numbers``,
    scalars too, as one-entry arrays: a number the host keeps may be a one-entry device
    array on cuda (a clipping norm), so that a step copies nothing back."""
    if isinstance(tree, dict):
        return [a for k in sorted(tree) for a in _arrays(tree[k], numbers)]
    if isinstance(tree, (tuple, list)):
        return [a for x in tree for a in _arrays(x, numbers)]
    if is_array(tree):
        return [to_host(tree)]
    if numbers and isinstance(tree, (int, float, np.number)) and not isinstance(tree, bool):
        return [np.atleast_1d(np.asarray(tree, dtype=np.float64))]
    return []


@pytest.mark.parametrize("name", RULE_NAMES)
def test_fused_equals_explicit_float64(backend, name):
    rule = _rules()[name]
    assert rule.fused is not None
    w0, grad = _problem(np.float64)
    w_e, s_e, p_e = _explicit(rule, w0, grad)
    w_f, s_f, p_f = _fused(backend, rule, w0, grad)
    for k in w_e:
        assert not np.allclose(w_e[k], w0[k])  # the run moved
        np.testing.assert_allclose(w_f[k], w_e[k], rtol=1e-6, atol=1e-12)
    if p_e is not None:
        for k in p_e:
            np.testing.assert_allclose(p_f[k], p_e[k], rtol=1e-6, atol=1e-12)
    a_e, a_f = _arrays(s_e, numbers=True), _arrays(s_f, numbers=True)
    assert len(a_e) == len(a_f)
    for x, y in zip(a_f, a_e, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam", "adadelta",
                                  "delta_bar_delta", "rmsprop_nesterov"])
def test_fused_float32_stays_float32(backend, name):
    rule = _rules()[name]
    w0, grad = _problem(np.float32)
    w_e, _, _ = _explicit(rule, w0, grad)
    w_f, s_f, _ = _fused(backend, rule, w0, grad)
    for k in w_e:
        assert w_f[k].dtype == np.float32
        np.testing.assert_allclose(w_f[k], w_e[k], rtol=1e-4, atol=1e-5)
    assert all(a.dtype == np.float32 for a in _arrays(s_f))


KERNEL_CASES = {
    "sgd_step": (1, (0.1,)),
    "momentum_step": (2, (0.1, 0.9)),
    "nesterov_step": (2, (0.1, 0.9)),
    "delta_bar_delta_step": (3, (0.1, 0.05, 0.2, 0.7)),
    "adagrad_step": (2, (0.1, 1e-8)),
    "rmsprop_step": (2, (0.1, 0.9, 1e-8)),
    "rmsprop_nesterov_step": (3, (0.1, 0.8, 0.9, 1e-8)),
    "adadelta_step": (3, (1.0, 0.95, 1e-6)),
    "adam_step": (3, (0.1, 0.9, 0.999, 1e-8)),
}


def test_kernel_cases_cover_every_step_kernel():
    assert set(KERNEL_CASES) == {n for n in ref.__all__ if n.endswith("_step")}


@pytest.mark.parametrize("kname", list(KERNEL_CASES))
def test_nonfinite_gradient_is_flagged_and_left_untouched(backend, kname, dtype):
    """The flag rises; entries with a NaN/inf gradient keep their weight and state."""
    n_arrays, hyper = KERNEL_CASES[kname]
    rng = np.random.default_rng(3)
    shape = (3, 4)
    arrays = [rng.normal(size=shape).astype(dtype) for _ in range(n_arrays)]
    if kname == "delta_bar_delta_step":
        arrays[2] = np.abs(arrays[2]) + 0.5  # gains are positive
    if kname in ("adagrad_step", "rmsprop_step", "adadelta_step", "adam_step",
                 "rmsprop_nesterov_step"):
        arrays[-1] = np.abs(arrays[-1])  # accumulated squares are >= 0
        if kname == "adadelta_step":
            arrays[1] = np.abs(arrays[1])
    g = rng.normal(size=shape).astype(dtype)
    g[0, 1] = np.nan
    g[2, 3] = np.inf
    want = [a.copy() for a in arrays]
    g_ok = g.copy()
    g_ok[~np.isfinite(g)] = 0.0
    bad_ref = getattr(ref, kname)(*want, g, *hyper)
    assert bad_ref is True
    got = [backend.asarray(a.copy()) for a in arrays]
    assert getattr(backend, kname)(*got, backend.asarray(g), *hyper) is True
    moved = False
    for a0, x, y in zip(arrays, got, want, strict=True):
        x = backend.to_numpy(x)
        np.testing.assert_allclose(x, y, **tol(dtype))
        assert x[0, 1] == a0[0, 1] and x[2, 3] == a0[2, 3]
        moved |= not np.array_equal(x, a0)
    assert moved
    # and a clean gradient raises no flag
    assert getattr(backend, kname)(*[backend.asarray(a.copy()) for a in arrays],
                                   backend.asarray(g_ok), *hyper) is False


def test_clip_and_reduction_kernels(backend, dtype):
    rng = np.random.default_rng(5)
    g = (3 * rng.normal(size=(4, 9))).astype(dtype)
    want = g.copy()
    n_ref, bad_ref = ref.clip_value(want, -1.0, 2.0)
    dg = backend.asarray(g.copy())
    n, bad = backend.clip_value(dg, -1.0, 2.0)
    assert (n, bad) == (n_ref, bad_ref) == (int(((g > 2) | (g < -1)).sum()), False)
    np.testing.assert_array_equal(backend.to_numpy(dg), np.clip(g, -1.0, 2.0))
    s = backend.sum_squares(backend.asarray(g))
    np.testing.assert_allclose(s, float((g.astype(np.float64) ** 2).sum()), rtol=1e-12)
    dg = backend.asarray(g.copy())
    backend.scale_inplace(dg, 0.25)
    np.testing.assert_allclose(backend.to_numpy(dg), g * dtype.type(0.25), **tol(dtype))
    avg = rng.normal(size=(4, 9)).astype(dtype)
    da = backend.asarray(avg.copy())
    backend.ema_update(da, backend.asarray(g), 0.3)
    np.testing.assert_allclose(backend.to_numpy(da), 0.7 * avg + 0.3 * g, **tol(dtype))
    bad_g = g.copy()
    bad_g[1, 1] = np.nan
    assert backend.clip_value(backend.asarray(bad_g), -1.0, 2.0)[1] is True
    assert not np.isfinite(backend.sum_squares(backend.asarray(bad_g)))


@pytest.mark.parametrize("kname", list(KERNEL_CASES))
def test_step_kernels_add_to_the_counter_they_are_given(backend, kname):
    """With ``bad`` every step kernel adds its non-finite count there and returns None, on
    every backend; the arithmetic is the same as without it."""
    n_arrays, hyper = KERNEL_CASES[kname]
    rng = np.random.default_rng(4)
    shape = (3, 4)
    arrays = [np.abs(rng.normal(size=shape)) + 0.5 for _ in range(n_arrays)]
    g = rng.normal(size=shape)
    g[1, 1] = np.nan
    g[0, 3] = -np.inf
    g[2, 0] = np.nan
    want = [a.copy() for a in arrays]
    getattr(ref, kname)(*want, g, *hyper)
    got = [backend.asarray(a.copy()) for a in arrays]
    counts = backend.zeros(2, np.int64)
    kernel = getattr(backend, kname)
    assert kernel(*got, backend.asarray(g), *hyper, bad=counts[1:2]) is None
    for x, y in zip(got, want, strict=True):
        np.testing.assert_allclose(backend.to_numpy(x), y, rtol=1e-12, atol=1e-14)
    assert backend.to_numpy(counts).tolist() == [0, 3]
    kernel(*got, backend.asarray(g), *hyper, bad=counts[1:2])
    assert backend.to_numpy(counts).tolist() == [0, 6]  # added to, never reset


def _nan_problem(be, dtype=np.float64):
    rng = np.random.default_rng(8)
    w = {k: be.asarray(rng.normal(size=s).astype(dtype)) for k, s in SHAPES.items()}
    g = {k: rng.normal(size=s).astype(dtype) for k, s in SHAPES.items()}
    g["b"][1] = np.nan
    g["b"][-1] = np.inf
    return w, g


@pytest.mark.parametrize("name", RULE_NAMES)
def test_every_fused_rule_counts_non_finite_entries_per_parameter(backend, name):
    """Rules and chains alike: the counters name the parameter, the NaN/inf entries keep
    their weights, and the other parameter takes its step (one code path everywhere)."""
    rule = _rules()[name]
    w, g = _nan_problem(backend)
    before = {k: backend.to_numpy(v).copy() for k, v in w.items()}
    state = rule.init(w)
    point = {k: backend.asarray(v.copy()) for k, v in before.items()} if rule.lookahead else None
    counts, bad = optim.make_counters(w)
    rule.fused(backend, w, {k: backend.asarray(v) for k, v in g.items()}, state, bad, point)
    c = dict(zip(w, backend.to_numpy(counts).tolist()))
    assert c["W"] == 0 and c["b"] >= 2  # each member that met them counted them
    after = {k: backend.to_numpy(v) for k, v in w.items()}
    bad_entries = ~np.isfinite(g["b"])
    np.testing.assert_array_equal(after["b"][bad_entries], before["b"][bad_entries])
    assert np.isfinite(after["b"]).all() and np.isfinite(after["W"]).all()
    assert not np.array_equal(after["W"], before["W"])


def test_every_registered_rule_is_run_fused_here():
    """A rule added to optim.RULES must be added to _rules() above, so its fused kernel is
    held to its explicit equations on every backend (CONTRIBUTING.md's table)."""
    missing = set(optim.RULES) - set(RULE_NAMES)
    assert not missing, f"add these rules to tests/optim/test_fused.py::_rules: {missing}"
    for name in optim.RULES:
        assert optim.RULES[name]().fused is not None, name
